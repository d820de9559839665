"""`make demo` writes only under results/, and `make images` redraws the demo's example figure.

The demo at its own size (300 map sets, training, evaluation) is too slow for the suite; these tests run it on 32×32
maps with a handful of map sets, and the figure script at that size.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import io
import json
import sys
from pathlib import Path

import pytest
from training_helpers import tiny_model

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
TRACKED_FIGURE = ROOT / "images" / "example_map_set.png"
#: 32×32 maps (0.3° taper) and a short QE mean field: a few seconds per simulation.
SMALL = {"npix": 32, "taper_deg": 0.3, "qe_mean_field_sims": 4}

if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))


@pytest.fixture(scope="module")
def demo():
    return importlib.import_module("demo")


@pytest.fixture(scope="module")
def figure_script():
    return importlib.import_module("make_example_figure")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_output_path_of_the_demo_is_under_results(demo):
    results = ROOT / "results"
    assert demo.DEMO_DIR.is_relative_to(results) and demo.FIGURE.is_relative_to(results)
    outputs = {name: value for name, value in vars(demo).items()
               if isinstance(value, Path) and name not in {"ROOT", "SHIPPED_NETWORK"}}  # those two are only read
    assert outputs, "no output paths found in scripts/demo.py"
    for name, path in outputs.items():
        assert path.is_relative_to(results), f"demo.{name} = {path} is outside results/"


@pytest.fixture(scope="module")
def demo_step(demo, tmp_path_factory):
    """The demo's first step on 32×32 maps in a fresh folder: (root, folder, data, figure, stdout, tracked digests)."""
    before = digest(TRACKED_FIGURE) if TRACKED_FIGURE.exists() else None
    root = tmp_path_factory.mktemp("demo")
    folder = root / "results" / "demo"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        data, figure = demo.example_step(folder, 3, workers=1, progress=False, **SMALL)
    after = digest(TRACKED_FIGURE) if TRACKED_FIGURE.exists() else None
    return root, folder, data, figure, out.getvalue(), (before, after)


def test_demo_example_step_writes_only_into_its_folder(demo_step):
    root, folder, data, figure, stdout, (before, after) = demo_step
    assert data == folder / "map_sets32.npz" and figure == folder / "example_map_set.png"
    assert figure.read_bytes().startswith(b"\x89PNG")
    written = {path for path in root.rglob("*") if path.is_file()}
    assert written and all(path.is_relative_to(folder) for path in written), written
    assert str(figure) in stdout  # the demo says where the figure went
    assert before == after, "the demo rewrote images/example_map_set.png"


def test_figure_script_draws_the_same_map_set_as_the_demo(demo_step, figure_script, tmp_path):
    demo_figure = demo_step[3]
    figure = figure_script.make_example_figure(tmp_path / "example.png", tmp_path / "work", **SMALL)
    assert figure == tmp_path / "example.png"
    assert figure.read_bytes() == demo_figure.read_bytes()  # map set 1 depends only on (seed, 1)
    assert figure_script.TRACKED_FIGURE == TRACKED_FIGURE


def test_figure_script_rejects_a_missing_folder(figure_script, tmp_path, capsys):
    assert figure_script.main(["--output", str(tmp_path / "missing" / "example.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0] and "does not exist" in err[0]
    assert not (tmp_path / "missing").exists()


def snapshot(folder: Path) -> dict[str, int]:
    """Every file below ``folder`` with its modification time in ns (empty when the folder does not exist)."""
    return {str(path): path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}


def test_make_demo_runs_end_to_end_at_the_smallest_size(demo, tmp_path, monkeypatch, capsys):
    """`make demo` (scripts/demo.py main) at the smallest size: 32×32 maps, a handful of map sets, one worker, a
    stand-in network with ResUNet-CMB's inputs and outputs trained for one epoch through training/main.py, its
    evaluation with the bias test. Every output lands in the demo folder and the tracked figure is untouched."""
    from datapipe.runner import run_simulation
    from training import resunet

    before = digest(TRACKED_FIGURE) if TRACKED_FIGURE.exists() else None
    checkout_results = snapshot(ROOT / "results")
    folder = tmp_path / "results" / "demo"
    absent = ROOT / "trained_networks" / "no_such_network"  # no shipped network: the demo trains its stand-in
    assert not absent.exists()
    monkeypatch.setitem(resunet.MODELS, "tiny_model", tiny_model)
    monkeypatch.setattr(demo, "DEMO_DIR", folder)
    monkeypatch.setattr(demo, "SHIPPED_NETWORK", absent)
    monkeypatch.setattr(demo, "NSIMS", 3)
    monkeypatch.setattr(demo, "example_step", functools.partial(demo.example_step, workers=1, progress=False, **SMALL))
    # One worker process instead of two (the output does not depend on it: tests/test_datapipeline.py).
    monkeypatch.setattr(demo, "run_simulation", lambda *args, **kw: run_simulation(*args, **{**kw, "workers": 1}))
    monkeypatch.setattr(demo, "TINY_SETTINGS", SMALL)
    monkeypatch.setattr(demo, "TINY_NSIMS", 40)  # 32 / 4 / 4 map sets: one batch of 4 in the smaller splits
    monkeypatch.setattr(demo, "TINY_CONFIG", {**demo.TINY_CONFIG, "epochs": 1, "batch_size": 4,
                                              "model": "tiny_model"})
    monkeypatch.setattr(demo, "TEST_NSIMS", 6)
    monkeypatch.setattr(demo, "BIAS_NSIMS", 4)
    monkeypatch.chdir(tmp_path)
    assert demo.main([]) == 0
    out = capsys.readouterr().out
    assert f"everything is in {folder}" in out and "training a stand-in ResUNet-CMB" in out
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["nmaps"] == 6 and metrics["bias_test"]["nmaps"] == 4
    assert set(metrics["fields"]) == {"tau", "kappa", "unle"}
    for name in ("example_map_set.png", "map_comparison.png", "r_ell.png", "bias_test.png", "table.txt",
                 "tiny/network/model.weights.h5", "tiny/train_output.txt", "test_set/map_sets32.npz"):
        assert (folder / name).is_file(), name
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert all(path.is_relative_to(folder) for path in written), [p for p in written if not p.is_relative_to(folder)]
    assert before == (digest(TRACKED_FIGURE) if TRACKED_FIGURE.exists() else None)
    assert snapshot(ROOT / "results") == checkout_results  # nothing written into the checkout's own results/
