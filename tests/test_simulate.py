"""The simulation chain: identities, orientation, the order of modulation and lensing, determinism, outputs."""

import dataclasses

import numpy as np
import pytest
from lensing_helpers import fourier_series_at
from pixell import enmap, utils

from datapipe.fields import GaussianFieldGenerator
from datapipe.fourier import FlatSkyGrid
from datapipe.settings import ALL_MAPS, SimulationSettings
from datapipe.simulate import MapSetSimulator

SMALL = dict(npix=32, pixel_arcmin=2.34375, taper_deg=0.3)
FLAT = dict(npix=32, pixel_arcmin=2.34375, taper_deg=0.0)


def test_all_arrays_have_the_right_shape_dtype_and_taper():
    s = SimulationSettings(**SMALL, maps=ALL_MAPS, seed=1)
    sim = MapSetSimulator(s)
    out = sim.simulate([0, 1, 2])
    assert list(out) == list(ALL_MAPS)
    for name, arr in out.items():
        assert arr.shape == (3, 32, 32) and arr.dtype == np.float32, name
        assert np.all(np.isfinite(arr)), name
    # Every saved map carries the taper (symmetric, so this says nothing about the orientation: see below).
    for name in ("t_len", "q_len", "u_len", "t_unl", "q_unl", "u_unl", "tru_kappa", "tru_tau", "tru_phi"):
        assert np.all(out[name][:, sim.taper == 0] == 0), name


def test_modulation_and_lensing_are_identities_for_null_map_sets():
    s = SimulationSettings(**SMALL, null_fraction=1.0, maps=("t_len", "q_len", "u_len", "e_len", "b_len", "t_unl",
                                                             "q_unl", "u_unl", "e_unl", "tru_kappa", "tru_tau"))
    out = MapSetSimulator(s).simulate(range(4))
    assert np.all(out["tru_kappa"] == 0) and np.all(out["tru_tau"] == 0)
    for x in "tqu":
        np.testing.assert_allclose(out[f"{x}_len"], out[f"{x}_unl"], atol=1e-5 * np.abs(out[f"{x}_unl"]).max())
    np.testing.assert_allclose(out["e_len"], out["e_unl"], atol=1e-4 * np.abs(out["e_unl"]).max())


def test_modulation_alone_multiplies_t_q_and_u_by_exp_minus_tau():
    """Without lensing, beam, noise and taper, each observed map is its primordial map times e^{-τ}.

    The maps are float32 (relative rounding 6e-8) and the chain goes through a few float32 FFTs: 1e-5 of the map's
    largest value is a wide margin for that, and 50 times below the modulation itself (τ rms ≈ 0.005).
    """
    s = SimulationSettings(**FLAT, null_fraction=0.0, lensing=False, seed=2,
                           maps=("t_len", "q_len", "u_len", "t_unl", "q_unl", "u_unl", "tru_tau"))
    out = MapSetSimulator(s).simulate(range(3))
    screen = np.exp(-out["tru_tau"].astype(np.float64))
    for x in "tqu":
        unlensed = out[f"{x}_unl"].astype(np.float64)
        tolerance = 1e-5 * np.abs(unlensed).max()
        np.testing.assert_allclose(out[f"{x}_len"], unlensed * screen, rtol=0, atol=tolerance, err_msg=x)
        assert np.abs(out[f"{x}_len"] - unlensed).max() > 50 * tolerance, x  # the modulation is there


def test_observed_maps_are_the_modulated_maps_lensed(spectra):
    """observed = lens(primordial × e^{-τ}), not e^{-τ} × lens(primordial): the order of the two operations.

    The reference remap is the exact Fourier series of the maps (tests/lensing_helpers.py) at the positions
    x + ∇φ, with ∇φ from pixell's gradient of the saved φ map; the pipeline's remap is accurate to 1e-5
    (``datapipe.lens.DEFAULT_EPSILON``), so it must agree with the right order to 1e-4 of the map's rms. A τ spectrum
    100 times the paper's (τ rms ≈ 0.05) makes the other order differ by > 1e-3 of the rms (measured: 3e-3 to
    1e-2), at least 10 times the tolerance. This also pins the direction of the deflection (+∇φ, as pixell).
    """
    strong = dataclasses.replace(spectra, tau=100 * spectra.tau)
    s = SimulationSettings(**FLAT, null_fraction=0.0, seed=12,
                           maps=("t_len", "q_len", "u_len", "t_unl", "q_unl", "u_unl", "tru_tau", "tru_phi"))
    sim = MapSetSimulator(s, strong)
    out = {name: arr[:, ::-1].astype(np.float64) for name, arr in sim.simulate(range(2)).items()}  # sky order
    pixel_rad = s.pixel_arcmin * utils.arcmin
    for i in range(2):
        deflection = np.asarray(enmap.grad(enmap.enmap(out["tru_phi"][i], sim.grid.wcs)))  # radians, (dec, RA)
        positions = np.mgrid[0 : s.npix, 0 : s.npix] + deflection / pixel_rad  # RA and dec grow with the pixel index
        screen = np.exp(-out["tru_tau"][i])
        for x in "tqu":
            primordial = out[f"{x}_unl"][i]
            lensed_modulated = fourier_series_at(primordial * screen, positions, drop_nyquist=True)
            modulated_lensed = screen * fourier_series_at(primordial, positions, drop_nyquist=True)
            observed = out[f"{x}_len"][i]
            rms = np.sqrt(np.mean(observed**2))
            assert np.sqrt(np.mean((observed - lensed_modulated) ** 2)) < 1e-4 * rms, (i, x)
            assert np.sqrt(np.mean((observed - modulated_lensed) ** 2)) > 1e-3 * rms, (i, x)


