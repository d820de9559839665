"""What an evaluation prints and stores: the r_L tables and ``metrics.json``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluation.bias import BIAS_ROWS, BiasTestResult
from training.evaluation.comparison import AVERAGE_RANGES, FieldResult
from training.evaluation.crosscorr import ReconstructionStats


def mean_r_table(
    stats: ReconstructionStats, ranges: Sequence[tuple[float, float]] = AVERAGE_RANGES
) -> dict[str, float]:
    """r_L averaged over the bins in each multipole range, keyed ``"lmin-lmax"``."""
    return {f"{lo:g}-{hi:g}": stats.mean_r(lo, hi) for lo, hi in ranges}


def format_table(results: Mapping[str, FieldResult], ranges: Sequence[tuple[float, float]] = AVERAGE_RANGES) -> str:
    """The compact text table: per field, r_L averaged over each L range, network and QE maps.

    Parameters
    ----------
    results : mapping of str to FieldResult
        From :func:`compare_fields`.
    ranges : sequence of (float, float)
        Multipole ranges (default L 100–1000 and 1000–2000).

    Returns
    -------
    str
        One row per (field, estimator); ``nan`` where a range holds no bin.
    """
    heads = [f"L {lo:g}-{hi:g}" for lo, hi in ranges]
    lines = ["mean r_L = C_L^pt / sqrt(C_L^pp C_L^tt) over the bins in each L range",
             f"{'field':6s} {'estimator':18s} {'maps':>5s} " + " ".join(f"{h:>12s}" for h in heads)]
    for res in results.values():
        rows = [("network", res.network), *((f"QE {k}", v) for k, v in res.qe.items())]
        for label, st in rows:
            values = " ".join(f"{st.mean_r(lo, hi):12.3f}" for lo, hi in ranges)
            lines.append(f"{res.label:6s} {label:18s} {res.nmaps:5d} {values}")
    return "\n".join(lines)


def _finite_or_none(obj: Any) -> Any:
    """JSON cannot hold NaN or inf: replace them by None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_none(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite_or_none(obj.item())
    if isinstance(obj, np.ndarray):
        return _finite_or_none(obj.tolist())
    return obj


def _stats_dict(stats: ReconstructionStats) -> dict[str, Any]:
    return {**stats.to_dict(), "nmaps": stats.nmaps, "mean_r": mean_r_table(stats)}


def metrics_dict(results: Mapping[str, FieldResult]) -> dict[str, Any]:
    """``metrics.json``'s ``fields`` entry: per field, the network's and each QE map's per-bin statistics, and the
    theory in the same bins (input spectrum, analytic QE noise and the r_L it implies)."""
    return {
        name: {
            "label": res.label,
            "truth": res.truth,
            "units": res.units,
            "nmaps": res.nmaps,
            "null_maps_left_out": res.nnull,
            "network": _stats_dict(res.network),
            "qe": {k: _stats_dict(v) for k, v in res.qe.items()},
            "theory": None if res.theory is None else res.theory.to_dict(),
        }
        for name, res in results.items()
    }


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as strict JSON (NaN and inf as null), atomically."""
    from training.artifacts import save_text

    return save_text(path, json.dumps(_finite_or_none(obj), indent=1, ensure_ascii=False, allow_nan=False) + "\n")


def format_bias_table(result: BiasTestResult, ranges: Sequence[tuple[float, float]] = AVERAGE_RANGES) -> str:
    """Text table of the bias test: spurious τ power over C_L^ττ, averaged over each L range."""
    heads = [f"L {lo:g}-{hi:g}" for lo, hi in ranges]
    lines = [f"lensing-bias test: {result.nmaps} lensed map sets with τ = 0 ({result.source})",
             f"{'spurious τ power / C_L^ττ':36s} " + " ".join(f"{h:>12s}" for h in heads)]
    for key in result.spurious:
        values = " ".join(f"{result.mean_ratio(key, lo, hi):12.3g}" for lo, hi in ranges)
        lines.append(f"{BIAS_ROWS.get(key, key):36s} {values}")
    return "\n".join(lines)
