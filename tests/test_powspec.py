"""Binned power spectra, including the taper's w2 correction."""

import numpy as np

from datapipe.fields import GaussianFieldGenerator
from datapipe.fourier import FlatSkyGrid
from datapipe.powspec import bin_theory, binned_power, linear_bins
from datapipe.taper import cosine_taper, w2_factor


def test_w2_correction_recovers_the_input_spectrum_of_a_tapered_field(spectra):
    g = FlatSkyGrid(128, 2.34375)
    gen = GaussianFieldGenerator(g, spectra)
    white = np.random.default_rng(4).standard_normal((60, 4, 128, 128)).astype(np.float32)
    kappa = g.irfft(gen.fields(white).kappa).astype(np.float64)
    taper = cosine_taper(128, 38)
    edges = linear_bins(300, 3000, 300)
    theory = bin_theory(g, spectra.kk, edges)
    corrected = binned_power(g, kappa * taper, edges=edges, w2=w2_factor(taper)).mean / theory
    uncorrected = binned_power(g, kappa * taper, edges=edges).mean / theory
    # Tapering mixes neighbouring modes (a few % at these smooth spectra) and the scatter is ~2%.
    assert np.all(np.abs(corrected - 1) < 0.08), corrected
    assert np.all(np.abs(uncorrected - w2_factor(taper)) < 0.05)


def test_cross_spectrum_with_itself_equals_auto_and_bins_count_modes():
    g = FlatSkyGrid(32, 3.0)
    x = np.random.default_rng(0).normal(size=(3, 32, 32))
    edges = linear_bins(0, 5000, 500)
    auto = binned_power(g, x, edges=edges)
    cross = binned_power(g, x, x, edges=edges)
    np.testing.assert_allclose(auto.per_map, cross.per_map)
    full = ((g.modlmap >= edges[0]) & (g.modlmap < edges[-1])).sum()
    assert auto.nmodes.sum() == full
    # White noise of unit variance per pixel has flat power equal to the pixel area.
    assert np.allclose(auto.mean[1:], g.pixel_area, rtol=0.35)
