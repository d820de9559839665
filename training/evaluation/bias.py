"""The lensing-bias test: spurious τ power of the τ QE and of the network on lensed maps without patchy τ.

A straightforward τ QE responds to lensing, :math:`\\langle\\hat\\tau_L\\rangle = R_L \\kappa_L`; the network
should not. This is the paper's key demonstration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from training.evaluation.comparison import AVERAGE_RANGES, make_edges
from training.evaluation.errors import EvaluationError
from training.evaluation.mapdata import MapData, data_settings
from training.evaluation.network import Network, predict


@dataclasses.dataclass
class BiasTestResult:
    """Spurious τ power on lensed maps without patchy τ, binned (each array has one value per bin).

    Attributes
    ----------
    ell, bin_lo, bin_hi : ndarray
        Mean multipole and limits of each bin.
    cl_tau : ndarray
        Theory :math:`C_L^{\\tau\\tau}` of the paper's patchy-τ model, binned.
    spurious : dict of str to ndarray
        Spurious τ power (dimensionless × sr) by estimate: ``qe_total`` (auto-power of ``rec_tau``),
        ``qe_minus_n0`` (that minus the QE noise :math:`N^{(0)}_L`), ``qe_kappa_part`` (the part correlated with
        κ, :math:`(C_L^{\\hat\\tau\\kappa})^2 / C_L^{\\kappa\\kappa}`), ``qe_first_order``
        (:math:`R_L^2 C_L^{\\kappa\\kappa}` with the response R of
        :meth:`datapipe.estimators.QuadraticEstimators.tau_response_to_kappa`), ``network_total``,
        ``network_kappa_part``; those that could be computed.
    errors : dict of str to ndarray
        Standard error of each, from the scatter over map sets (the κ-correlated parts propagated from the
        cross-spectrum's).
    nmaps : int
        Map sets used.
    source : str
        Where the maps came from.
    """

    ell: np.ndarray
    bin_lo: np.ndarray
    bin_hi: np.ndarray
    cl_tau: np.ndarray
    spurious: dict[str, np.ndarray]
    errors: dict[str, np.ndarray]
    nmaps: int
    source: str

    def ratio(self, key: str) -> np.ndarray:
        """Spurious power of one estimate over :math:`C_L^{\\tau\\tau}`, per bin (NaN where C_L^ττ = 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.cl_tau > 0, self.spurious[key] / self.cl_tau, np.nan)

    def mean_ratio(self, key: str, lmin: float, lmax: float) -> float:
        """:meth:`ratio` averaged over the bins whose mean multipole lies in [lmin, lmax]."""
        sel = (self.ell >= lmin) & (self.ell <= lmax) & np.isfinite(self.ratio(key))
        return float(np.mean(self.ratio(key)[sel])) if sel.any() else float("nan")

    def to_dict(self, ranges: Sequence[tuple[float, float]] = AVERAGE_RANGES) -> dict[str, Any]:
        """JSON-ready: per-bin arrays, ratios to C_L^ττ and their averages over each range."""
        return {
            "nmaps": self.nmaps,
            "source": self.source,
            "ell": self.ell.tolist(),
            "bin_lo": self.bin_lo.tolist(),
            "bin_hi": self.bin_hi.tolist(),
            "cl_tau_theory": self.cl_tau.tolist(),
            "spurious_power": {k: v.tolist() for k, v in self.spurious.items()},
            "spurious_power_error": {k: v.tolist() for k, v in self.errors.items()},
            "ratio_to_cl_tau": {k: self.ratio(k).tolist() for k in self.spurious},
            "mean_ratio": {k: {f"{lo:g}-{hi:g}": self.mean_ratio(k, lo, hi) for lo, hi in ranges}
                           for k in self.spurious},
        }


#: Rows of the bias table: key of :attr:`BiasTestResult.spurious` → description.
BIAS_ROWS: dict[str, str] = {
    "qe_total": "τ QE rec_tau, total power",
    "qe_minus_n0": "τ QE, total − N0",
    "qe_kappa_part": "τ QE, part correlated with κ",
    "qe_first_order": "first order R_L² C_L^κκ",
    "network_total": "network τ, total power",
    "network_kappa_part": "network τ, part correlated with κ",
}


def bias_settings(data: MapData, seed: int | None = None, names: Sequence[str] = ()) -> Any:
    """Simulation settings of the bias test: the data's geometry, taper, beam and noise, with τ = 0, lensing on.

    Parameters
    ----------
    data : MapData
        The evaluated data (its metadata gives the settings; the paper's defaults otherwise).
    seed : int, optional
        Master seed (default: the data's seed + 1, so the maps are independent of the data).
    names : sequence of str
        Arrays to simulate besides ``tru_kappa``, ``tru_tau`` and ``rec_tau``.

    Returns
    -------
    datapipe.settings.SimulationSettings
    """
    base = data_settings(data.metadata, data.npix)
    base = base.replace(npix=data.npix, pixel_arcmin=data.pixel_arcmin)
    seed = base.seed + 1 if seed is None else seed
    maps = tuple(dict.fromkeys([*names, "tru_kappa", "tru_tau", "rec_tau"]))
    return base.replace(tau=False, lensing=True, null_fraction=0.0, seed=seed, maps=maps)


def simulate_bias_maps(settings: Any, nsims: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Simulate ``nsims`` lensed, τ-free map sets with the pipeline.

    Parameters
    ----------
    settings : datapipe.settings.SimulationSettings
        From :func:`bias_settings`.
    nsims : int
        Number of map sets (at least 2).

    Returns
    -------
    arrays : dict of str to ndarray
        The arrays of ``settings.maps``, (nsims, npix, npix) float32, as the pipeline saves them.
    taper : ndarray
        (npix, npix) taper applied to them.
    """
    from datapipe.simulate import MapSetSimulator

    if nsims < 2:
        raise EvaluationError(f"--bias-nsims must be at least 2 (got {nsims})")
    simulator = MapSetSimulator(settings)
    return simulator.simulate(np.arange(nsims)), np.ascontiguousarray(simulator.taper[::-1])


def _bin_full_plane(grid: Any, values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of a full-plane 2-D Fourier array over the modes of each bin, and the mode counts."""
    ell = grid.modlmap.ravel()
    index = np.digitize(ell, edges) - 1
    valid = (ell >= edges[0]) & (ell < edges[-1])
    nbins = len(edges) - 1
    counts = np.bincount(index[valid], minlength=nbins)
    total = np.bincount(index[valid], weights=np.asarray(values).ravel()[valid], minlength=nbins)
    return total / np.maximum(counts, 1), counts


def run_bias_test(
    arrays: Mapping[str, np.ndarray],
    settings: Any,
    taper: np.ndarray | None,
    edges: np.ndarray | None = None,
    network: Network | None = None,
    batch_size: int = 16,
    source: str = "",
) -> BiasTestResult:
    """Measure the spurious τ power of the τ QE and of the network on lensed maps with τ = 0.

    A straightforward τ QE responds to lensing: :math:`\\langle\\hat\\tau_L\\rangle = R_L \\kappa_L`, so on maps
    without patchy τ it still reports τ power, :math:`R_L^2 C_L^{\\kappa\\kappa}` plus its noise
    :math:`N^{(0)}_L`. A network that has learnt to separate τ from κ should output (almost) nothing.

    Parameters
    ----------
    arrays : mapping of str to ndarray
        τ-free lensed map sets: ``rec_tau`` for the QE rows, ``tru_kappa`` for the κ-correlated parts, the
        network's inputs for its rows; (nmaps, npix, npix) each.
    settings : datapipe.settings.SimulationSettings
        Their settings (geometry, multipole ranges, noise, beam: the QE normalization and response).
    taper : ndarray or None
        (npix, npix) taper of the maps (None: untapered). A QE map reconstructed from maps tapered by W responds
        to :math:`W^2\\tau` and carries noise :math:`\\propto W^4`, so its power is divided by
        :math:`w_4 = \\langle W^4\\rangle` and its cross-power with the tapered κ by :math:`w_3`; the network,
        trained on tapered targets, predicts :math:`W\\tau`, whose power is divided by :math:`w_2`.
    edges : ndarray, optional
        Multipole bin edges (default ΔL = 100 from 20 to 3500).
    network : Network, optional
        Also evaluate the network's τ output (the output whose truth array is ``tru_tau``).
    batch_size : int
        Maps per forward pass.
    source : str
        Description of the maps, stored in the result.

    Returns
    -------
    BiasTestResult

    Raises
    ------
    EvaluationError
        If neither ``rec_tau`` nor a network τ output can be evaluated.
    """
    from datapipe.estimators import QuadraticEstimators
    from datapipe.fourier import FlatSkyGrid
    from datapipe.powspec import bin_theory, binned_power
    from datapipe.spectra import load_spectra

    edges = make_edges() if edges is None else np.asarray(edges, dtype=float)
    grid = FlatSkyGrid(settings.npix, settings.pixel_arcmin)
    spectra = load_spectra()
    any_map = next(iter(arrays.values()))
    probe = binned_power(grid, any_map[:1], edges=edges)
    keep = probe.nmodes > 0
    kappa = arrays.get("tru_kappa")
    w2, w3, w4 = (1.0, 1.0, 1.0) if taper is None else (float(np.mean(np.asarray(taper) ** k)) for k in (2, 3, 4))
    cl_kk = None if kappa is None else binned_power(grid, kappa, edges=edges, w2=w2).mean[keep]
    estimates: dict[str, np.ndarray] = {}

    errors: dict[str, np.ndarray] = {}

    def measure(prefix: str, tau_hat: np.ndarray, w_auto: float, w_cross: float) -> None:
        auto = binned_power(grid, tau_hat, edges=edges, w2=w_auto)
        estimates[f"{prefix}_total"], errors[f"{prefix}_total"] = auto.mean[keep], auto.error[keep]
        if cl_kk is not None:
            cross = binned_power(grid, tau_hat, kappa, edges=edges, w2=w_cross)
            c, dc = cross.mean[keep], cross.error[keep]
            with np.errstate(divide="ignore", invalid="ignore"):
                estimates[f"{prefix}_kappa_part"] = np.where(cl_kk > 0, c**2 / cl_kk, np.nan)
                errors[f"{prefix}_kappa_part"] = np.where(cl_kk > 0, 2 * np.abs(c) * dc / cl_kk, np.nan)

    if "rec_tau" in arrays:
        measure("qe", arrays["rec_tau"], w4, w3)
        qe = QuadraticEstimators(grid, spectra, settings)
        n0, _ = _bin_full_plane(grid, qe.tau_noise, edges)
        estimates["qe_minus_n0"] = estimates["qe_total"] - n0[keep]
        errors["qe_minus_n0"] = errors["qe_total"]
        r2, _ = _bin_full_plane(grid, qe.tau_response_to_kappa() ** 2, edges)
        if kappa is not None:
            kk = binned_power(grid, kappa, edges=edges, w2=w2)
            estimates["qe_first_order"], errors["qe_first_order"] = r2[keep] * cl_kk, r2[keep] * kk.error[keep]
        else:
            estimates["qe_first_order"] = r2[keep] * bin_theory(grid, spectra.kk, edges)[keep]
            errors["qe_first_order"] = np.zeros_like(estimates["qe_first_order"])
        # Order as in BIAS_ROWS.
        estimates = {k: estimates[k] for k in BIAS_ROWS if k in estimates}
    tau_outputs = [] if network is None else [n for n, a in network.outputs.items() if a == "tru_tau"]
    if tau_outputs and all(a in arrays for a in network.inputs.values()):
        measure("network", predict(network, arrays, batch_size)[tau_outputs[0]], w2, w2)
    if not estimates:
        raise EvaluationError("the bias test needs rec_tau or a network with a τ output and its input maps")
    edges_lo, edges_hi = edges[:-1][keep], edges[1:][keep]
    return BiasTestResult(
        ell=probe.ell[keep],
        bin_lo=edges_lo,
        bin_hi=edges_hi,
        cl_tau=bin_theory(grid, spectra.tau, edges)[keep],
        spurious=estimates,
        errors={k: errors[k] for k in estimates},
        nmaps=len(any_map),
        source=source,
    )