class _KnownFields(GaussianFieldGenerator):
    """The pipeline's field generator with τ and κ replaced by given maps (the same in every map set)."""

    def __init__(self, grid: FlatSkyGrid, spectra, tau: np.ndarray, kappa: np.ndarray):
        super().__init__(grid, spectra)
        self._tau_k = grid.rfft(tau.astype(np.float32))
        self._kappa_k = grid.rfft(kappa.astype(np.float32))

    def fields(self, white):
        fk = super().fields(white)
        fk.tau = np.broadcast_to(self._tau_k, fk.tau.shape).copy()
        fk.kappa = np.broadcast_to(self._kappa_k, fk.kappa.shape).copy()
        return fk


def test_saved_maps_have_north_up_and_east_as_in_pixell(spectra):
    """Row 0 of a saved map is the northmost row of pixels (the original data's up-down flip); columns keep pixell's
    order. Checked with fields of known shape on the sky: τ = a sin(2π dec / H), rising to the north through the
    centre, and κ = b sin(2π RA / W), rising with RA (H, W: the patch's height and width, so both are single Fourier
    modes that go through the pipeline's FFTs exactly, up to float32 rounding)."""
    s = SimulationSettings(**FLAT, null_fraction=0.0, seed=1, maps=("tru_tau", "tru_kappa"))
    sim = MapSetSimulator(s, spectra)
    dec, ra = enmap.posmap(*sim.grid.geometry)  # radians, in pixell's (internal) pixel order
    side = s.npix * s.pixel_arcmin * utils.arcmin
    tau, kappa = 0.01 * np.sin(2 * np.pi * dec / side), 0.02 * np.sin(2 * np.pi * ra / side)
    sim.generator = _KnownFields(sim.grid, spectra, tau, kappa)
    out = sim.simulate([0, 1])
    north_first = np.argsort(-dec[:, 0])  # rows from the northmost to the southmost
    for name, truth in (("tru_tau", tau), ("tru_kappa", kappa)):
        for saved in out[name]:
            np.testing.assert_allclose(saved, truth[north_first], rtol=0, atol=1e-6 * np.abs(truth).max(),
                                       err_msg=name)
    # The sign of a known gradient: τ grows northwards through the centre, so it falls down the saved rows there;
    # κ grows with RA, i.e. with the column (pixell's CAR geometry here has RA increasing with the pixel index).
    centre = s.npix // 2
    assert np.all(np.diff(out["tru_tau"][0, centre - 3 : centre + 3, 0]) < 0)
    assert ra[0, 1] > ra[0, 0] and np.all(np.diff(out["tru_kappa"][0, 0, centre - 3 : centre + 3]) > 0)


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
    sigma_t = 5.0 / 2.34375  # μK per pixel: μK-arcmin over the pixel side in arcmin
    # The standard deviation of n Gaussian samples scatters by 1/sqrt(2n) relative: a 4σ bound (n = 51200: 1.25%).
    rel = 4 / np.sqrt(2 * out["t_len"].size)
    assert np.std(out["t_len"] - out["t_unl"]) == pytest.approx(sigma_t, rel=rel)
    assert np.std(out["q_len"] - out["q_unl"]) == pytest.approx(np.sqrt(2) * sigma_t, rel=rel)


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


# --------------------------------------------------------------------------------------------------------------
# Cosmic polarization rotation

