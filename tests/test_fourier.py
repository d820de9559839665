"""Geometry and FFT conventions agree with pixell."""

import numpy as np
from pixell import enmap, utils

from datapipe.fourier import FlatSkyGrid


def test_paper_geometry():
    g = FlatSkyGrid(128, 2.34375)
    assert g.shape == (128, 128)
    # 5 deg x 5 deg, as the paper.
    assert abs(g.pixel_area * 128**2 - (5 * utils.degree) ** 2) / (5 * utils.degree) ** 2 < 1e-3
    np.testing.assert_allclose(np.abs(g.pixels_per_radian()), 1 / (2.34375 * utils.arcmin), rtol=1e-6)


def test_transforms_match_pixell_physical_normalization():
    g = FlatSkyGrid(32, 3.0)
    x = np.random.default_rng(1).normal(size=(2, 32, 32))
    ref = enmap.fft(enmap.enmap(x, g.wcs), normalize="phys")
    np.testing.assert_allclose(g.rfft(x), ref[..., :17], atol=1e-12 * np.abs(ref).max())
    np.testing.assert_allclose(g.fft(x + 0j), ref, atol=1e-12 * np.abs(ref).max())
    np.testing.assert_allclose(g.irfft(g.rfft(x)), x, atol=1e-12)
    np.testing.assert_allclose(g.ifft(g.fft(x + 0j)).real, x, atol=1e-12)


def test_interp_spectrum_on_grid():
    g = FlatSkyGrid(16, 10.0)
    cl = np.arange(20000, dtype=float)
    np.testing.assert_allclose(g.interp_spectrum(cl), g.modlmap_half, rtol=1e-12)
    np.testing.assert_allclose(g.interp_spectrum(cl, half=False), g.modlmap, rtol=1e-12)
