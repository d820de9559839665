"""Quadratic estimators: agreement with symlens, normalization on simulations, lensing biases of the τ and α QEs."""

import dataclasses
import json

import numpy as np
import pytest
import symlens
from pixell import enmap

from datapipe.estimators import QuadraticEstimators, alpha_response, eb_filter, tau_response
from datapipe.fourier import FlatSkyGrid
from datapipe.polarization import qu_to_eb_half
from datapipe.powspec import _bin_index, bin_theory, binned_power, linear_bins
from datapipe.rotation import ALPHA_LMAX, alpha_spectrum
from datapipe.settings import SimulationSettings
from datapipe.simulate import MapSetSimulator


def _weighted_theory(grid: FlatSkyGrid, response_2d: np.ndarray, cl: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin average of R(L) weighted by C_L (what a binned cross/auto ratio measures)."""
    index, weight, _ = _bin_index(grid, edges)
    r = response_2d[:, : grid.npix // 2 + 1]
    c = grid.interp_spectrum(cl)
    return np.array([(weight * r * c)[index == i].sum() / (weight * c)[index == i].sum()
                     for i in range(len(edges) - 1)])


def test_batched_reconstruction_equals_symlens(spectra):
    s = SimulationSettings(npix=64, taper_deg=0, null_fraction=0, noise_uk_arcmin=2.0, beam_arcmin=1.5, seed=9,
                           maps=("q_len", "u_len"))
    g = FlatSkyGrid(64, 2.34375)
    qe = QuadraticEstimators(g, spectra, s)
    out = MapSetSimulator(s, spectra).simulate([0, 1])
    q, u = out["q_len"][:, ::-1].astype(np.float64), out["u_len"][:, ::-1].astype(np.float64)
    ek, bk = qu_to_eb_half(g, q, u)
    kappa_k, tau_k = qe.reconstruct_fourier(ek.astype(np.complex64), bk.astype(np.complex64))
    alpha_k, tau_again = qe.reconstruct_fourier(ek.astype(np.complex64), bk.astype(np.complex64), ("alpha", "tau"))
    assert tau_again.tobytes() == tau_k.tobytes()
    shape, wcs = g.geometry
    # symlens needs beam-deconvolved E/B maps (the batched path deconvolves inside its filters).
    from datapipe.estimators import beam_transfer

    beam = beam_transfer(g.modlmap, s.beam_arcmin)
    for i in range(2):
        teb = enmap.map2harm(enmap.enmap(np.stack([0 * q[i], q[i], u[i]]), wcs), normalize="phys", iau=False)
        fd = dict(qe.feed_dict, X=teb[1] / beam, Y=teb[2] / beam)
        ref_kappa = symlens.QE(shape, wcs, fd, estimator="hu_ok", XY="EB", xmask=qe.cmb_mask, ymask=qe.cmb_mask,
                               kmask=qe.rec_mask).reconstruct(fd, xname="X_l1", yname="Y_l2")
        ref_tau = 2 * qe.tau_norm * symlens.unnormalized_quadratic_estimator_custom(
            shape, wcs, fd, eb_filter(tau_response()), xname="X_l1", yname="Y_l2", xmask=qe.cmb_mask,
            ymask=qe.cmb_mask)
        ref_alpha = 2 * qe.alpha_norm * symlens.unnormalized_quadratic_estimator_custom(
            shape, wcs, fd, eb_filter(alpha_response()), xname="X_l1", yname="Y_l2", xmask=qe.cmb_mask,
            ymask=qe.cmb_mask)
        half = slice(0, 33)
        assert np.abs(kappa_k[i] - ref_kappa[:, half]).max() < 1e-4 * np.abs(ref_kappa).max()
        assert np.abs(tau_k[i] - ref_tau[:, half]).max() < 1e-4 * np.abs(ref_tau).max()
        assert np.abs(alpha_k[i] - ref_alpha[:, half]).max() < 1e-4 * np.abs(ref_alpha).max()


def test_lensing_qe_is_unbiased_on_simulations(spectra):
    s = SimulationSettings(taper_deg=0, null_fraction=0, tau=False, seed=21, maps=("rec_kappa", "tru_kappa"))
    out = MapSetSimulator(s, spectra).simulate(np.arange(100))
    g = FlatSkyGrid(128, 2.34375)
    edges = linear_bins(20, 3500, 500)
    ratio = binned_power(g, out["rec_kappa"], out["tru_kappa"], edges=edges).mean / \
        binned_power(g, out["tru_kappa"], edges=edges).mean
    assert np.all(np.abs(ratio - 1) < 0.10), ratio


def test_tau_qe_is_unbiased_on_simulations(spectra):
    # Without lensing (which biases the τ QE, see below) and with a 25x larger τ spectrum so that 200 map sets
    # beat the QE noise; the normalization does not depend on the signal amplitude (τ rms stays ≈ 0.01).
    strong = dataclasses.replace(spectra, tau=25 * spectra.tau)
    s = SimulationSettings(taper_deg=0, null_fraction=0, lensing=False, seed=22, maps=("rec_tau", "tru_tau"))
    out = MapSetSimulator(s, strong).simulate(np.arange(200))
    g = FlatSkyGrid(128, 2.34375)
    edges = linear_bins(20, 3500, 700)
    cross = binned_power(g, out["rec_tau"], out["tru_tau"], edges=edges)
    auto = binned_power(g, out["tru_tau"], edges=edges)
    ratio = cross.mean / auto.mean
    assert np.all(np.abs(ratio - 1) < 0.10), ratio


def test_tau_qe_responds_to_lensing_as_predicted(spectra, record_property, capsys):
    """The lensing-induced bias of the τ QE (the paper's motivation): measured on τ-free lensed maps."""
    s = SimulationSettings(taper_deg=0, null_fraction=0, tau=False, seed=23, maps=("rec_tau", "tru_kappa"))
    sim = MapSetSimulator(s, spectra)
    out = sim.simulate(np.arange(150))
    g = sim.grid
    edges = linear_bins(100, 3100, 500)
    cross = binned_power(g, out["rec_tau"], out["tru_kappa"], edges=edges)
    auto = binned_power(g, out["tru_kappa"], edges=edges)
    measured = cross.mean / auto.mean
    sigma = cross.error / auto.mean
    response = sim.estimators.tau_response_to_kappa()
    predicted = _weighted_theory(g, response, spectra.kk, edges)
    # Clearly non-zero, and as large as first-order theory predicts.
    assert np.all(measured > 10 * sigma)
    assert np.all(np.abs(measured - predicted) < 5 * sigma + 0.05 * np.abs(predicted)), (measured, predicted)
    spurious = predicted**2 * bin_theory(g, spectra.kk, edges) / bin_theory(g, spectra.tau, edges)
    report = {"L": cross.ell.round().tolist(), "response_measured": measured.round(4).tolist(),
              "response_predicted": predicted.round(4).tolist(),
              "spurious_tau_power_over_C_tautau": spurious.round(2).tolist()}
    record_property("tau_qe_lensing_bias", json.dumps(report))
    with capsys.disabled():
        print("\nlensing-induced bias of the EB tau QE:", json.dumps(report))
    # Noiseless, the spurious τ power from lensing exceeds the true τ power at 500 < L < 2500.
    assert np.all(spurious[1:4] > 1)


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_noise_aware_normalization(spectra, noise):
    s = SimulationSettings(npix=64, taper_deg=0.5, noise_uk_arcmin=noise, maps=("rec_kappa",))
    g = FlatSkyGrid(64, 2.34375)
    qe = QuadraticEstimators(g, spectra, s)
    assert np.all(np.isfinite(qe.lensing_norm)) and np.all(np.isfinite(qe.tau_norm))
    assert qe.tau_norm[0, 0] == 0 and qe.kappa_noise[0, 0] == 0
    inside = (g.modlmap >= 300) & (g.modlmap <= 3000)
    assert np.all(qe.kappa_noise[inside] > 0) and np.all(qe.tau_noise[inside] > 0)
    if noise > 0:
        clean = QuadraticEstimators(g, spectra, s.replace(noise_uk_arcmin=0.0))
        assert np.all(qe.tau_noise[inside] > clean.tau_noise[inside])
        assert np.all(qe.kappa_noise[inside] > clean.kappa_noise[inside])


def test_mean_field_of_the_taper_is_subtracted(spectra):
    """The taper modulates the maps; without the mean field the τ QE sees it (the demo figure shows it)."""
    base = dict(npix=64, taper_deg=0.5, seed=31, maps=("rec_tau", "rec_kappa"))
    raw = MapSetSimulator(SimulationSettings(**base, qe_mean_field_sims=0), spectra).simulate(np.arange(48))
    cleaned = MapSetSimulator(SimulationSettings(**base, qe_mean_field_sims=64), spectra).simulate(np.arange(48))
    # The average over independent map sets leaves the mean field plus noise/sqrt(48).
    raw_mean = np.mean(raw["rec_tau"], axis=0)
    clean_mean = np.mean(cleaned["rec_tau"], axis=0)
    noise = np.std(cleaned["rec_tau"]) / np.sqrt(48)
    assert np.std(raw_mean) > 5 * noise
    assert np.std(clean_mean) < 2 * noise


def _bin_full_plane(grid: FlatSkyGrid, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Average of a full-plane (n, n) array over the Fourier modes of each bin (as binned_power weighs them)."""
    index, weight, _ = _bin_index(grid, edges)
    half = values[:, : grid.npix // 2 + 1]
    return np.array([(weight * half)[index == i].sum() / weight[index == i].sum() for i in range(len(edges) - 1)])


def test_rotation_qe_is_unbiased_on_simulations(spectra):
    # Without lensing, and with the lensed C^EE of the filters and response replaced by the unlensed one, so that
    # f = 2 C^EE cos 2(θ1 − θ2) is the exact first-order response of these maps (with the lensed C^EE the ratio is
    # low by ≈ 1 %, the lensed/unlensed difference of C^EE).
    unlensed = dataclasses.replace(spectra, lensed_ee=spectra.ee)
    nmaps, amplitude = 100, 0.5
    s = SimulationSettings(taper_deg=0, null_fraction=0, lensing=False, tau=False, alpha_amplitude_deg=amplitude,
                           seed=24, qe_mean_field_sims=0, maps=("rec_alpha", "tru_alpha"))
    sim = MapSetSimulator(s, unlensed)
    out = sim.simulate(np.arange(nmaps))
    g = sim.grid
    edges = linear_bins(20, 3500, 500)
    cross = binned_power(g, out["rec_alpha"], out["tru_alpha"], edges=edges)
    auto = binned_power(g, out["tru_alpha"], edges=edges)
    ratio = cross.mean / auto.mean
    # α̂ = R α + n with noise power N0: the ratio's error is sqrt(N0 / (C^αα × full-plane modes × maps)).
    n0 = _bin_full_plane(g, sim.estimators.alpha_noise, edges)
    cl = bin_theory(g, alpha_spectrum(np.arange(ALPHA_LMAX + 2), amplitude), edges)
    sigma = np.sqrt(n0 / (cl * cross.nmodes * nmaps))
    # Beyond first order the response drops as ≈ exp(-4<α²>) (0.1 % here).
    second_order = 4 * np.mean(out["tru_alpha"].astype(np.float64) ** 2)
    assert np.all(np.abs(ratio - 1) < 4 * sigma + second_order), (ratio, sigma, second_order)
    assert np.all(sigma < 0.02)


def test_rotation_qe_lensing_bias(spectra, record_property, capsys):
    """On lensed maps without rotation: no first-order response to κ, but power above N0 at low L."""
    s = SimulationSettings(taper_deg=0, null_fraction=0, tau=False, seed=25, qe_mean_field_sims=0,
                           maps=("rec_alpha", "tru_kappa"))
    sim = MapSetSimulator(s, spectra)
    nmaps = 150
    out = sim.simulate(np.arange(nmaps))
    g = sim.grid
    edges = linear_bins(100, 3100, 500)
    cross = binned_power(g, out["rec_alpha"], out["tru_kappa"], edges=edges)
    kk = binned_power(g, out["tru_kappa"], edges=edges)
    measured = cross.mean / kk.mean
    sigma = cross.error / kk.mean
    predicted = _weighted_theory(g, sim.estimators.alpha_response_to_kappa(), spectra.kk, edges)
    tau_predicted = _weighted_theory(g, sim.estimators.tau_response_to_kappa(), spectra.kk, edges)
    # The first-order response vanishes by symmetry (≲ 1e-3 of the τ estimator's) and the data agree.
    assert np.all(np.abs(predicted) < 1e-2 * np.abs(tau_predicted))
    assert np.all(np.abs(measured - predicted) < 5 * sigma), (measured, sigma)
    # The power: N0 (lensing B modes are in the filter's C^BB) plus a lensing-induced excess at low L.
    rec = binned_power(g, out["rec_alpha"], edges=edges)
    n0 = _bin_full_plane(g, sim.estimators.alpha_noise, edges)
    excess, excess_error = rec.mean / n0 - 1, rec.error / n0
    cl_paper = bin_theory(g, alpha_spectrum(np.arange(ALPHA_LMAX + 2), 0.12), edges)
    report = {"L": cross.ell.round().tolist(), "kappa_response_measured": measured.round(4).tolist(),
              "kappa_response_error": sigma.round(4).tolist(), "kappa_response_predicted": predicted.round(5).tolist(),
              "power_over_N0_minus_1": excess.round(3).tolist(),
              "spurious_power_over_C_alpha_A0.12": (excess * n0 / cl_paper).round(2).tolist(),
              "N0_over_C_alpha_A0.12": (n0 / cl_paper).round(1).tolist()}
    record_property("alpha_qe_lensing_bias", json.dumps(report))
    with capsys.disabled():
        print("\nlensing-induced bias of the EB rotation QE:", json.dumps(report))
    # Gaussian noise at high L (within 5σ and 3 %: the periodic patch lacks lensing modes larger than itself, so
    # its lensed BB, hence the noise, is a little below the filter's CAMB C^BB); a clear excess at the lowest L.
    assert np.all(np.abs(excess[2:]) < 5 * excess_error[2:] + 0.03), (excess, excess_error)
    assert excess[0] > 10 * excess_error[0]


def test_rotation_normalization_and_wiener_filter(spectra):
    g = FlatSkyGrid(64, 2.34375)
    s = SimulationSettings(npix=64, taper_deg=0.5, noise_uk_arcmin=1.0, maps=("rec_alpha",))
    qe = QuadraticEstimators(g, spectra, s)
    inside = (g.modlmap >= 300) & (g.modlmap <= 3000)
    assert np.all(np.isfinite(qe.alpha_norm)) and qe.alpha_norm[0, 0] == 0 and np.all(qe.alpha_noise[inside] > 0)
    assert np.all(qe.alpha_wiener == 0)  # no rotation: C^αα = 0
    on = QuadraticEstimators(g, spectra, s.replace(alpha_amplitude_deg=0.12))
    cl = g.interp_spectrum(alpha_spectrum(np.arange(ALPHA_LMAX + 2), 0.12), half=False)[inside]
    np.testing.assert_allclose(on.alpha_wiener[inside], cl / (cl + on.alpha_noise[inside]), rtol=1e-12)
    assert np.all((on.alpha_wiener[inside] > 0) & (on.alpha_wiener[inside] < 1))


def test_the_taper_gives_the_rotation_qe_no_mean_field(spectra):
    """The taper is a modulation: the τ QE responds to it, the α QE (response even in the angle) does not."""
    nsims = 64
    s = SimulationSettings(npix=64, taper_deg=0.5, seed=32, qe_mean_field_sims=nsims, maps=("rec_tau", "rec_alpha"))
    sim = MapSetSimulator(s, spectra)
    maps = sim.simulate(np.arange(32))
    g = sim.grid
    edges = linear_bins(300, 3000, 900)
    ratios = {}
    for name, mean_field in (("tau", sim.estimators.mean_field_tau_k), ("alpha", sim.estimators.mean_field_alpha_k)):
        power = binned_power(g, g.irfft(mean_field.astype(np.complex128)), edges=edges).mean
        # An average of nsims reconstructions without a mean field has 1/nsims of their power.
        ratios[name] = power / (binned_power(g, maps[f"rec_{name}"], edges=edges).mean / nsims)
    # Scatter of the ratio: sqrt(2 / modes) per bin (≈ 0.1 here) and that of the 32 maps' power.
    assert np.all((ratios["alpha"] > 0.6) & (ratios["alpha"] < 1.6)), ratios
    assert ratios["tau"][0] > 20, ratios
