"""Gaussian realizations reproduce their input spectra."""

import numpy as np
import pytest

from datapipe.fields import GaussianFieldGenerator, map_set_rng
from datapipe.fourier import FlatSkyGrid
from datapipe.powspec import bin_theory, binned_power, linear_bins

NSIGMA = 5.0  # per-bin tolerance in units of the cosmic-variance error (fixed seed: deterministic)


@pytest.fixture(scope="module")
def realizations(spectra):
    g = FlatSkyGrid(64, 2.34375)
    gen = GaussianFieldGenerator(g, spectra)
    rng = np.random.default_rng(11)
    white = rng.standard_normal((300, 4, 64, 64)).astype(np.float32)
    fk = gen.fields(white)
    maps = {name: g.irfft(getattr(fk, name)).astype(np.float64) for name in ("t", "e", "tau", "kappa")}
    return g, maps


@pytest.mark.parametrize("name,cl_name", [("t", "tt"), ("e", "ee"), ("tau", "tau"), ("kappa", "kk")])
def test_auto_spectra_match_theory(realizations, spectra, name, cl_name):
    g, maps = realizations
    edges = linear_bins(150, 4500, 300)
    measured = binned_power(g, maps[name], edges=edges)
    theory = bin_theory(g, getattr(spectra, cl_name), edges)
    # Cosmic variance of the mean of nmaps spectra: sqrt(2 / (nmodes * nmaps)).
    sigma = np.sqrt(2.0 / (measured.nmodes * maps[name].shape[0]))
    ratio = measured.mean / theory
    assert np.all(np.abs(ratio - 1) < NSIGMA * sigma), (ratio, sigma)


def test_te_cross_spectrum(realizations, spectra):
    g, maps = realizations
    edges = linear_bins(150, 3000, 300)
    measured = binned_power(g, maps["t"], maps["e"], edges=edges)
    theory = bin_theory(g, spectra.te, edges)
    tt, ee = bin_theory(g, spectra.tt, edges), bin_theory(g, spectra.ee, edges)
    sigma = np.sqrt((tt * ee + theory**2) / (measured.nmodes * maps["t"].shape[0]))
    assert np.all(np.abs(measured.mean - theory) < NSIGMA * sigma)


def test_map_set_rng_depends_only_on_seed_and_index():
    a = map_set_rng(5, 17).standard_normal(4)
    b = map_set_rng(5, 17).standard_normal(4)
    c = map_set_rng(5, 18).standard_normal(4)
    d = map_set_rng(6, 17).standard_normal(4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, d)


def test_box_muller_gives_unit_normal_deviates():
    from datapipe.fields import box_muller

    x = box_muller(np.random.default_rng(0), np.empty((4, 64, 64), dtype=np.float32)).ravel().astype(np.float64)
    n = x.size
    assert abs(x.mean()) < 5 / np.sqrt(n)
    assert abs(x.var() - 1) < 5 * np.sqrt(2 / n)
    kurtosis = np.mean(x**4) / x.var() ** 2
    assert abs(kurtosis - 3) < 5 * np.sqrt(24 / n)
    # Independent planes: no correlation between the cosine and sine halves.
    half = n // 2
    assert abs(np.mean(x[:half] * x[half:])) < 5 / np.sqrt(half)