#: Fingerprints (mean, rms, mean of x·cos(0.37 k) over the flattened pixels k) of the arrays of REFERENCE_RUN,
#: computed with the code of commit 445eb29 (before the rotation existed; the spectra and φ = 2κ/(L(L+1)) of
#: issue 17 included). Regenerate them only for a deliberate change of the simulation.
REFERENCE_RUN = dict(npix=32, taper_deg=0.3, noise_uk_arcmin=1.0, beam_arcmin=1.0, null_fraction=0.5, seed=5,
                     qe_mean_field_sims=4)
REFERENCE_FINGERPRINTS = {
    "t_len": (-5.129926464107214, 49.397549500103636, 0.6968878079384282),
    "q_len": (-0.28872309473638325, 3.400920120178243, -0.008235375005552742),
    "u_len": (0.013542366969950592, 3.5376926222443164, 0.08357870950708632),
    "e_len": (-0.2887230802363092, 4.536702442530779, -0.06155701911101487),
    "b_len": (0.01354236611408055, 1.869046914914528, 0.04426670429804259),
    "t_unl": (-4.953944264485926, 49.79999387984055, 0.721758769617363),
    "q_unl": (-0.26018692949316335, 3.375741091734807, -0.01572606151109581),
    "u_unl": (0.025751409881065612, 3.5431227841588973, 0.08133805386024058),
    "e_unl": (-0.2601869229131637, 4.545944553833664, -0.06346609165131314),
    "b_unl": (0.025751400387107992, 1.81210402935609, 0.03818861949384181),
    "tru_kappa": (0.003218675584437891, 0.03843138180495387, 0.0008845744715713631),
    "tru_phi": (6.447638221620438e-08, 3.1551829941137974e-07, 2.291633862522098e-09),
    "tru_tau": (6.781503984465594e-05, 0.002013465208717748, 2.5180834857305598e-05),
    "rec_kappa": (1.816307104718362e-10, 0.32530279210705143, -0.0015719865780520845),
    "rec_phi": (-8.862268557896513e-16, 6.809239568635113e-07, -3.0753351812976337e-09),
    "wf_rec_kappa": (2.7191152107697292e-11, 0.04548925677203625, -0.00039713215900498997),
    "rec_tau": (-3.667963710540789e-10, 0.23627989714088182, 0.005624267580978157),
    "wf_rec_tau": (7.83701743908502e-13, 0.0006752781296465312, 7.127928474032131e-06),
}


def _fingerprint(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64).ravel()
    return np.array([x.mean(), np.sqrt(np.mean(x**2)), np.mean(x * np.cos(0.37 * np.arange(x.size)))])


def test_without_rotation_the_data_are_those_of_the_code_before_it(monkeypatch):
    import datapipe.simulate as simulate_module

    def no_alpha(*args, **kwargs):
        raise AssertionError("the rotation's generator must not be used when the amplitude is 0")

    monkeypatch.setattr(simulate_module, "rotation_rng", no_alpha)
    out = MapSetSimulator(SimulationSettings(**REFERENCE_RUN, maps=tuple(REFERENCE_FINGERPRINTS))).simulate(range(4))
    for name, expected in REFERENCE_FINGERPRINTS.items():
        got = _fingerprint(out[name])
        # Any change of the chain (an extra random draw, another order of operations) changes these by O(rms);
        # float32 round-off between platforms by ~1e-7 rms.
        assert np.all(np.abs(got - np.array(expected)) <= 1e-5 * expected[1]), (name, got, expected)


def test_rotation_changes_the_polarization_and_nothing_else():
    names = ("t_len", "q_len", "u_len", "q_unl", "u_unl", "e_unl", "tru_kappa", "tru_tau", "tru_alpha", "rec_tau")
    base = SimulationSettings(**SMALL, noise_uk_arcmin=2.0, null_fraction=0.3, seed=12, qe_mean_field_sims=0,
                              maps=names)
    off = MapSetSimulator(base).simulate(range(5))
    on = MapSetSimulator(base.replace(alpha_amplitude_deg=0.5)).simulate(range(5))
    # κ, τ and the primordial CMB come from the map set's own stream: unchanged bytes.
    for name in ("q_unl", "u_unl", "e_unl", "tru_kappa", "tru_tau"):
        assert on[name].tobytes() == off[name].tobytes(), name
    # T with its noise too, up to the lensing accuracy (1e-5): T is lensed in one complex transform with Q.
    np.testing.assert_allclose(on["t_len"], off["t_len"], atol=1e-5 * np.abs(off["t_len"]).max())
    assert np.all(off["tru_alpha"] == 0) and np.abs(on["tru_alpha"]).max() > 0
    for name in ("q_len", "u_len", "rec_tau"):
        assert np.abs(on[name] - off[name]).max() > 1e-3 * np.abs(off[name]).max(), name


