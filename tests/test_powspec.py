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
    tapered = binned_power(g, kappa * taper, edges=edges, w2=w2_factor(taper))
    corrected = tapered.mean / theory
    uncorrected = binned_power(g, kappa * taper, edges=edges).mean / theory
    # Cosmic variance of a band power: 2 / (N_modes M), with the taper's effective mode count N_modes w2² / w4, over
    # M = 60 maps (0.8–2%); 4σ per bin. Mode coupling by the taper changes this smooth spectrum by < 1%.
    w2, w4 = w2_factor(taper), np.mean(taper**4)
    sigma = np.sqrt(2 * w4 / (tapered.nmodes * w2**2 * len(kappa)))
    assert np.all(np.abs(corrected - 1) < 4 * sigma), (corrected, sigma)
    assert np.all(np.abs(uncorrected - w2) < 4 * sigma * w2)  # without the correction the power is w2 (0.39) times


def test_cross_spectrum_with_itself_equals_auto_and_bins_count_modes():
    g = FlatSkyGrid(32, 3.0)
    x = np.random.default_rng(0).normal(size=(3, 32, 32))
    edges = linear_bins(0, 5000, 500)
    auto = binned_power(g, x, edges=edges)
    cross = binned_power(g, x, x, edges=edges)
    np.testing.assert_allclose(auto.per_map, cross.per_map)
    full = ((g.modlmap >= edges[0]) & (g.modlmap < edges[-1])).sum()
    assert auto.nmodes.sum() == full
    # White noise of unit variance per pixel has flat power equal to the pixel area. A band power over N_modes modes
    # of M = 3 maps scatters by sqrt(2 / (N_modes M)) relative (a real map has N_modes / 2 independent complex modes,
    # each |a|² exponentially distributed): 4σ per bin (from 0.9 in the 13-mode first bin to 0.25).
    sigma = np.sqrt(2 / (auto.nmodes * len(x)))
    assert np.all(np.abs(auto.mean / g.pixel_area - 1) < 4 * sigma), (auto.mean / g.pixel_area, sigma)
