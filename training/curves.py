"""The training-curves figure of a run: losses, R² per output and the learning rate against epoch.

Drawn from ``training.log``, the file Keras's ``CSVLogger`` writes (one row per epoch: ``loss``, ``val_loss``, per
output ``<name>_loss`` and ``<name>_r2`` with their ``val_`` twins, and ``learning_rate``, which
``ReduceLROnPlateau`` puts in the epoch's logs). :func:`write_training_curves` is called by
:func:`training.loop.train` at the end of a run and of every ``--resume``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from datapipe.plotting import PAGE_WIDTH, log_limits, new_figure, paper_style, positive, save_figure

CURVES_FILE = "training_curves.png"
#: R² below this is drawn at the bottom of its panel, as an open triangle.
R2_FLOOR = -1.0


def read_log(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a ``CSVLogger`` file as float arrays (``NA`` and unparsable entries as NaN).

    Raises
    ------
    ValueError
        If the file has no header or no ``epoch`` column.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        names = list(reader.fieldnames or [])
        rows = list(reader)
    if not names:
        raise ValueError(f"{path} is empty")
    if "epoch" not in names:
        raise ValueError(f"{path} has no 'epoch' column (columns: {', '.join(names)})")

    def number(text: str | None) -> float:
        try:
            return float(text)
        except (TypeError, ValueError):
            return math.nan

    return {name: np.array([number(row.get(name)) for row in rows]) for name in names}


def output_names(columns: dict[str, np.ndarray]) -> list[str]:
    """Model outputs with a per-output loss in the log (``<name>_loss``), in the log's order."""
    return [c[: -len("_loss")] for c in columns if c.endswith("_loss") and not c.startswith("val_") and c != "loss"]


def _plot_pair(ax: Any, epochs: np.ndarray, columns: dict[str, np.ndarray], name: str, color: str, label: str,
               transform: Any = None) -> list[np.ndarray]:
    drawn = []
    for prefix, style in (("", "--"), ("val_", "-")):
        if prefix + name not in columns:
            continue
        values = columns[prefix + name] if transform is None else transform(columns[prefix + name])
        which = "validation" if prefix else "training"
        (line,) = ax.plot(epochs, values, style, marker="o" if prefix else None, color=color,
                          label=f"{label}, {which}")  # the figure's legend keys colour and style apart
        line.set_gid(f"{prefix}{name}")
        drawn.append(values)
    return drawn


@paper_style
def plot_training_curves(columns: dict[str, np.ndarray], title: str = "") -> Any:
    """Losses, R² per output (training dashed, validation solid) and the learning rate, against epoch.

    Parameters
    ----------
    columns : dict of str to ndarray
        The log's columns (:func:`read_log`).
    title : str
        Figure title (e.g. the run's folder).

    Returns
    -------
    matplotlib.figure.Figure
        Four panels: total loss, loss per output (log scales), R² per output (values below −1 drawn at −1 as
        open triangles) and the learning rate (log scale; "not logged" when the log has no such column).
    """
    epochs = columns["epoch"] + 1.0  # CSVLogger counts from 0; the progress bar and summary.json from 1
    outputs = output_names(columns)
    colors = {name: f"C{i}" for i, name in enumerate(outputs)}
    fig = new_figure(PAGE_WIDTH, 4.6)
    (ax_loss, ax_parts), (ax_r2, ax_lr) = fig.subplots(2, 2, sharex=True)

    drawn = _plot_pair(ax_loss, epochs, columns, "loss", "k", "total", positive)
    ax_loss.set_ylabel("loss (standardized units)")
    ax_loss.set_title("total loss")
    parts = []
    for name in outputs:
        parts += _plot_pair(ax_parts, epochs, columns, f"{name}_loss", colors[name], name, positive)
    ax_parts.set_title("loss per output")
    for ax, values in ((ax_loss, drawn), (ax_parts, parts)):
        ax.set_yscale("log")
        if values:
            ax.set_ylim(*log_limits(values, below=0.7, above=1.4))

    for name in outputs:
        _plot_pair(ax_r2, epochs, columns, f"{name}_r2", colors[name], name, lambda v: np.maximum(v, R2_FLOOR))
        for prefix in ("", "val_"):
            values = columns.get(f"{prefix}{name}_r2")
            if values is not None and np.any(values < R2_FLOOR):
                low = np.where(values < R2_FLOOR, R2_FLOOR, np.nan)
                ax_r2.plot(epochs, low, "v", color=colors[name], mfc="white", ms=5)
    ax_r2.axhline(0, color="0.6", lw=0.6)
    ax_r2.set_ylim(R2_FLOOR - 0.08, 1.05)
    ax_r2.set_ylabel(r"$R^2$")
    ax_r2.set_title(r"$R^2$ per output (below $-1$: open $\triangledown$ at $-1$)")

    if "learning_rate" in columns and np.isfinite(columns["learning_rate"]).any():
        (line,) = ax_lr.step(epochs, columns["learning_rate"], where="mid", color="k")
        line.set_gid("learning_rate")
        ax_lr.set_yscale("log")
        ax_lr.set_ylim(*log_limits([columns["learning_rate"]], below=0.5, above=2.0))
    else:
        ax_lr.text(0.5, 0.5, "learning rate not logged", transform=ax_lr.transAxes, ha="center", va="center")
    ax_lr.set_title("learning rate")
    for ax in (ax_r2, ax_lr):
        ax.set_xlabel("epoch")
    ax_lr.set_xlim(0.5, max(float(np.nanmax(epochs)) if epochs.size else 1.0, 1.0) + 0.5)
    ax_lr.xaxis.get_major_locator().set_params(integer=True)
    from matplotlib.lines import Line2D

    keys = [Line2D([], [], color="k", label="total")]
    keys += [Line2D([], [], color=colors[name], label=name) for name in outputs]
    keys += [Line2D([], [], color="0.4", ls="--", label="training"),
             Line2D([], [], color="0.4", marker="o", label="validation")]
    fig.legend(handles=keys, loc="outside right upper")
    if title:
        fig.suptitle(title)
    return fig


def write_training_curves(output_dir: str | Path, log: Any = print) -> list[Path]:
    """Draw ``training_curves.png`` (and ``.pdf``) of a run folder from its ``training.log``.

    A missing or unreadable log is reported through ``log`` and nothing is written: the figure never stops a run.

    Parameters
    ----------
    output_dir : str or pathlib.Path
        The run's ``output_dir``.
    log : callable
        Where the note goes.

    Returns
    -------
    list of pathlib.Path
        The files written (none on a problem).
    """
    from training.artifacts import LOG_FILE

    folder = Path(output_dir)
    try:
        columns = read_log(folder / LOG_FILE)
        if not columns.get("epoch", np.array([])).size:
            raise ValueError(f"{folder / LOG_FILE} has no epoch rows yet")
        return save_figure(plot_training_curves(columns, title=f"Training curves: {folder.name}"), folder / CURVES_FILE)
    except (OSError, ValueError) as exc:
        log(f"note: {CURVES_FILE} not drawn ({exc})")
        return []
