"""The training-curves figure (training/curves.py): drawn from training.log, the numbers it plots, bad logs."""

from __future__ import annotations

import numpy as np
import pytest

from training import curves

OUTPUTS = ("kappa", "tau", "unle")


def write_log(path, epochs=4, learning_rate=True, r2_floor=None):
    """A training.log as Keras's CSVLogger writes it (sorted keys after ``epoch``)."""
    rng = np.random.default_rng(0)
    keys = ["loss", *(f"{o}_{m}" for o in OUTPUTS for m in ("loss", "r2"))]
    if learning_rate:
        keys.append("learning_rate")
    keys = sorted(keys)
    keys += [f"val_{k}" for k in keys if k != "learning_rate"]
    rows = []
    for epoch in range(epochs):
        row = {}
        for key in keys:
            if key.endswith("r2"):
                row[key] = 0.2 * epoch + 0.05 * rng.random()
            elif key == "learning_rate":
                row[key] = 1e-3 * 0.5 ** (epoch // 2)
            else:
                row[key] = 3.0 / (epoch + 1) + 0.1 * rng.random()
        rows.append(row)
    if r2_floor is not None:
        rows[0]["val_tau_r2"] = r2_floor
    lines = [",".join(["epoch", *keys])]
    lines += [",".join([str(i), *(repr(float(row[k])) for k in keys)]) for i, row in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return rows


def _line(fig, gid):
    found = [line for ax in fig.axes for line in ax.lines if line.get_gid() == gid]
    assert len(found) == 1, gid
    return found[0]


def test_curves_are_written_and_plot_the_log(tmp_path):
    rows = write_log(tmp_path / "training.log", r2_floor=-250.0)
    written = curves.write_training_curves(tmp_path)
    assert [p.name for p in written] == ["training_curves.png", "training_curves.pdf"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and written[1].read_bytes()[:5] == b"%PDF-"
    assert all(p.stat().st_size > 10_000 for p in written)

    columns = curves.read_log(tmp_path / "training.log")
    assert curves.output_names(columns) == list(OUTPUTS)
    fig = curves.plot_training_curves(columns)
    np.testing.assert_allclose(_line(fig, "loss").get_xdata(), [1, 2, 3, 4])  # epochs counted from 1
    np.testing.assert_allclose(_line(fig, "val_loss").get_ydata(), [r["val_loss"] for r in rows])
    np.testing.assert_allclose(_line(fig, "tau_loss").get_ydata(), [r["tau_loss"] for r in rows])
    np.testing.assert_allclose(_line(fig, "learning_rate").get_ydata(), [r["learning_rate"] for r in rows])
    # An R² of -250 is drawn at the floor (-1), not stretching the axis; the others as logged.
    val_tau = _line(fig, "val_tau_r2").get_ydata()
    assert val_tau[0] == curves.R2_FLOOR
    np.testing.assert_allclose(val_tau[1:], [r["val_tau_r2"] for r in rows[1:]])
    assert _line(fig, "val_tau_r2").axes.get_ylim()[0] > -1.5


def test_a_log_without_learning_rate_says_so(tmp_path):
    write_log(tmp_path / "training.log", learning_rate=False)
    fig = curves.plot_training_curves(curves.read_log(tmp_path / "training.log"))
    assert any("not logged" in t.get_text() for ax in fig.axes for t in ax.texts)


@pytest.mark.parametrize("content", [None, "", "loss,val_loss\n1,2\n", "epoch,loss\n"])
def test_missing_or_bad_log_draws_nothing_and_says_why(tmp_path, content):
    if content is not None:
        (tmp_path / "training.log").write_text(content)
    notes = []
    assert curves.write_training_curves(tmp_path, log=notes.append) == []
    assert len(notes) == 1 and notes[0].startswith("note: training_curves.png not drawn")
    assert not (tmp_path / "training_curves.png").exists()
