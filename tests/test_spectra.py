"""Cached CAMB spectra and the patchy-τ spectrum (the comparison with CAMB files: test_camb_files.py)."""

import json

import numpy as np
import pytest

from datapipe.spectra import (
    CACHE_LMAX,
    CACHE_PATH,
    CAMB_SETTINGS,
    PLANCK2013_PARAMS,
    TAU_TABLE_DL,
    TAU_TABLE_L,
    compute_camb_spectra,
    tau_spectrum,
)


def test_cache_covers_the_grid_and_is_consistent(spectra):
    assert spectra.lmax == CACHE_LMAX
    ell = spectra.ell
    np.testing.assert_allclose(spectra.kk, (ell * (ell + 1)) ** 2 * spectra.pp / 4, rtol=1e-12)
    assert np.all(spectra.ee[2:5000] > 0) and np.all(spectra.tt[2:5000] > 0)
    # Unlensed spectra: primordial BB is zero (r = 0) and the lensed BB is small but positive.
    assert np.all(spectra.lensed_bb[2:3000] > 0)
    assert np.max(spectra.lensed_bb[2:3000]) < 1e-2 * np.max(spectra.lensed_ee[2:3000])
    # Cauchy-Schwarz for the TE correlation used by the Cholesky factor.
    assert np.all(spectra.te[2:] ** 2 <= spectra.tt[2:] * spectra.ee[2:] * (1 + 1e-9))


def test_cache_records_the_parameters_and_camb_settings_of_the_code():
    """The cheap half of the check below: the cache was written by the current settings (not an older set-up)."""
    with np.load(CACHE_PATH) as f:
        assert json.loads(str(f["params"])) == PLANCK2013_PARAMS
        assert json.loads(str(f["camb_settings"])) == CAMB_SETTINGS


@pytest.mark.slow  # CAMB with k eta up to 1e5 takes ~30 s on a 2-core CPU
def test_cache_matches_camb_at_the_documented_parameters(spectra):
    fresh = compute_camb_spectra(lmax=3000)
    sel = slice(30, 3001)
    for name in ("tt", "ee", "lensed_ee", "lensed_bb", "pp"):
        np.testing.assert_allclose(getattr(spectra, name)[sel], fresh[name][sel], rtol=1e-3, err_msg=name)


def test_tau_spectrum_passes_through_the_table_and_vanishes_outside():
    inside = (TAU_TABLE_L >= 2) & (TAU_TABLE_L <= 9000)
    ell = TAU_TABLE_L[inside]
    dl = tau_spectrum(ell) * ell * (ell + 1) / (2 * np.pi)
    np.testing.assert_allclose(dl, TAU_TABLE_DL[inside], rtol=1e-10)
    assert tau_spectrum(np.array([0.0, 1.0, 9001.0, 12000.0])).tolist() == [0.0, 0.0, 0.0, 0.0]
    ell = np.arange(2, 9001)
    assert np.all(tau_spectrum(ell) > 0)
    # The peak of L(L+1)C_L/2π is near L ≈ 470 (8.9e-6).
    dl = tau_spectrum(ell) * ell * (ell + 1) / (2 * np.pi)
    assert 400 < ell[np.argmax(dl)] < 560
    assert dl.max() == pytest.approx(8.9e-6, rel=0.02)
