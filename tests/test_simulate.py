"""The simulation chain: identities, null map sets, determinism, outputs."""

import numpy as np
import pytest

from datapipe.settings import ALL_MAPS, SimulationSettings
from datapipe.simulate import MapSetSimulator

SMALL = dict(npix=32, pixel_arcmin=2.34375, taper_deg=0.3)
FLAT = dict(npix=32, pixel_arcmin=2.34375, taper_deg=0.0)


def test_all_arrays_have_the_right_shape_dtype_and_orientation():
    s = SimulationSettings(**SMALL, maps=ALL_MAPS, seed=1)
    sim = MapSetSimulator(s)
    out = sim.simulate([0, 1, 2])
    assert list(out) == list(ALL_MAPS)
    for name, arr in out.items():
        assert arr.shape == (3, 32, 32) and arr.dtype == np.float32, name
        assert np.all(np.isfinite(arr)), name
    # Every saved map carries the taper, stored flipped up-down (row 0 = top of the sky image).
    taper = sim.taper[::-1]
    for name in ("t_len", "q_len", "u_len", "t_unl", "q_unl", "u_unl", "tru_kappa", "tru_tau", "tru_phi"):
        assert np.all(out[name][:, taper == 0] == 0), name
    flipped = MapSetSimulator(s.replace(taper_deg=0)).simulate([0])
    assert flipped["tru_kappa"].shape == (1, 32, 32)


def test_modulation_and_lensing_are_identities_for_null_map_sets():
    s = SimulationSettings(**SMALL, null_fraction=1.0, maps=("t_len", "q_len", "u_len", "e_len", "b_len", "t_unl",
                                                             "q_unl", "u_unl", "e_unl", "tru_kappa", "tru_tau"))
    out = MapSetSimulator(s).simulate(range(4))
    assert np.all(out["tru_kappa"] == 0) and np.all(out["tru_tau"] == 0)
    for x in "tqu":
        np.testing.assert_allclose(out[f"{x}_len"], out[f"{x}_unl"], atol=1e-5 * np.abs(out[f"{x}_unl"]).max())
    np.testing.assert_allclose(out["e_len"], out["e_unl"], atol=1e-4 * np.abs(out["e_unl"]).max())


def test_modulation_alone_multiplies_by_exp_minus_tau():
    s = SimulationSettings(**FLAT, null_fraction=0.0, lensing=False, maps=("q_len", "q_unl", "tru_tau"))
    out = MapSetSimulator(s).simulate(range(3))
    np.testing.assert_allclose(out["q_len"], out["q_unl"] * np.exp(-out["tru_tau"]), atol=1e-4, rtol=1e-4)
    assert np.abs(out["q_len"] - out["q_unl"]).max() > 0


def test_switches_turn_fields_off():
    s = SimulationSettings(**SMALL, null_fraction=0.0, tau=False, maps=("tru_tau", "tru_kappa"))
    out = MapSetSimulator(s).simulate(range(3))
    assert np.all(out["tru_tau"] == 0) and np.abs(out["tru_kappa"]).max() > 0
    s = SimulationSettings(**SMALL, null_fraction=0.0, lensing=False, maps=("tru_tau", "tru_kappa"))
    out = MapSetSimulator(s).simulate(range(3))
    assert np.all(out["tru_kappa"] == 0) and np.abs(out["tru_tau"]).max() > 0


def test_null_fraction_is_honoured():
    s = SimulationSettings(**SMALL, null_fraction=0.2, seed=4, maps=("tru_kappa", "tru_tau"))
    sim = MapSetSimulator(s)
    flags = sim.null_flags(range(4000))
    # Binomial: 800 ± 25; allow 4 sigma.
    assert abs(flags.sum() - 800) < 4 * np.sqrt(4000 * 0.2 * 0.8)
    out = sim.simulate(range(40))
    null = flags[:40]
    kappa_power = np.abs(out["tru_kappa"]).max(axis=(1, 2))
    assert np.all(kappa_power[null] == 0) and np.all(kappa_power[~null] > 0)
    assert not MapSetSimulator(s.replace(null_fraction=0.0)).null_flags(range(200)).any()
    assert MapSetSimulator(s.replace(null_fraction=1.0)).null_flags(range(200)).all()


