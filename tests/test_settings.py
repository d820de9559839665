"""The pipeline's settings: every numeric value finite and in range, and the smallest map the estimators handle."""

import math

import numpy as np
import pytest

from datapipe.errors import PipelineError
from datapipe.settings import (
    MIN_NPIX,
    MIN_QE_MODES,
    NUMERIC_RULES,
    QE_BEAM_FLOOR,
    SimulationSettings,
    axis_modes,
    beam_at,
    check_run_options,
)

SMALL = {"npix": 32, "taper_deg": 0.3}


@pytest.mark.parametrize("field", [rule.field for rule in NUMERIC_RULES])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, True, "1", None, -1, 10**20])
def test_every_numeric_setting_rejects_non_finite_wrong_type_and_out_of_range_values(field, value):
    with pytest.raises(PipelineError, match=f"must be an? (integer|number) in .* \\(got {value!r}\\)"):
        SimulationSettings(**{**SMALL, field: value})


def test_integers_must_be_ints_and_the_message_names_the_fix():
    with pytest.raises(PipelineError, match=r"npix must be an integer in \[8, 8192\] \(got 32.0\); 8x8 is the "
                                            r"smallest map the quadratic estimators handle; e.g. --npix 128"):
        SimulationSettings(npix=32.0, taper_deg=0.3)
    with pytest.raises(PipelineError, match=r"seed must be an integer .* \(got 1.5\); e.g. --seed 0"):
        SimulationSettings(**SMALL, seed=1.5)


def test_the_defaults_and_the_bounds_themselves_are_valid():
    SimulationSettings()
    SimulationSettings(npix=MIN_NPIX, taper_deg=0.0)
    SimulationSettings(**SMALL, null_fraction=1.0, noise_uk_arcmin=1e4, seed=2**63 - 1, qe_mean_field_sims=0)


def test_axis_modes_counts_the_multipoles_of_the_periodic_patch():
    # 128 pixels of 2.34375' (5 deg): Delta L = 2 pi / 5 deg = 72; modes 72 k for k = 1..64 within [300, 3500].
    s = SimulationSettings()
    assert axis_modes(s, 300, 3500) == sum(1 for k in range(1, 65) if 300 <= 72 * k <= 3500) == 44


@pytest.mark.parametrize(
    ("settings", "modes"),
    [({"npix": 8, "pixel_arcmin": 2.34375}, 3), ({"npix": 12, "pixel_arcmin": 2.0}, 3),
     ({"npix": 32, "pixel_arcmin": 30.0}, 3), ({"npix": 16, "pixel_arcmin": 1.5}, 3)],
)
def test_the_smallest_accepted_maps_give_finite_sane_reconstructions(settings, modes):
    """Maps at the limit (exactly MIN_QE_MODES modes per axis) are accepted and their QE maps are finite and of
    order one: |rec| < 10, where the rejected geometries gave NaN, zeros or 1e6-1e23 (see the next test)."""
    from datapipe.simulate import MapSetSimulator

    s = SimulationSettings(**settings, taper_deg=0.0, qe_mean_field_sims=8, maps=("rec_kappa", "rec_tau"))
    assert axis_modes(s, s.lmin_cmb, s.lmax_cmb) == modes == MIN_QE_MODES
    out = MapSetSimulator(s).simulate(range(8))
    for name, maps in out.items():
        assert np.isfinite(maps).all() and 0 < np.abs(maps).max() < 10, name


@pytest.mark.parametrize(
    "settings",
    [{"npix": 4, "pixel_arcmin": 3.1}, {"npix": 16, "pixel_arcmin": 0.8}, {"npix": 32, "pixel_arcmin": 34.0},
     {"npix": 32, "pixel_arcmin": 40.0}, {"npix": 32, "pixel_arcmin": 0.1}],
)
def test_maps_with_too_few_modes_for_the_estimators_are_refused(settings):
    """These geometries (2, 2, 1, 0 and 0 modes per axis) gave NaN, zero or absurd (up to 1e23) QE maps."""
    with pytest.raises(PipelineError, match="Fourier mode|smallest map"):
        SimulationSettings(**settings, taper_deg=0.0)
    SimulationSettings(**{**settings, "npix": max(settings["npix"], MIN_NPIX)}, taper_deg=0.0, maps=("q_len",))


def test_a_beam_that_erases_the_estimators_range_is_refused_and_the_limit_is_stated():
    widest = SimulationSettings(**SMALL, beam_arcmin=9.9)
    assert beam_at(widest.lmax_cmb, 9.9) >= QE_BEAM_FLOOR > beam_at(widest.lmax_cmb, 10.0)
    with pytest.raises(PipelineError, match=r"use --beam-arcmin 9.9 or less, or --no-qe"):
        SimulationSettings(**SMALL, beam_arcmin=10.0)
    SimulationSettings(**SMALL, beam_arcmin=10.0, maps=("q_len", "u_len"))  # no QE: the beam is fine
    with pytest.raises(PipelineError, match="as wide as the 75-arcmin map"):
        SimulationSettings(**SMALL, beam_arcmin=75.0, maps=("q_len",))


def test_beam_transfer_matches_the_estimators():
    from datapipe.estimators import beam_transfer

    ell = np.array([0.0, 300.0, 3500.0])
    np.testing.assert_allclose([beam_at(x, 5.0) for x in ell], beam_transfer(ell, 5.0), rtol=1e-12)


def test_the_taper_must_leave_an_untapered_centre():
    # 0.58 deg = 14 pixels of 2.34375': 28 < 32 leaves 4 central pixels at 1; 0.625 deg = 16 pixels leaves none.
    SimulationSettings(npix=32, taper_deg=0.6)
    with pytest.raises(PipelineError, match="leaves no untapered centre; use --taper-deg below 0.625"):
        SimulationSettings(npix=32, taper_deg=0.625)


@pytest.mark.parametrize(
    ("options", "message"),
    [((0, 1, 16), "--nsims must be"), ((10, 0, 16), "--workers must be"), ((10, 10**6, 16), "per CPU core"),
     ((10, 1, 0), "--chunk-size must be"), ((10, 1, 10**5), "--chunk-size must be"), ((10.0, 1, 16), "--nsims"),
     ((10, True, 16), "--workers")],
)
def test_run_options(options, message):
    with pytest.raises(PipelineError, match=message):
        check_run_options(*options)
    check_run_options(10, 1, 16)