def test_rotation_alone_rotates_the_primordial_maps():
    s = SimulationSettings(**FLAT, null_fraction=0.0, tau=False, lensing=False, alpha_amplitude_deg=2.0,
                           maps=("q_len", "u_len", "q_unl", "u_unl", "tru_alpha"))
    out = MapSetSimulator(s).simulate(range(3))
    alpha = out["tru_alpha"].astype(np.float64)
    q, u = out["q_unl"].astype(np.float64), out["u_unl"].astype(np.float64)
    # Q ± iU → e^{±2iα}(Q ± iU), α in radians (A = 2° gives an rms of a few hundredths of a radian).
    assert 0.01 < alpha.std() < 0.2
    np.testing.assert_allclose(out["q_len"], q * np.cos(2 * alpha) - u * np.sin(2 * alpha), atol=1e-4)
    np.testing.assert_allclose(out["u_len"], q * np.sin(2 * alpha) + u * np.cos(2 * alpha), atol=1e-4)


def test_null_fields_choose_what_the_null_map_sets_switch_off():
    base = SimulationSettings(**SMALL, null_fraction=1.0, alpha_amplitude_deg=0.5,
                              maps=("tru_kappa", "tru_tau", "tru_alpha"))
    paper1 = MapSetSimulator(base).simulate(range(3))
    assert np.all(paper1["tru_kappa"] == 0) and np.all(paper1["tru_tau"] == 0)
    assert np.abs(paper1["tru_alpha"]).max() > 0
    paper2 = MapSetSimulator(base.replace(null_fields=("alpha",))).simulate(range(3))
    assert np.all(paper2["tru_alpha"] == 0)
    assert np.abs(paper2["tru_kappa"]).max() > 0 and np.abs(paper2["tru_tau"]).max() > 0
    both = MapSetSimulator(base.replace(null_fields="tau,kappa,alpha")).simulate(range(3))
    assert all(np.all(both[name] == 0) for name in both)
    # The same map sets are null whatever the null fields.
    mixed = base.replace(null_fraction=0.5, null_fields=("alpha",))
    flags = MapSetSimulator(mixed).null_flags(range(12))
    alpha = MapSetSimulator(mixed).simulate(range(12))["tru_alpha"]
    assert 0 < flags.sum() < 12
    np.testing.assert_array_equal(np.abs(alpha).max(axis=(1, 2)) == 0, flags)


@pytest.mark.parametrize("changes,message", [
    ({"alpha_amplitude_deg": -0.1}, "rotation amplitude must be a number in [0, 45] degrees"),
    ({"alpha_amplitude_deg": float("nan")}, "rotation amplitude must be a number in [0, 45] degrees"),
    ({"null_fields": ("tau", "alhpa")}, "unknown null field 'alhpa' (did you mean alpha?)"),
    ({"null_fields": ()}, "no null fields given"),
    ({"null_fields": ("tau", "tau")}, "null fields repeated"),
    ({"null_fields": 3}, "null fields must be names"),
    ({"null_fields": ("alpha",)}, "switches off a rotation that is already off"),
])
def test_bad_rotation_settings(changes, message):
    from datapipe.errors import PipelineError

    with pytest.raises(PipelineError) as info:
        SimulationSettings(**SMALL, **changes)
    assert message in str(info.value)


def test_rotation_comes_before_lensing():
    from datapipe.lens import deflection_from_kappa
    from datapipe.rotation import rotate_qu

    s = SimulationSettings(**FLAT, null_fraction=0.0, tau=False, alpha_amplitude_deg=2.0,
                           maps=("q_len", "u_len", "q_unl", "u_unl", "tru_alpha", "tru_kappa"))
    sim = MapSetSimulator(s)
    out = {name: arr[:, ::-1].astype(np.float64) for name, arr in sim.simulate(range(2)).items()}  # sky orientation
    _, deflection = deflection_from_kappa(sim.grid, sim.grid.rfft(out["tru_kappa"]))

    def lensed(q, u):
        return np.stack([sim.lenser.lens(np.stack([q[j], u[j]]), deflection[j]) for j in range(2)], axis=1)

    rotated_then_lensed = lensed(*rotate_qu(out["q_unl"], out["u_unl"], out["tru_alpha"]))
    lensed_then_rotated = np.stack(rotate_qu(*lensed(out["q_unl"], out["u_unl"]), out["tru_alpha"]))
    observed = np.stack([out["q_len"], out["u_len"]])
    scale = np.abs(observed).max()
    # Same up to the float32 round trip of κ (1e-4); the other order is off by ∇α·deflection (per cent).
    assert np.abs(observed - rotated_then_lensed).max() < 1e-3 * scale
    assert np.abs(observed - lensed_then_rotated).max() > 1e-2 * scale
