"""r_L against L and the power spectra (signal, noise) of each field, network against the QE, with theory.

Each data line carries a ``gid`` (``"<output>:<series>"``) so that tests can find the plotted numbers and compare
them with ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from datapipe.plotting import dl_factor, log_limits, paper_style, positive, power_unit_suffix
from training.evaluation.figures.common import COLORS, field_panels, field_title, legend_below

#: Legend labels, shared by all panels (the same series in every field).
NETWORK_LABEL = "ResUNet-CMB"
QE_LABEL = r"QE rec_* (the Wiener-filtered wf_rec_*, a rescaling per $L$, has the same $r_L$)"
QE_EXPECTED_LABEL = r"QE expected from its analytic $N^{(0)}_L$ alone"


def shown_qe(qe: Mapping[str, Any]) -> list[str]:
    """The QE maps to draw: each ``wf_X`` is left out when ``X`` is there (a Wiener filter leaves r_L unchanged)."""
    return [name for name in qe if not (name.startswith("wf_") and name[3:] in qe)]


def _x_range(ax: Any, res: Any) -> None:
    hi = float(np.max(res.network.bin_hi)) if res.network.bin_hi.size else 1.0
    ax.set_xlim(0, hi * 1.02)
    ax.set_xlabel(r"multipole $L$")


@paper_style
def plot_r_ell(results: Mapping[str, Any]) -> Any:
    """Cross-correlation coefficient :math:`r_L` of the network's and the QE's maps with the truth, per field.

    The QE's :math:`r_L` expected from its analytic noise alone is drawn as a dashed line (with the taper's
    factor f of :class:`training.evaluation.theory.FieldTheory`); measured values fall below it by the
    estimator's other noise terms (:math:`N^{(1)}`, the other field's response). ``wf_rec_*`` maps are not drawn
    apart: a Wiener filter rescales each L, so their r_L is that of ``rec_*`` (up to the filter's variation within a
    bin, ~1 %; both are in ``metrics.json``).

    Parameters
    ----------
    results : mapping of str to training.evaluation.comparison.FieldResult
        From :func:`training.evaluation.comparison.compare_fields`.

    Returns
    -------
    matplotlib.figure.Figure
        Error bars: standard error from the scatter of per-map coefficients over map sets.
    """
    fig, axes = field_panels(len(results))
    for ax, (key, res) in zip(axes, results.items(), strict=False):
        rows = [("network", NETWORK_LABEL, res.network, COLORS["network"], "o")]
        rows += [(name, QE_LABEL, res.qe[name], COLORS["qe"], "^") for name in shown_qe(res.qe)]
        span = float(np.max(res.network.ell)) if res.network.ell.size else 1.0
        for i, (name, label, st, color, marker) in enumerate(rows):
            # Small horizontal offsets keep overlapping error bars apart.
            offset = (i - (len(rows) - 1) / 2) * 0.008 * span
            bars = ax.errorbar(st.ell + offset, st.r, yerr=np.nan_to_num(st.r_err), fmt=marker, color=color,
                               label=label, elinewidth=0.8)
            bars.lines[0].set_gid(f"{key}:{name}:r")
        theory = res.theory
        for name in shown_qe(res.qe):
            if theory is not None and name in theory.r_expected:
                (line,) = ax.plot(res.qe[name].ell, theory.r_expected[name], "--", color=COLORS["qe"],
                                  label=QE_EXPECTED_LABEL)
                line.set_gid(f"{key}:{name}:r_expected")
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_ylim(-0.2, 1.05)
        _x_range(ax, res)
        ax.set_ylabel(r"$r_L$")
        ax.set_title(field_title(res.label, res.nmaps, res.nnull))
    legend_below(fig, axes, ncols=2, first=(NETWORK_LABEL, QE_LABEL))
    return fig


@paper_style
def plot_spectra(results: Mapping[str, Any]) -> Any:
    """Signal and noise power per field, as :math:`L(L+1)C_L/2\\pi`: theory, truth, network and QE noise.

    Per field: the input spectrum (theory) and the measured spectrum of the truth maps; the effective noise
    :math:`N_L = C_L^{tt}(1/r_L^2 - 1)` of the network's and of the QE's maps (the noise of an unbiased estimator
    with the same correlation; undefined, and not drawn, where :math:`r_L \\le 0`); the analytic
    :math:`N^{(0)}_L` of the QE. The vertical range follows the theory curves and the truth, so a noise estimate
    far off the scale is cut at the frame rather than stretching it.

    Parameters
    ----------
    results : mapping of str to training.evaluation.comparison.FieldResult
        From :func:`training.evaluation.comparison.compare_fields` (with theory, for the theory curves).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axes = field_panels(len(results))
    for ax, (key, res) in zip(axes, results.items(), strict=False):
        net = res.network
        scale = dl_factor(net.ell)
        theory = res.theory
        framed = [scale * net.cl_true]
        if theory is not None and theory.signal is not None:
            (line,) = ax.plot(net.ell, positive(scale * theory.signal), "-", color=COLORS["theory"], lw=1.4,
                              label=r"input $C_L$ (theory)")
            line.set_gid(f"{key}:signal")
            framed.append(scale * theory.signal)
        (line,) = ax.plot(net.ell, positive(scale * net.cl_true), "o", mfc="none", color=COLORS["truth"],
                          label="truth maps (measured)")
        line.set_gid(f"{key}:truth")
        (line,) = ax.plot(net.ell, positive(scale * net.noise), "-o", color=COLORS["network"],
                          label=NETWORK_LABEL + r": $N_L=C_L(1/r_L^2-1)$")
        line.set_gid(f"{key}:network:noise")
        for name in shown_qe(res.qe):
            st = res.qe[name]
            (line,) = ax.plot(st.ell, positive(dl_factor(st.ell) * st.noise), "-^", color=COLORS["qe"],
                              label=r"QE: $N_L=C_L(1/r_L^2-1)$")
            line.set_gid(f"{key}:{name}:noise")
            if theory is not None and name in theory.n0:
                (line,) = ax.plot(st.ell, positive(dl_factor(st.ell) * theory.n0[name]), "--", color=COLORS["qe"],
                                  lw=1.4, label=r"QE: analytic $N^{(0)}_L$")
                line.set_gid(f"{key}:{name}:n0")
                framed.append(dl_factor(st.ell) * theory.n0[name])
        ax.set_yscale("log")
        ax.set_ylim(*log_limits(framed, below=0.2, above=8.0))
        _x_range(ax, res)
        ax.set_ylabel(r"$L(L+1)C_L/2\pi$" + power_unit_suffix(res.units))
        ax.set_title(field_title(res.label, res.nmaps, res.nnull))
    legend = legend_below(fig, axes, ncols=3)
    if legend is not None:
        legend.set_title(r"$N_L$ is not drawn where $r_L\leq 0$; wf_rec_* maps have the $N_L$ of rec_*",
                         prop={"size": 7})
    return fig
