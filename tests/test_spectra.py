"""Cached CAMB spectra and the patchy-τ spectrum (the comparison with CAMB files: test_camb_files.py)."""

import json

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.signal import argrelmax

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


#: The paper's patchy-τ model, L(L+1)C_L^ττ/2π at these L, as the original ResUNet-CMB pipeline tabulates it
#: (``def_ttau_els``, ``def_ttau_vals``): copied here from that source, not read from datapipe.spectra, so that the
#: test compares the code with the paper's numbers rather than with itself.
PAPER_TAU_L = [2, 70, 170, 270, 370, 470, 570, 670, 770, 870, 970, 1070, 1170, 1270, 1370, 1470, 1570, 1670, 1770,
               1870, 1970, 2500, 3000, 4000, 4500, 5000, 6000, 7000, 8000, 9000, 10000]
PAPER_TAU_DL = [2.0e-10, 1.3e-6, 4.9e-6, 7.2e-6, 8.5e-6, 8.9e-6, 8.6e-6, 8.2e-6, 7.9e-6, 7.4e-6, 6.8e-6, 6.1e-6, 5.7e-6,
                5.1e-6, 4.8e-6, 4.3e-6, 4.0e-6, 3.7e-6, 3.4e-6, 3.0e-6, 2.8e-6, 1.8e-6, 1.2e-6, 5e-7, 3.3e-7, 2.2e-7,
                9e-8, 4e-8, 1.7e-8, 7e-9, 3e-9]


def test_tau_spectrum_is_the_papers_model():
    """C_L^ττ of the paper's model: its tabulated L(L+1)C_L/2π, interpolated quadratically in L over 2 ≤ L < 9000 as
    the original pipeline does (``interp1d(kind="quadratic")`` on ``arange(2, 9000)``), divided by L(L+1)/2π; zero
    outside. Computed here from the paper's numbers; agreement to 1e-10 (float64 rounding of the same arithmetic)."""
    assert TAU_TABLE_L.tolist() == PAPER_TAU_L and TAU_TABLE_DL.tolist() == PAPER_TAU_DL
    ell = np.arange(2, 9000, dtype=float)
    model = interp1d(PAPER_TAU_L, PAPER_TAU_DL, kind="quadratic", fill_value="extrapolate")(ell)
    expected = model * 2 * np.pi / (ell * (ell + 1))
    np.testing.assert_allclose(tau_spectrum(ell), expected, rtol=1e-10, atol=0)
    # At the tabulated multipoles the spectrum is the table itself (a check of the conversion alone).
    nodes = np.array(PAPER_TAU_L[:-1], dtype=float)
    np.testing.assert_allclose(tau_spectrum(nodes) * nodes * (nodes + 1) / (2 * np.pi), PAPER_TAU_DL[:-1], rtol=1e-10)
    assert tau_spectrum(np.array([0.0, 1.0, 9001.0, 12000.0])).tolist() == [0.0, 0.0, 0.0, 0.0]


def test_cached_spectra_have_the_features_of_the_papers_lcdm_cosmology(spectra):
    """Facts about ΛCDM at the Planck 2013 best fit, independent of how the cache was made.

    - TT: first acoustic peak at ℓ = 220 (Planck 2013 XVI: 220.0 ± 0.5) with D_ℓ within 4% of the measured
      5717 μK²; the later peaks spaced by the acoustic scale ℓ_A = π/θ_* ≈ 302 (100 θ_* ≈ 1.0415), within 3%.
    - EE: its highest peak at ℓ ≈ 1000 with D_ℓ ≈ 40–45 μK²; lensed BB: a broad bump near ℓ ≈ 1000 of ≈ 0.1 μK².
    - Lensing potential: [L(L+1)]² C_L^φφ / 2π peaks at ≈ 1.4 × 10⁻⁷ near L ≈ 40.
    These catch a wrong unit (K vs μK, T_CMB), a missing ℓ(ℓ+1)/2π, or spectra of another cosmology or other columns.
    """
    ell = spectra.ell
    dl = ell * (ell + 1) / (2 * np.pi)
    tt = spectra.tt * dl
    peaks = argrelmax(tt[:2500], order=50)[0]
    peaks = peaks[peaks > 100]
    assert 215 <= peaks[0] <= 225 and abs(tt[peaks[0]] / 5717 - 1) < 0.04, (peaks[0], tt[peaks[0]])
    assert len(peaks) >= 8
    spacing = (peaks[7] - peaks[1]) / 6
    assert abs(spacing / (np.pi / 1.0415e-2) - 1) < 0.03, spacing
    ee = spectra.ee * dl
    assert 900 <= ell[np.argmax(ee[:3000])] <= 1100 and 38 < ee[:3000].max() < 47
    bb = spectra.lensed_bb * dl
    assert 700 <= ell[np.argmax(bb[:3000])] <= 1200 and 0.08 < bb[:3000].max() < 0.13
    pp = (ell * (ell + 1)) ** 2 * spectra.pp / (2 * np.pi)
    assert 20 <= ell[np.argmax(pp)] <= 60 and 1.2e-7 < pp.max() < 1.6e-7
