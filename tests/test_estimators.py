"""Quadratic estimators: agreement with symlens, normalization on simulations, lensing bias of the τ QE."""

import dataclasses
import json

import numpy as np
import pytest
import symlens
from pixell import enmap

from datapipe.estimators import QuadraticEstimators, eb_filter, tau_response
from datapipe.fourier import FlatSkyGrid
from datapipe.polarization import qu_to_eb_half
from datapipe.powspec import _bin_index, bin_theory, binned_power, linear_bins
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
        half = slice(0, 33)
        assert np.abs(kappa_k[i] - ref_kappa[:, half]).max() < 1e-4 * np.abs(ref_kappa).max()
        assert np.abs(tau_k[i] - ref_tau[:, half]).max() < 1e-4 * np.abs(ref_tau).max()


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
