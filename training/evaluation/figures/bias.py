"""The lensing-bias figure: spurious τ power of the τ QE and of the network over the true C_L^ττ, against L."""

from __future__ import annotations

from typing import Any

import numpy as np

from datapipe.plotting import COLUMN_WIDTH, log_limits, new_figure, paper_style
from training.evaluation.figures.common import COLORS

#: How each estimate is drawn: (mathtext label, colour, marker or None for a line, filled, connecting line).
BIAS_STYLES: dict[str, tuple[str, str, str | None, bool, bool]] = {
    "qe_total": (r"QE $\hat\tau$: total power", COLORS["qe"], "o", True, True),
    "qe_minus_n0": (r"QE: total $-\,N^{(0)}_L$", COLORS["qe"], "o", False, False),
    "qe_kappa_part": (r"QE: part correlated with $\kappa$", COLORS["wf_qe"], "s", True, False),
    "qe_first_order": (r"first order $R_L^2\,C_L^{\kappa\kappa}$", "k", None, False, True),
    "network_total": (r"network $\hat\tau$: total power", COLORS["network"], "D", True, True),
    "network_kappa_part": (r"network: part correlated with $\kappa$", COLORS["network"], "D", False, False),
}
#: A bin's estimate counts as a detection above this many standard errors; otherwise an upper limit is drawn.
DETECTION_SIGMA = 2.0


def detections(value: np.ndarray, error: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Split per-bin estimates into detections and upper limits (both on the ratio's scale).

    Parameters
    ----------
    value, error : ndarray
        Estimate and its standard error per bin (no error: every finite positive value is a detection).

    Returns
    -------
    detected : ndarray
        The value where it exceeds :data:`DETECTION_SIGMA` standard errors, NaN elsewhere.
    upper : ndarray
        ``value + DETECTION_SIGMA × error`` where it does not (and that bound is positive), NaN elsewhere.
    """
    value = np.asarray(value, dtype=float)
    error = np.zeros_like(value) if error is None else np.nan_to_num(np.asarray(error, dtype=float))
    significant = np.isfinite(value) & (value > DETECTION_SIGMA * error) & (value > 0)
    bound = value + DETECTION_SIGMA * error
    detected = np.where(significant, value, np.nan)
    upper = np.where(~significant & np.isfinite(bound) & (bound > 0), bound, np.nan)
    return detected, upper


@paper_style
def plot_bias_test(result: Any) -> Any:
    """Spurious τ power on lensed maps without τ, over the true :math:`C_L^{\\tau\\tau}`, against L.

    Estimates more than two standard errors above zero are drawn with their error bars; the others as open
    downward triangles at the two-sigma upper limit (a log axis cannot show an error bar reaching zero). The
    first-order prediction :math:`R_L^2 C_L^{\\kappa\\kappa}` is a line with its scatter as a band.

    Parameters
    ----------
    result : training.evaluation.bias.BiasTestResult
        From :func:`training.evaluation.bias.run_bias_test` (the numbers of the printed bias table).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = new_figure(COLUMN_WIDTH, 4.3)
    ax = fig.subplots()
    framed = [np.ones(1)]
    with np.errstate(divide="ignore", invalid="ignore"):
        for key in result.spurious:
            label, color, marker, filled, joined = BIAS_STYLES.get(key, (key, "0.4", "x", True, False))
            ratio = result.ratio(key)
            error = result.errors.get(key)
            error = None if error is None else np.where(result.cl_tau > 0, error / result.cl_tau, np.nan)
            detected, upper = detections(ratio, error)
            if marker is None:
                (line,) = ax.plot(result.ell, detected, "-", color=color, label=label, lw=1.2)
                if error is not None:
                    ax.fill_between(result.ell, np.clip(ratio - error, 1e-30, None), ratio + error, color=color,
                                    alpha=0.15, lw=0)
            else:
                face = color if filled else "white"
                yerr = None if error is None else np.where(np.isfinite(detected), error, np.nan)
                bars = ax.errorbar(result.ell, detected, yerr=yerr, fmt=marker + ("-" if joined else ""),
                                   color=color, mfc=face, label=label, elinewidth=0.7, lw=0.6)
                line = bars.lines[0]
                (limit,) = ax.plot(result.ell, upper, "v", color=color, mfc="white", ms=3.5)
                limit.set_gid(f"{key}:upper")
                framed.append(upper)
            line.set_gid(f"{key}:ratio")
            framed.append(detected)
    ax.axhline(1, color="0.3", lw=0.8, ls="--", label=r"true $C_L^{\tau\tau}$")
    ax.set_yscale("log")
    ax.set_ylim(*log_limits(framed, below=0.4, above=2.5))
    ax.set_xlim(0, float(np.max(result.bin_hi)) * 1.02 if result.bin_hi.size else 1.0)
    ax.set_xlabel(r"multipole $L$")
    ax.set_ylabel(r"spurious $\tau$ power / $C_L^{\tau\tau}$")
    ax.set_title(f"Lensing bias: {result.nmaps} lensed map sets with " + r"$\tau = 0$")
    handles = dict(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    order = [BIAS_STYLES[k][0] for k in BIAS_STYLES if BIAS_STYLES[k][0] in handles]
    order += [label for label in handles if label not in order]
    legend = fig.legend([handles[label] for label in order], order, loc="outside lower center", ncols=2)
    legend.set_title(r"open $\triangledown$: $2\sigma$ upper limits (no detection)", prop={"size": 7})
    return fig
