"""Binned comparison of the network's and the QE's maps with the truth, field by field.

For each output with a truth array in the data (τ, κ, E, α), :func:`compare_fields` computes the binned spectra, the
cross-correlation coefficient r_L and the noise (:mod:`training.evaluation.crosscorr`) of the network's prediction
and of the QE maps (``rec_*`` and the Wiener-filtered ``wf_rec_*``), leaving out the null map sets.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from training.evaluation.crosscorr import ReconstructionStats, reconstruction_stats
from training.evaluation.errors import EvaluationError
from training.evaluation.mapdata import MapData, data_settings
from training.evaluation.theory import FieldTheory, field_theories

#: QE maps compared with the network, per truth array: the raw QE and its Wiener-filtered version.
QE_MAPS: dict[str, tuple[str, ...]] = {
    "tru_tau": ("rec_tau", "wf_rec_tau"),
    "tru_kappa": ("rec_kappa", "wf_rec_kappa"),
    "tru_alpha": ("rec_alpha", "wf_rec_alpha"),
}
#: Symbol and units of the known truth arrays (others are labelled by their output name).
FIELD_INFO: dict[str, tuple[str, str]] = {
    "tru_tau": ("τ", "dimensionless"),
    "tru_kappa": ("κ", "dimensionless"),
    "e_unl": ("E", "μK"),
    "tru_alpha": ("α", "rad"),
}
#: Multipole ranges (L_min, L_max) over which the printed tables average r_L (and the bias ratios).
AVERAGE_RANGES: tuple[tuple[int, int], ...] = ((100, 1000), (1000, 2000))
#: Default binning: ΔL = 100 from L = 20 to 3500 (as :data:`training.evaluation.crosscorr.DEFAULT_EDGES`).
DEFAULT_LMIN, DEFAULT_LMAX, DEFAULT_DELTA_L = 20.0, 3500.0, 100.0


@dataclasses.dataclass
class FieldResult:
    """Binned comparison of one output field with its truth, for the network and the QE maps.

    Attributes
    ----------
    output : str
        Model output name (``tau``, ``kappa``, ``unle``, ``cbf``).
    truth : str
        Truth array name (``tru_tau``, ``tru_kappa``, ``e_unl``, ``tru_alpha``).
    label, units : str
        Symbol (τ, κ, E, α) and units of the field (spectra are in units² × sr).
    network : ReconstructionStats
        The network's prediction against the truth.
    qe : dict of str to ReconstructionStats
        QE array name → its statistics (those in the data).
    nmaps : int
        Map sets used (null map sets, whose truth is identically zero, are left out).
    nnull : int
        Null map sets left out.
    theory : FieldTheory, optional
        Input spectrum and analytic QE noise in the same bins (:mod:`training.evaluation.theory`).
    """

    output: str
    truth: str
    label: str
    units: str
    network: ReconstructionStats
    qe: dict[str, ReconstructionStats]
    nmaps: int
    nnull: int
    theory: FieldTheory | None = None


#: Highest bin edge accepted (the CAMB spectra of the pipeline stop at L = 10000) and most bins.
MAX_L = 100000
MAX_BINS = 10000


def make_edges(lmin: float = DEFAULT_LMIN, lmax: float = DEFAULT_LMAX, delta_l: float = DEFAULT_DELTA_L) -> np.ndarray:
    """Linear multipole bin edges (:func:`datapipe.powspec.linear_bins`).

    Equal bins from ``lmin`` to ``lmax`` with widths as close as possible to ``delta_l`` (35 bins of ΔL ≈ 99.4 from
    20 to 3500 for the defaults: :data:`training.evaluation.crosscorr.DEFAULT_EDGES`).

    Raises
    ------
    EvaluationError
        If the range is empty or the width not positive.
    """
    from datapipe.powspec import linear_bins

    finite = all(math.isfinite(x) for x in (lmin, lmax, delta_l))
    if not (finite and delta_l > 0 and 0 <= lmin < lmax <= MAX_L and lmax - lmin >= delta_l):
        raise EvaluationError(
            f"multipole bins need finite 0 <= lmin < lmax <= {MAX_L} and 0 < delta_l <= lmax - lmin (got lmin {lmin}, "
            f"lmax {lmax}, delta_l {delta_l})"
        )
    if (lmax - lmin) / delta_l > MAX_BINS:
        raise EvaluationError(f"--delta-l {delta_l} makes more than {MAX_BINS} bins between {lmin} and {lmax}; use a "
                              "wider --delta-l (default 100)")
    return linear_bins(lmin, lmax, delta_l)


def null_maps(truth: np.ndarray) -> np.ndarray:
    """Boolean mask of the map sets whose truth map is identically zero (the pipeline's null map sets)."""
    return ~np.any(truth.reshape(truth.shape[0], -1) != 0, axis=1)


def compare_fields(
    predictions: Mapping[str, np.ndarray],
    outputs: Mapping[str, str],
    data: MapData,
    edges: np.ndarray | None = None,
    theory: bool = True,
) -> tuple[dict[str, FieldResult], list[str]]:
    """Binned statistics of every predicted field and of the QE maps against the truth.

    Null map sets (truth identically zero: the pipeline's τ = κ = 0 sets, or the α = 0 sets of the second paper) are
    left out of a field's statistics, where r_L is undefined.

    Parameters
    ----------
    predictions : mapping of str to ndarray
        Model output name → (nmaps, npix, npix) prediction in physical units
        (:func:`training.evaluation.network.predict`).
    outputs : mapping of str to str
        Model output name → truth array name (``Network.outputs``).
    data : MapData
        The data, with the truth and QE arrays that exist.
    edges : ndarray, optional
        Multipole bin edges (default ΔL = 100 from 20 to 3500).
    theory : bool
        Also compute each field's theory curves (input spectrum, analytic QE noise) for the data's settings.

    Returns
    -------
    results : dict of str to FieldResult
        Keyed by output name, τ, κ, E, α first.
    skipped : list of str
        One line per metric that could not be computed, and why.
    """
    edges = make_edges() if edges is None else np.asarray(edges, dtype=float)
    order = {a: i for i, a in enumerate(FIELD_INFO)}
    results: dict[str, FieldResult] = {}
    skipped: list[str] = []
    for name in sorted(predictions, key=lambda n: order.get(outputs[n], len(order))):
        truth_name = outputs[name]
        label, units = FIELD_INFO.get(truth_name, (name, "map units"))
        if truth_name not in data.arrays:
            skipped.append(f"{label} ({name}): truth array {truth_name!r} not in the data; its metrics are skipped")
            continue
        truth = data.arrays[truth_name]
        keep = ~null_maps(truth)
        if keep.sum() < 2:
            skipped.append(f"{label} ({name}): fewer than 2 map sets with non-zero {truth_name}; metrics skipped")
            continue

        def stats(rec: np.ndarray, truth: np.ndarray = truth, keep: np.ndarray = keep) -> ReconstructionStats:
            return reconstruction_stats(truth[keep], rec[keep], data.pixel_arcmin, data.w2, edges)

        qe = {}
        for qe_name in QE_MAPS.get(truth_name, ()):
            if qe_name in data.arrays:
                qe[qe_name] = stats(data.arrays[qe_name])
        if truth_name in QE_MAPS and not qe:
            skipped.append(f"{label}: no QE map ({', '.join(QE_MAPS[truth_name])}) in the data; network only")
        results[name] = FieldResult(
            name, truth_name, label, units, stats(predictions[name]), qe, int(keep.sum()), int((~keep).sum())
        )
    if theory and results:
        from datapipe.errors import PipelineError

        try:
            settings = data_settings(data.metadata, data.npix).replace(npix=data.npix, pixel_arcmin=data.pixel_arcmin)
        except PipelineError as exc:
            skipped.append(f"no theory curves: the data's settings are unusable ({exc})")
            return results, skipped
        fields = {name: (r.truth, list(r.qe), np.isin(edges[:-1], r.network.bin_lo)) for name, r in results.items()}
        for name, field_theory in field_theories(fields, settings, data.taper, edges).items():
            results[name].theory = field_theory
        if not data.metadata.get("settings"):
            skipped.append(f"{data.path.name} has no metadata: the theory curves (N0) assume the paper's settings")
    return results, skipped
