"""What the evaluation figures share: colours and markers of the estimators, the panel grid, the legend below."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from datapipe.plotting import PAGE_WIDTH, new_figure

#: Colours of the estimators, shared by every figure.
COLORS = {"network": "C3", "qe": "C0", "wf_qe": "C2", "truth": "k", "theory": "0.35", "residual": "C1"}
#: Panel columns for n fields (four fields: 2 × 2).
_COLUMNS = {1: 1, 2: 2, 3: 3, 4: 2}


def field_panels(n: int, panel_height: float = 2.3) -> tuple[Any, list[Any]]:
    """A page-wide figure with one panel per field (at most three per row) and the axes, in reading order.

    Panels beyond ``n`` in the last row are removed, so no empty frame is left.
    """
    n = max(int(n), 1)
    ncols = _COLUMNS.get(n, 3)
    nrows = math.ceil(n / ncols)
    fig = new_figure(PAGE_WIDTH, panel_height * nrows + 0.55)
    axes = list(np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel()))
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


def legend_below(fig: Any, axes: list[Any], ncols: int = 3, first: tuple[str, ...] = ()) -> Any:
    """One legend for all panels, under them (outside the data); entries with the same label appear once.

    Labels in ``first`` lead, in that order; the others follow in the order they were drawn.
    """
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if not handles:
        return None
    order = [label for label in first if label in handles] + [label for label in handles if label not in first]
    return fig.legend([handles[label] for label in order], order, loc="outside lower center", ncols=ncols)


def field_title(label: str, nmaps: int, nnull: int = 0) -> str:
    """Panel title: the field's symbol and the map sets behind it (and the null ones left out)."""
    from datapipe.plotting import math_symbol

    left_out = f", {nnull} null left out" if nnull else ""
    return f"{math_symbol(label)}  ({nmaps} map sets{left_out})"
