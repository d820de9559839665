"""Figures of an evaluation, drawn from the same objects the tables print: maps, r_L, spectra, the bias test.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot (notebooks display it, scripts pass it
to :func:`save`, which writes a PNG and a vector PDF beside it). The house style (sizes for a two-column page,
mathtext, centred diverging colour maps) is :mod:`datapipe.plotting`'s.

- :mod:`~training.evaluation.figures.maps`: :func:`plot_map_comparison`;
- :mod:`~training.evaluation.figures.spectra`: :func:`plot_r_ell`, :func:`plot_spectra`;
- :mod:`~training.evaluation.figures.bias`: :func:`plot_bias_test`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datapipe.plotting import PNG_DPI, save_figure
from training.evaluation.figures.bias import plot_bias_test
from training.evaluation.figures.common import COLORS
from training.evaluation.figures.maps import plot_map_comparison
from training.evaluation.figures.spectra import plot_r_ell, plot_spectra


def save(fig: Any, path: str | Path, dpi: int = PNG_DPI, pdf: bool = True) -> list[Path]:
    """Write a figure as PNG (``path``) and vector PDF (same stem), atomically; the folder is created.

    Returns
    -------
    list of pathlib.Path
        The files written, PNG first.
    """
    return save_figure(fig, path, dpi=dpi, pdf=pdf)


__all__ = ["COLORS", "plot_bias_test", "plot_map_comparison", "plot_r_ell", "plot_spectra", "save"]
