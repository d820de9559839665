"""House style of the project's figures: sizes for a two-column paper, mathtext labels, colour limits, saving.

Every figure is built on ``matplotlib.figure.Figure`` (never pyplot), so building one neither changes the active
backend nor keeps figures alive. Figure functions draw inside :func:`paper_style` and callers write them with
:func:`save_figure`: a PNG (≥ 150 dpi) and a vector PDF of the same stem.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

#: Widths of a two-column journal page, in inches (figures are drawn at the size they are printed).
COLUMN_WIDTH = 3.4
PAGE_WIDTH = 7.1
#: Resolution of the PNGs (the PDFs are vector).
PNG_DPI = 200
#: Diverging colour map of every signed map (zero is white), used with symmetric limits.
DIVERGING_CMAP = "RdBu_r"

_STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "figure.titlesize": 9,
    "lines.linewidth": 1.0,
    "lines.markersize": 3.0,
    "errorbar.capsize": 1.5,
    "axes.linewidth": 0.6,
    "xtick.direction": "in",
    "ytick.direction": "in",
    "xtick.top": True,
    "ytick.right": True,
    "mathtext.fontset": "dejavusans",
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.03,
    "pdf.fonttype": 42,
}

#: Greek letters of the field labels, as mathtext.
_GREEK = {"τ": r"\tau", "κ": r"\kappa", "φ": r"\phi", "α": r"\alpha", "ψ": r"\psi", "ω": r"\omega"}

F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def style_context() -> Iterator[None]:
    """Temporarily apply the house style to matplotlib's rcParams (artists read them when they are made)."""
    import matplotlib

    with matplotlib.rc_context(_STYLE):
        yield


def paper_style(function: F) -> F:
    """Decorator: build the figure inside :func:`style_context`."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with style_context():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def new_figure(width: float, height: float) -> Any:
    """A ``matplotlib.figure.Figure`` of the given size in inches with constrained layout."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def math_symbol(label: str) -> str:
    """A field label (``τ``, ``κ``, ``E``, ``α``, or any name) as mathtext, ``$...$`` included."""
    if label in _GREEK:
        return f"${_GREEK[label]}$"
    if len(label) == 1 and label.isalpha():
        return f"${label}$"
    return label.replace("_", r"\_")


def unit_suffix(units: str) -> str:
    """`` [μK]`` style suffix for an axis or colour-bar label (empty for dimensionless fields)."""
    if units in ("", "dimensionless", "map units"):
        return ""
    return r" [$\mu$K]" if units == "μK" else f" [{units}]"


def power_unit_suffix(units: str) -> str:
    """Suffix for a power spectrum of a field in ``units`` (units squared; empty for dimensionless fields)."""
    if units in ("", "dimensionless", "map units"):
        return ""
    return r" [$\mu$K$^2$]" if units == "μK" else f" [{units}$^2$]"


def dl_factor(ell: np.ndarray) -> np.ndarray:
    """:math:`L(L+1)/2\\pi`, the factor between :math:`C_L` and the plotted :math:`D_L`."""
    ell = np.asarray(ell, dtype=float)
    return ell * (ell + 1.0) / (2.0 * np.pi)


def symmetric_limit(image: np.ndarray, percentile: float = 99.5) -> float:
    """Colour limit of a signed map: the ``percentile`` of its absolute values (1 for an all-zero map)."""
    values = np.abs(np.asarray(image, dtype=float))
    limit = float(np.percentile(values, percentile)) if values.size else 0.0
    if not limit > 0:
        limit = float(values.max()) if values.size else 0.0
    return limit if limit > 0 else 1.0


def positive(values: np.ndarray) -> np.ndarray:
    """The values with non-finite and non-positive entries as NaN (a gap on a log axis, not a spike)."""
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values) & (values > 0), values, np.nan)


def log_limits(curves: Sequence[np.ndarray], below: float = 0.3, above: float = 3.0) -> tuple[float, float]:
    """Log-axis limits enclosing the positive finite values of some curves, widened by the given factors."""
    values = np.concatenate([np.ravel(positive(c)) for c in curves]) if curves else np.array([])
    values = values[np.isfinite(values)]
    if not values.size:
        return 1e-3, 1.0
    return float(values.min()) * below, float(values.max()) * above


def save_figure(fig: Any, path: str | Path, dpi: int = PNG_DPI, pdf: bool = True) -> list[Path]:
    """Write a figure as PNG at ``path`` and, with ``pdf``, as a vector PDF of the same stem, atomically.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    path : str or pathlib.Path
        The PNG's path (its folder is created); the PDF goes beside it with the suffix ``.pdf``.
    dpi : int
        Resolution of the PNG (at least 150).
    pdf : bool
        Also write the PDF.

    Returns
    -------
    list of pathlib.Path
        The files written, PNG first.
    """
    from datapipe.writer import atomic_output

    if dpi < 150:
        raise ValueError(f"figures are written at 150 dpi or more (got {dpi})")
    path = Path(path).with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    with style_context():
        for target, fmt in [(path, "png"), *([(path.with_suffix(".pdf"), "pdf")] if pdf else [])]:
            with atomic_output(target, suffix=f".{fmt}") as tmp:
                fig.savefig(tmp, dpi=dpi, format=fmt, metadata={"Software": None} if fmt == "png" else None)
            written.append(target)
    return written
