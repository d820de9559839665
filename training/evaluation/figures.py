"""Figures of an evaluation (matplotlib): maps, r_L against L, power spectra, the lensing-bias test.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot, so it neither changes the active
backend nor keeps figures alive; notebooks display the returned figure, scripts pass it to :func:`save`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from training.evaluation.bias import BIAS_ROWS

#: Colours of the estimators, shared by every figure.
COLORS = {"network": "C3", "qe": "C0", "wf_qe": "C2", "truth": "k", "residual": "C1", "noise": "C4"}


def save(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write a figure as PNG atomically (the folder is created) and return the path."""
    from training.artifacts import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path


def plot_map_comparison(
    truths: Mapping[str, np.ndarray],
    predictions: Mapping[str, np.ndarray],
    qe_maps: Mapping[str, tuple[str, np.ndarray]] | None = None,
    pixel_arcmin: float = 2.34375,
    index: int | None = None,
) -> Figure:
    """One map set: truth, network prediction and residual (truth − prediction) per field, plus the QE map.

    Each row shares one colour scale (symmetric, the 99.5th percentile of the truth's absolute value), so the
    prediction, residual and QE map read directly against the truth.

    Parameters
    ----------
    truths, predictions : mapping of str to ndarray
        Field label (τ, κ, E) → (npix, npix) map in physical units (E in μK, τ and κ dimensionless).
    qe_maps : mapping of str to (str, ndarray), optional
        Field label → (QE array name, map), drawn in a fourth column.
    pixel_arcmin : float
        Pixel size in arcmin (axes in degrees).
    index : int, optional
        Map-set index, for the title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    qe_maps = dict(qe_maps or {})
    labels = list(truths)
    ncols = 4 if qe_maps else 3
    fig = Figure(figsize=(3.6 * ncols + 0.8, 3.2 * len(labels)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(labels), ncols, squeeze=False))
    for row, label in enumerate(labels):
        truth = np.asarray(truths[label], dtype=float)
        pred = np.asarray(predictions[label], dtype=float)
        side = truth.shape[0] * pixel_arcmin / 60.0
        limit = float(np.percentile(np.abs(truth), 99.5)) or float(np.max(np.abs(pred))) or 1.0
        unit = " [μK]" if label == "E" else ""
        panels = [(f"true {label}{unit}", truth), (f"ResUNet-CMB {label}", pred), ("residual (true − network)",
                                                                                    truth - pred)]
        if label in qe_maps:
            name, qe = qe_maps[label]
            panels.append((f"QE {label} ({name})", np.asarray(qe, dtype=float)))
        image = None
        for col in range(ncols):
            ax = axes[row, col]
            if col >= len(panels):
                ax.axis("off")
                continue
            title, data = panels[col]
            image = ax.imshow(data, origin="upper", cmap="RdBu_r", vmin=-limit, vmax=limit, extent=(0, side, 0, side))
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("deg")
        fig.colorbar(image, ax=list(axes[row, : len(panels)]), fraction=0.025, pad=0.01)
    title = "ResUNet-CMB against the truth" + (f" (map set {index})" if index is not None else "")
    fig.suptitle(title)
    return fig


def _panels(n: int, height: float = 3.4) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(4.6 * n, height), layout="constrained")
    return fig, np.atleast_1d(fig.subplots(1, n, squeeze=False)[0])


def _qe_color(name: str) -> str:
    return COLORS["wf_qe"] if name.startswith("wf_") else COLORS["qe"]


def plot_r_ell(results: Mapping[str, Any]) -> Figure:
    """Cross-correlation coefficient r_L with the truth against L, per field: network and QE maps.

    Parameters
    ----------
    results : mapping of str to training.evaluation.comparison.FieldResult
        From :func:`training.evaluation.comparison.compare_fields`.

    Returns
    -------
    matplotlib.figure.Figure
        Error bars are the standard error from the scatter over map sets.
    """
    fig, axes = _panels(max(len(results), 1))
    for ax, res in zip(axes, results.values(), strict=False):
        rows = [("ResUNet-CMB", res.network, COLORS["network"], "o")]
        rows += [(f"QE {k}", v, _qe_color(k), "s" if k.startswith("wf_") else "^") for k, v in res.qe.items()]
        for shift, (label, st, color, marker) in enumerate(rows):
            # Small horizontal offsets keep overlapping error bars apart.
            offset = (shift - (len(rows) - 1) / 2) * 0.01 * (st.ell.max() if st.ell.size else 1)
            ax.errorbar(st.ell + offset, st.r, yerr=np.nan_to_num(st.r_err), fmt=marker, ms=4, color=color,
                        label=label, capsize=2, lw=1)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.axhline(1, color="0.6", lw=0.8, ls=":")
        ax.set_ylim(-0.25, 1.05)
        ax.set_xlabel("L")
        ax.set_ylabel(r"$r_L$")
        ax.set_title(f"{res.label}: correlation with the truth ({res.nmaps} maps)", fontsize=10)
        ax.legend(fontsize=8, loc="lower left")
    return fig


def _positive(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    return np.where(np.isfinite(y) & (y > 0), y, np.nan)


def plot_spectra(results: Mapping[str, Any]) -> Figure:
    """Binned power spectra per field: truth, prediction, residual, effective noise of the network and the QE.

    Parameters
    ----------
    results : mapping of str to training.evaluation.comparison.FieldResult
        From :func:`training.evaluation.comparison.compare_fields`.

    Returns
    -------
    matplotlib.figure.Figure
        :math:`C_L` in units² × sr (μK² for E), log scale; the effective noise is
        :math:`N_L = C_L^{tt}(1/r_L^2 - 1)`.
    """
    fig, axes = _panels(max(len(results), 1), height=3.8)
    for ax, res in zip(axes, results.values(), strict=False):
        net = res.network
        ax.plot(net.ell, _positive(net.cl_true), "-", color=COLORS["truth"], label="truth")
        ax.plot(net.ell, _positive(net.cl_rec), "-o", ms=3, color=COLORS["network"], label="prediction")
        ax.plot(net.ell, _positive(net.cl_residual), "--", color=COLORS["residual"], label="residual (network)")
        ax.plot(net.ell, _positive(net.noise), ":", color=COLORS["network"], label="noise $N_L$ (network)")
        for name, st in res.qe.items():
            if not name.startswith("wf_"):
                ax.plot(st.ell, _positive(st.noise), ":", color=_qe_color(name), lw=2, label=f"noise $N_L$ ({name})")
            else:
                ax.plot(st.ell, _positive(st.cl_residual), "--", color=_qe_color(name), label=f"residual ({name})")
        ax.set_yscale("log")
        ax.set_xlabel("L")
        unit = r" [$\mu$K$^2$]" if res.units == "μK" else ""
        ax.set_ylabel(r"$C_L$" + unit)
        ax.set_title(f"{res.label}: power spectra ({res.nmaps} maps)", fontsize=10)
        ax.legend(fontsize=7, loc="best")
    return fig


def plot_bias_test(result: Any) -> Figure:
    """Spurious τ power on lensed maps without τ, over the true :math:`C_L^{\\tau\\tau}`, against L.

    Parameters
    ----------
    result : training.evaluation.bias.BiasTestResult
        From :func:`training.evaluation.bias.run_bias_test`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    styles = {
        "qe_total": ("-o", COLORS["qe"]),
        "qe_minus_n0": ("--", COLORS["qe"]),
        "qe_kappa_part": ("-s", COLORS["wf_qe"]),
        "qe_first_order": (":", "k"),
        "network_total": ("-o", COLORS["network"]),
        "network_kappa_part": ("--", COLORS["network"]),
    }
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    for key in result.spurious:
        fmt, color = styles.get(key, ("-", None))
        ratio = _positive(result.ratio(key))
        with np.errstate(divide="ignore", invalid="ignore"):
            err = np.nan_to_num(result.errors[key] / result.cl_tau) if key in result.errors else None
        ax.errorbar(result.ell, ratio, yerr=err, fmt=fmt, ms=3, color=color, capsize=2, lw=1,
                    label=BIAS_ROWS.get(key, key))
    ax.axhline(1, color="0.5", lw=1)
    ax.text(result.ell[0] if result.ell.size else 0, 1.1, r"true $C_L^{\tau\tau}$", fontsize=8, color="0.4")
    ax.set_yscale("log")
    ax.set_xlabel("L")
    ax.set_ylabel(r"spurious $\tau$ power / $C_L^{\tau\tau}$")
    ax.set_title(f"Lensing bias: {result.nmaps} lensed map sets with τ = 0", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    return fig