def test_same_seed_same_bytes_and_chunking_does_not_matter():
    s = SimulationSettings(**SMALL, maps=ALL_MAPS, seed=7)
    a = MapSetSimulator(s).simulate(range(6))
    b = MapSetSimulator(s).simulate(range(6))
    parts = [MapSetSimulator(s).simulate(r) for r in ([0, 1], [2], [3, 4, 5])]
    for name in ALL_MAPS:
        assert a[name].tobytes() == b[name].tobytes(), name
        np.testing.assert_array_equal(np.concatenate([p[name] for p in parts]), a[name], err_msg=name)
    other = MapSetSimulator(s.replace(seed=8)).simulate(range(6))
    assert not np.allclose(other["q_len"], a["q_len"])


def test_noise_level_in_the_observed_maps():
    s = SimulationSettings(**FLAT, null_fraction=1.0, noise_uk_arcmin=5.0,
                           maps=("t_len", "t_unl", "q_len", "q_unl"))
    out = MapSetSimulator(s).simulate(range(50))
    sigma_t = 5.0 / 2.34375
    assert np.std(out["t_len"] - out["t_unl"]) == pytest.approx(sigma_t, rel=0.02)
    assert np.std(out["q_len"] - out["q_unl"]) == pytest.approx(np.sqrt(2) * sigma_t, rel=0.02)


def test_beam_smooths_the_observed_maps():
    s = SimulationSettings(**FLAT, null_fraction=1.0, beam_arcmin=5.0, maps=("t_len", "t_unl"))
    out = MapSetSimulator(s).simulate(range(5))
    assert np.var(out["t_len"]) < np.var(out["t_unl"])
    from datapipe.estimators import beam_transfer
    from datapipe.fourier import FlatSkyGrid

    g = FlatSkyGrid(32, 2.34375)
    ratio = np.abs(g.rfft(out["t_len"].astype(float))) / np.maximum(np.abs(g.rfft(out["t_unl"].astype(float))), 1e-30)
    expected = beam_transfer(g.modlmap_half, 5.0)
    mask = (g.modlmap_half > 50) & (g.modlmap_half < 3000)
    np.testing.assert_allclose(ratio[:, mask], np.broadcast_to(expected[mask], ratio[:, mask].shape), rtol=1e-3)


def test_phi_is_two_kappa_over_L_L_plus_1():
    """tru_phi = 2 tru_kappa / (L(L+1)) and rec_phi = 2 rec_kappa / (L(L+1)), the original pipeline's relation.

    Untapered maps, so the relation holds mode by mode. The maps are float32: a Fourier mode carries a rounding
    error of ~1e-7 of the map's rms times n, so only modes above 1e-3 of the largest are compared, to 1e-4. The
    flat-sky 2/L² would differ by 1/(L+1) ≥ 1.5e-4 on this grid (L ≤ 6517), 3.5e-3 at its fundamental.
    """
    from datapipe.fourier import FlatSkyGrid

    s = SimulationSettings(**FLAT, null_fraction=0.0, seed=3, qe_mean_field_sims=0,
                           maps=("tru_kappa", "tru_phi", "rec_kappa", "rec_phi"))
    out = MapSetSimulator(s).simulate(range(2))
    ell = FlatSkyGrid(32, 2.34375).modlmap
    expected = np.zeros_like(ell)
    expected[ell > 0] = 2.0 / (ell[ell > 0] * (ell[ell > 0] + 1.0))
    for kappa_name, phi_name in (("tru_kappa", "tru_phi"), ("rec_kappa", "rec_phi")):
        kappa_k = np.fft.fft2(out[kappa_name].astype(np.float64))
        phi_k = np.fft.fft2(out[phi_name].astype(np.float64))
        for k, p in zip(kappa_k, phi_k, strict=True):
            compared = (ell > 0) & (np.abs(p) > 1e-3 * np.abs(p).max())
            assert compared.sum() > 20, phi_name
            np.testing.assert_allclose(p[compared] / k[compared], expected[compared], rtol=1e-4, err_msg=phi_name)
            assert np.abs(p[ell == 0]).max() < 1e-6 * np.abs(p).max()  # no monopole
