"""Cross-correlation statistics of reconstructions."""

import numpy as np

from datapipe.fields import GaussianFieldGenerator
from datapipe.fourier import FlatSkyGrid
from training.evaluation.crosscorr import reconstruction_stats


def _fields(spectra, n=64, nmaps=40, seed=0):
    g = FlatSkyGrid(n, 2.34375)
    white = np.random.default_rng(seed).standard_normal((nmaps, 4, n, n)).astype(np.float32)
    return g, g.irfft(GaussianFieldGenerator(g, spectra).fields(white).kappa).astype(np.float64)


def test_map_with_itself_has_r_one_and_no_residual(spectra):
    _, kappa = _fields(spectra)
    stats = reconstruction_stats(kappa, kappa, 2.34375)
    np.testing.assert_allclose(stats.r, 1.0, rtol=1e-10)
    assert np.all(stats.cl_residual < 1e-20 * stats.cl_true)
    assert np.all(stats.noise < 1e-8 * stats.cl_true)


def test_independent_map_has_r_consistent_with_zero(spectra):
    _, a = _fields(spectra, seed=1)
    _, b = _fields(spectra, seed=2)
    stats = reconstruction_stats(a, b, 2.34375)
    # Per bin, r of independent fields scatters as 1/sqrt(N_modes M) (the cross power of two Gaussian fields over the
    # N_modes / 2 independent complex modes of M maps): 4σ per bin; the mean over bins must be near 0 too.
    sigma = 1 / np.sqrt(stats.nmodes * stats.nmaps)
    assert np.all(np.abs(stats.r) < 4 * sigma), (stats.r, sigma)
    assert abs(np.mean(stats.r)) < 4 * np.sqrt(np.mean(sigma**2) / len(stats.r))
    # r_err, the scatter over the 40 maps, estimates that σ to 1/sqrt(2 × 39) = 11% (1σ): 4σ.
    np.testing.assert_allclose(stats.r_err, sigma, rtol=4 / np.sqrt(2 * 39))


def test_noisy_reconstruction_matches_the_wiener_relation(spectra):
    g, kappa = _fields(spectra, nmaps=60, seed=3)
    noise = np.random.default_rng(4).normal(scale=np.std(kappa), size=kappa.shape)
    stats = reconstruction_stats(kappa, kappa + noise, 2.34375)
    # White noise of variance sigma^2 per pixel has power sigma^2 * pixel area; r^2 = C / (C + N).
    n_l = np.var(kappa) * g.pixel_area
    expected = np.sqrt(stats.cl_true / (stats.cl_true + n_l))
    assert np.all(np.abs(stats.r - expected) < 4 * stats.r_err)  # r_err: the scatter over the 60 maps / sqrt(60)
    # The noise estimate N = C (1/r² − 1) from M maps of N_modes modes: to first order N̂ = Ĉ_nn − 2 N Ĉ_tn / C, whose
    # relative variance is (2 + 4 N / C) / (N_modes M) (Ĉ_nn: 2N²/m, Ĉ_tn: CN/m). 4σ per bin (from 14% to 38%).
    sigma = np.sqrt((2 + 4 * n_l / stats.cl_true) / (stats.nmodes * stats.nmaps))
    assert np.all(np.abs(stats.noise / n_l - 1) < 4 * sigma), (stats.noise / n_l, sigma)
