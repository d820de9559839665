"""Lensing remap accuracy and conventions."""

import numpy as np
import pytest
from lensing_helpers import fourier_series_at
from pixell import enmap, lensing

from datapipe.fields import GaussianFieldGenerator
from datapipe.fourier import FlatSkyGrid
from datapipe.lens import FourierLenser, deflection_from_kappa
from datapipe.polarization import qu_from_eb_half
from datapipe.powspec import binned_power, linear_bins


@pytest.fixture(scope="module")
def lensing_case(spectra):
    g = FlatSkyGrid(48, 2.34375)
    gen = GaussianFieldGenerator(g, spectra)
    white = np.random.default_rng(7).standard_normal((1, 4, 48, 48)).astype(np.float32)
    fk = gen.fields(white)
    q, u = qu_from_eb_half(g, fk.e)
    tqu = np.stack([g.irfft(fk.t)[0], q[0], u[0]]).astype(np.float64)
    _, deflection = deflection_from_kappa(g, fk.kappa)
    return g, tqu, deflection[0].astype(np.float64)


def test_lensing_error_is_below_one_percent_of_the_lensing_signal(lensing_case):
    g, tqu, deflection = lensing_case
    lensed = FourierLenser(g).lens(tqu.astype(np.float32), deflection).astype(np.float64)
    pix = np.mgrid[0 : g.npix, 0 : g.npix].astype(float) + deflection * g.pixels_per_radian()[:, None, None]
    reference = fourier_series_at(tqu, pix)
    edges = linear_bins(100, 4600, 500)  # up to the Nyquist multipole (4608)
    for c in range(3):
        signal = binned_power(g, reference[c] - tqu[c], edges=edges).mean
        error = binned_power(g, lensed[c] - reference[c], edges=edges).mean
        assert np.all(error < 0.01 * signal), (c, error / signal)


def test_pixell_spline_lensing_is_less_accurate_than_the_fourier_remap(lensing_case):
    """The original pipeline's path (pixell lens_map, cubic spline) for comparison: same convention, larger error."""
    g, tqu, deflection = lensing_case
    imap = enmap.enmap(tqu, g.wcs)
    spline = np.asarray(lensing.lens_map(imap, enmap.enmap(deflection, g.wcs), order=3))
    ours = FourierLenser(g).lens(tqu.astype(np.float32), deflection).astype(np.float64)
    pix = np.mgrid[0 : g.npix, 0 : g.npix].astype(float) + deflection * g.pixels_per_radian()[:, None, None]
    reference = fourier_series_at(tqu, pix)
    signal = np.var(reference - tqu)
    spline_error = np.var(spline - reference)
    our_error = np.var(ours - reference)
    # pixell agrees about the direction of the deflection (a sign error would give error ~ 4x signal) ...
    assert spline_error < 0.2 * signal
    # ... and the NUFFT remap is much closer to the exact answer.
    assert our_error < 0.1 * spline_error


def test_deflection_is_the_gradient_of_phi_and_monopole_is_zero(spectra):
    g = FlatSkyGrid(32, 2.34375)
    gen = GaussianFieldGenerator(g, spectra)
    fk = gen.fields(np.random.default_rng(1).standard_normal((1, 4, 32, 32)).astype(np.float32))
    phi_k, deflection = deflection_from_kappa(g, fk.kappa)
    assert phi_k[0, 0, 0] == 0 and np.all(np.isfinite(phi_k))
    # pixell's gradient of φ, with the Nyquist modes along the derivative's axis removed (their gradient
    # vanishes at the pixel centres, while pixell's lmap gives them a one-sided wavenumber).
    for axis in range(2):
        pk = phi_k[0].copy()
        if axis == 0:
            pk[16, :] = 0
        else:
            pk[:, -1] = 0
        phi = enmap.enmap(g.irfft(pk).astype(np.float64), g.wcs)
        grad = np.asarray(enmap.grad(phi))[axis]
        assert np.abs(grad - deflection[0, axis]).max() < 1e-4 * np.abs(grad).max()


def test_zero_deflection_is_identity(lensing_case):
    g, tqu, _ = lensing_case
    # The remap drops the Nyquist modes (ambiguous off the grid); remove them from the input too.
    k = g.rfft(tqu)
    k[:, g.npix // 2, :] = 0
    k[:, :, -1] = 0
    tqu = g.irfft(k)
    out = FourierLenser(g).lens(tqu.astype(np.float32), np.zeros((2, g.npix, g.npix)))
    np.testing.assert_allclose(out, tqu, atol=1e-4 * np.abs(tqu).max())
