"""One map set side by side: truth, the network's prediction, the residual and the QE map, per field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from datapipe.plotting import (
    DIVERGING_CMAP,
    PAGE_WIDTH,
    math_symbol,
    new_figure,
    paper_style,
    symmetric_limit,
    unit_suffix,
)

#: A QE map whose colour limit exceeds the truth's by more than this factor gets its own colour scale.
OWN_SCALE_ABOVE = 3.0
#: A prediction whose rms is off the truth's by more than this factor is flagged as saturated (or faint).
SCALE_WARNING = 3.0


def rms(image: np.ndarray) -> float:
    """Root mean square of a map (about zero, as for the residual)."""
    return float(np.sqrt(np.mean(np.square(np.asarray(image, dtype=float)))))


def rms_ratio(image: np.ndarray, truth: np.ndarray) -> float:
    """rms(image) / rms(truth) (NaN for an all-zero truth): the number printed in the panels."""
    reference = rms(truth)
    return rms(image) / reference if reference > 0 else float("nan")


def _default_units(labels: list[str]) -> dict[str, str]:
    from training.evaluation.comparison import FIELD_INFO

    by_label = {label: units for label, units in FIELD_INFO.values()}
    return {label: by_label.get(label, "dimensionless") for label in labels}


def _note(ax: Any, text: str) -> None:
    ax.text(0.03, 0.03, text, transform=ax.transAxes, fontsize=6.5, va="bottom", ha="left",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})


@paper_style
def plot_map_comparison(
    truths: Mapping[str, np.ndarray],
    predictions: Mapping[str, np.ndarray],
    qe_maps: Mapping[str, tuple[str, np.ndarray]] | None = None,
    pixel_arcmin: float = 2.34375,
    index: int | None = None,
    units: Mapping[str, str] | None = None,
) -> Any:
    """One map set: truth, network prediction, residual (truth − prediction) and the QE map, one row per field.

    Truth, prediction and residual share one centred diverging colour scale (± the 99.5th percentile of the
    truth's absolute value), so they read directly against each other; each panel prints rms(map)/rms(truth).
    A prediction whose rms is off by more than a factor 3 is flagged (it saturates, or fades, on the truth's
    scale). The QE map shares the scale too, unless its range exceeds the truth's more than threefold (a raw
    τ QE map is dominated by noise): then it gets its own colour bar and its title says so.

    Parameters
    ----------
    truths, predictions : mapping of str to ndarray
        Field label (τ, κ, E, …) → (npix, npix) map in physical units.
    qe_maps : mapping of str to (str, ndarray), optional
        Field label → (QE array name, map), drawn in a fourth column.
    pixel_arcmin : float
        Pixel size in arcmin (axes in degrees).
    index : int, optional
        Map-set index, for the title.
    units : mapping of str to str, optional
        Field label → units (default: those of :data:`training.evaluation.comparison.FIELD_INFO`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    qe_maps = dict(qe_maps or {})
    labels = list(truths)
    units = {**_default_units(labels), **dict(units or {})}
    ncols = 4 if qe_maps else 3
    fig = new_figure(PAGE_WIDTH if ncols == 4 else 0.8 * PAGE_WIDTH, 1.75 * len(labels) + 0.35)
    axes = fig.subplots(len(labels), ncols, squeeze=False, sharex=True, sharey=True)
    for row, label in enumerate(labels):
        truth = np.asarray(truths[label], dtype=float)
        pred = np.asarray(predictions[label], dtype=float)
        side = truth.shape[0] * pixel_arcmin / 60.0
        limit = symmetric_limit(truth)
        symbol = math_symbol(label)
        shown = {"vmin": -limit, "vmax": limit, "cmap": DIVERGING_CMAP, "origin": "upper",
                 "extent": (0, side, 0, side), "interpolation": "nearest"}
        panels = [(f"true {symbol}", truth, None), ("ResUNet-CMB", pred, rms_ratio(pred, truth)),
                  ("truth − network", truth - pred, rms_ratio(truth - pred, truth))]
        image = None
        for col, (title, data, ratio) in enumerate(panels):
            ax = axes[row, col]
            image = ax.imshow(data, **shown)
            ax.set_title(title)
            if ratio is not None:
                text = f"rms / rms(truth) = {ratio:.2f}"
                if col == 1 and not 1 / SCALE_WARNING <= ratio <= SCALE_WARNING:
                    text += "\n(saturated on this scale)" if ratio > SCALE_WARNING else "\n(faint on this scale)"
                _note(ax, text)
        # One colour bar right of the residual and one right of the QE map: the same places in every row.
        bar = fig.colorbar(image, ax=list(axes[row, :3]), fraction=0.05, pad=0.02)
        bar.set_label(symbol + unit_suffix(units[label]))
        if label in qe_maps:
            name, qe = qe_maps[label]
            qe = np.asarray(qe, dtype=float)
            ax = axes[row, 3]
            qe_limit = symmetric_limit(qe)
            own = qe_limit > OWN_SCALE_ABOVE * limit
            qe_image = ax.imshow(qe, **{**shown, "vmin": -qe_limit, "vmax": qe_limit} if own else shown)
            ax.set_title(f"QE ({name})" + (f"\nown scale: {qe_limit / limit:.0f}× the truth's" if own else ""))
            _note(ax, f"rms / rms(truth) = {rms_ratio(qe, truth):.2f}")
            bar = fig.colorbar(qe_image, ax=ax, fraction=0.05, pad=0.02)
            bar.set_label(f"QE {symbol}{unit_suffix(units[label])}" + (" (own scale)" if own else ""))
        elif ncols == 4:
            axes[row, 3].set_axis_off()
        axes[row, 0].set_ylabel("y [deg]")
    for ax in axes[-1]:
        ax.set_xlabel("x [deg]")
    title = "Truth, ResUNet-CMB and QE" + (f": map set {index}" if index is not None else "")
    fig.suptitle(title)
    return fig
