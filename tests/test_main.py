"""Tests of training/main.py: a tiny end-to-end run, its outputs, and the one-line errors for bad input."""

from __future__ import annotations

import csv
import errno
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from training_helpers import synthetic_maps, tiny_model, write_config, write_map_file

from training import build as tbuild
from training import checkpoint as tcheckpoint
from training import main as tmain
from training import resunet
from training.checkpoint import save_checkpoint
from training.data.standardization import Standardization
from training.resunet import load_model

REPO_ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 3
OUTPUT_FILES = [
    "training.log",
    "map_means.npz",
    "map_stds.npz",
    "data_settings.json",
    "split_indices.npz",
    "model.keras",
    "model.weights.h5",
    "model_architecture.json",
    "predictions.npz",
    "test_data.npz",
    "summary.json",
    "checkpoint/state.json",
    "training_curves.png",
    "training_curves.pdf",
]


LEARNING_RATE = 1e-2  # the stand-in network's few hundred weights need a larger step than ResUNet-CMB's 1e-3


@pytest.fixture(scope="module", autouse=True)
def _tiny_model_registered():
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(resunet.MODELS, "tiny_model", tiny_model)
        yield


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny training run (16x16 maps, 40 maps, 3 epochs, dropout 0.3) through the CLI entry point, in this process.

    It trains the small stand-in network of tests/training_helpers.py (dropout and batch normalization, like
    ResUNet-CMB): these tests are about the training machinery. The full network is trained through the command line
    in :func:`test_end_to_end_with_the_pipeline_cli`. The checkpoint written after epoch 2 is kept aside as
    ``<run>.epoch2`` for the resume test.
    """
    folder = tmp_path_factory.mktemp("run")
    write_map_file(folder / "maps.npz", nsims=40, npix=16, seed=0)
    # The paper's dropout: a resumed run must reproduce it too (the dropout layers' RNG states are checkpointed).
    cfg = write_config(folder / "config.json", "maps.npz", output_dir="results/tiny", epochs=EPOCHS, dropval=0.3,
                       model="tiny_model", learning_rate=LEARNING_RATE)
    out = folder / "results" / "tiny"

    def save_and_snapshot(output_dir, model, state, best_weights):
        path = save_checkpoint(output_dir, model, state, best_weights)
        if state.epoch == 2:
            shutil.copytree(path, out.with_name("tiny.epoch2"))
        return path

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tcheckpoint, "save_checkpoint", save_and_snapshot)
        assert tmain.main([str(cfg)]) == 0
    return out


def read_log(path: Path) -> list[dict[str, float]]:
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_every_output_file_is_written(run):
    for name in OUTPUT_FILES:
        assert (run / name).is_file(), name
    assert not list(run.glob(".partial-*")) and not (run / "checkpoint.partial").exists()


def test_training_log_and_falling_loss(run):
    rows = read_log(run / "training.log")
    assert [int(r["epoch"]) for r in rows] == list(range(EPOCHS))
    for key in ("loss", "val_loss", "learning_rate", "kappa_r2", "val_tau_r2", "unle_loss"):
        assert key in rows[0]
    # The synthetic targets are local linear functions of Q and U: three epochs cut the training loss well down.
    assert rows[-1]["loss"] < 0.6 * rows[0]["loss"]
    assert rows[-1]["kappa_r2"] > rows[0]["kappa_r2"]
    assert rows[0]["learning_rate"] == pytest.approx(LEARNING_RATE)


def test_standardization_files(run):
    with np.load(run / "map_means.npz") as m, np.load(run / "map_stds.npz") as s:
        assert set(m.files) == {f"{a}_mean" for a in ("q_len", "u_len", "e_unl", "tru_tau", "tru_kappa")}
        assert set(s.files) == {f"{a}_std" for a in ("q_len", "u_len", "e_unl", "tru_tau", "tru_kappa")}
    with np.load(run / "split_indices.npz") as f:
        train = f["train"]
    maps = synthetic_maps(40, 16, seed=0)
    std = Standardization.from_npz(run / "map_means.npz", run / "map_stds.npz")
    assert std.means["e_unl"] == pytest.approx(maps["e_unl"][train].mean(dtype=np.float64), rel=1e-6)
    assert std.stds["tru_kappa"] == pytest.approx(maps["tru_kappa"][train].std(dtype=np.float64), rel=1e-6)


def test_test_data_is_the_test_split_in_physical_units(run):
    maps = synthetic_maps(40, 16, seed=0)
    with np.load(run / "split_indices.npz") as f:
        test = f["test"]
        assert sorted(np.concatenate([f["train"], f["val"], test])) == list(range(40))
    with np.load(run / "test_data.npz") as f:
        assert set(f.files) == {
            f"{a}_test" for a in ("q_len", "u_len", "e_unl", "tru_tau", "tru_kappa", "rec_kappa", "rec_tau")
        }
        for name in ("q_len", "tru_tau", "rec_kappa"):
            np.testing.assert_array_equal(f[f"{name}_test"], maps[name][test])


def test_predictions_reload_and_are_in_physical_units(run):
    """The saved model, fed the standardized test inputs, reproduces predictions.npz once de-standardized."""
    std = Standardization.from_npz(run / "map_means.npz", run / "map_stds.npz")
    with np.load(run / "test_data.npz") as f:
        x = {
            "qlen": std.apply("q_len", f["q_len_test"])[..., None],
            "ulen": std.apply("u_len", f["u_len_test"])[..., None],
        }
    with np.load(run / "predictions.npz") as f:
        saved = {k: f[k] for k in f.files}
    assert set(saved) == {"kappa_pred", "unle_pred", "tau_pred"}
    targets = {"tau": "tru_tau", "unle": "e_unl", "kappa": "tru_kappa"}
    for model in (load_model(run / "model.keras"), _from_weights(run)):
        out = dict(zip(model.output_names, model.predict(x, verbose=0), strict=True))
        for name, array in targets.items():
            pred = saved[f"{name}_pred"]
            assert pred.shape == (4, 16, 16) and pred.dtype == np.float32
            np.testing.assert_allclose(
                pred, std.invert(array, out[name][..., 0]), rtol=1e-5, atol=1e-5 * std.stds[array]
            )


def _from_weights(run: Path) -> keras.Model:
    model = keras.models.model_from_json((run / "model_architecture.json").read_text())
    model.load_weights(run / "model.weights.h5")
    return model


def test_summary(run):
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] == EPOCHS and summary["parameters"] == load_model(run / "model.keras").count_params()
    assert summary["backend"] == keras.backend.backend() and summary["device"]
    assert summary["maps"] == {"train": 32, "val": 4, "test": 4}
    rows = read_log(run / "training.log")
    best = min(r["val_loss"] for r in rows)
    assert summary["best_val_loss"] == pytest.approx(best, rel=1e-6)
    assert summary["best_epoch"] == 1 + [r["val_loss"] for r in rows].index(best)
    assert set(summary["test_r2"]) == {"tau", "unle", "kappa"}
    # The reported R² is that of the saved predictions against the saved truths.
    with np.load(run / "predictions.npz") as p, np.load(run / "test_data.npz") as t:
        truth, pred = t["tru_kappa_test"].astype(np.float64), p["kappa_pred"].astype(np.float64)
    expected = 1 - ((truth - pred) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
    assert summary["test_r2"]["kappa"] == pytest.approx(expected, rel=1e-9)
    assert summary["wall_time_s"] > 0 and summary["config"]["epochs"] == EPOCHS


def test_resume_reproduces_an_uninterrupted_run(run, tmp_path):
    """Resuming from the epoch-2 checkpoint gives the same epoch-3 losses as the uninterrupted run.

    Exact continuation needs the weights, the optimizer state, the shuffling stream, the callbacks' counters and
    the dropout layers' random-generator states all restored (the run has the paper's dropout, 0.3).
    """
    out = tmp_path / "resumed"
    shutil.copytree(run, out, ignore=shutil.ignore_patterns("checkpoint"))
    shutil.copytree(run.with_name("tiny.epoch2"), out / "checkpoint")
    (out / "training_curves.png").unlink()  # drawn again at the end of the resumed run
    assert json.loads((out / "checkpoint" / "state.json").read_text())["epoch"] == 2
    cfg = run.parent.parent / "config.json"
    assert tmain.main([str(cfg), "--resume", "--output-dir", str(out)]) == 0
    resumed, reference = read_log(out / "training.log"), read_log(run / "training.log")
    assert [int(r["epoch"]) for r in resumed] == list(range(EPOCHS))  # the copied row of epoch 3 was replaced
    assert (out / "training_curves.png").stat().st_size > 10_000
    for key, value in reference[-1].items():
        assert resumed[-1][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    with np.load(out / "checkpoint" / "optimizer.npz") as f:
        iteration = next(i for i, p in enumerate(f["paths"]) if p.endswith("/iteration"))
        assert int(f[f"v{iteration}"]) == EPOCHS * 8  # 8 steps per epoch, none repeated
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_run"] == EPOCHS and summary["config"]["output_dir"] == str(out)
    reference_summary = json.loads((run / "summary.json").read_text())
    assert summary["test_r2"] == pytest.approx(reference_summary["test_r2"], rel=1e-3)


def test_data_workers_do_not_change_the_training(tmp_path):
    """data_workers = 2 (threads, or processes with data_multiprocessing) trains exactly like one worker: the same
    batches in the same order over two epochs (each reshuffled), hence the same losses, bit for bit, and the same
    predictions. A small stand-in model for speed: the batches do not depend on the model."""
    write_map_file(tmp_path / "maps.npz", nsims=40, npix=16, seed=0)
    results = {}
    for name, workers, processes in (("one", 1, False), ("threads", 2, False), ("processes", 2, True)):
        cfg = write_config(tmp_path / f"{name}.json", "maps.npz", output_dir=name, epochs=2, model="tiny_model",
                           data_workers=workers, data_multiprocessing=processes)
        assert tmain.main([str(cfg)]) == 0
        with np.load(tmp_path / name / "predictions.npz") as f:
            results[name] = ((tmp_path / name / "training.log").read_text(), {k: f[k] for k in f.files})
    log1, pred1 = results["one"]
    for name in ("threads", "processes"):
        log2, pred2 = results[name]
        assert log2 == log1, name
        assert sorted(pred2) == sorted(pred1)
        for output in pred1:
            np.testing.assert_array_equal(pred2[output], pred1[output], err_msg=f"{name}: {output}")


def test_model_diagram_only_with_pydot_and_graphviz(tmp_path, monkeypatch, capsys):
    drawn = []

    def fake_plot_model(model, to_file, **kwargs):
        Path(to_file).write_bytes(b"PNG")
        drawn.append(Path(to_file).name)

    monkeypatch.setattr(keras.utils, "plot_model", fake_plot_model)
    monkeypatch.setattr(tbuild.shutil, "which", lambda name: None)
    assert not tbuild.write_model_diagram(None, tmp_path / "model_architecture.png")
    assert "skipped (install pydot and Graphviz" in capsys.readouterr().out
    monkeypatch.setattr(tbuild.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(tbuild.importlib.util, "find_spec", lambda name: object())
    assert tbuild.write_model_diagram(None, tmp_path / "model_architecture.png")
    assert drawn == [".partial-model_architecture.png"]  # drawn under a temporary name with the .png ending
    assert (tmp_path / "model_architecture.png").read_bytes() == b"PNG"


# ---------------------------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit status 2.


@pytest.fixture()
def setup(tmp_path):
    write_map_file(tmp_path / "maps.npz", nsims=40, npix=16, seed=0)
    return tmp_path


def expect_error(capsys, argv, *fragments):
    assert tmain.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_invalid_or_missing_config(setup, capsys):
    (setup / "bad.json").write_text('{"epochs": 2,,}')
    expect_error(capsys, [setup / "bad.json"], "is not valid JSON", "line 1")
    expect_error(capsys, [setup / "absent.json"], "does not exist")


def test_unknown_key(setup, capsys):
    cfg = write_config(setup / "c.json", "maps.npz", halt_patience=3)
    expect_error(capsys, [cfg], "unknown config key 'halt_patience'", "did you mean 'haltpatience'")


def test_missing_data_file(setup, capsys):
    expect_error(capsys, [write_config(setup / "c.json", "nothere.npz")], "nothere.npz", "does not exist")


def test_missing_arrays_list_the_file_content(setup, capsys):
    cfg = write_config(setup / "c.json", "maps.npz", trace_used=["wf_rec_tau"])
    expect_error(capsys, [cfg], "lacks array(s) wf_rec_tau", "it has: q_len, u_len")


def test_map_size_differs_from_imagesize(setup, capsys):
    expect_error(capsys, [write_config(setup / "c.json", "maps.npz", imagesize=32)], "16x16 maps but imagesize is 32")


@pytest.mark.parametrize(
    ("splits", "fragment"),
    [((0.9, 0.1, 0.0), "test_split must be a positive fraction"), ((0.7, 0.1, 0.1), "must sum to 1")],
)
def test_bad_splits(setup, capsys, splits, fragment):
    keys = dict(zip(("training_split", "val_split", "test_split"), splits, strict=True))
    expect_error(capsys, [write_config(setup / "c.json", "maps.npz", **keys)], fragment)


def test_split_too_small_for_a_batch(setup, capsys):
    cfg = write_config(setup / "c.json", "maps.npz", batch_size=8)
    expect_error(capsys, [cfg], "validation split has 4 of 40 maps, fewer than one batch (batch_size 8)")


def test_nan_in_the_data(setup, capsys):
    kappa = synthetic_maps(40, 16)["tru_kappa"]
    kappa[17, 2, 2] = np.nan
    write_map_file(setup / "nan.npz", nsims=40, npix=16, tru_kappa=kappa)
    expect_error(
        capsys, [write_config(setup / "c.json", "nan.npz")], "'tru_kappa' has NaN or inf values in map index 17"
    )


def test_unknown_model_and_optimizer(setup, capsys):
    expect_error(
        capsys, [write_config(setup / "c.json", "maps.npz", model="UNet")], "unknown model 'UNet'", "ResUNet_CMB"
    )
    cfg = write_config(setup / "c.json", "maps.npz", optimizer="Adamm")
    expect_error(capsys, [cfg], "unknown optimizer 'Adamm'", "Adam, AdamW")
    expect_error(
        capsys, [write_config(setup / "c.json", "maps.npz", loss="mse2")], "unknown loss 'mse2'", "mean_squared_error"
    )


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="TensorBoard is installed")
def test_tensorboard_logs_need_tensorboard(setup, capsys):
    cfg = write_config(setup / "c.json", "maps.npz", tensboard_log=True)
    expect_error(capsys, [cfg], "tensboard_log needs TensorFlow and TensorBoard installed")


def test_optimizer_names_are_case_insensitive():
    assert type(tbuild.make_optimizer("rmsprop", 0.01)).__name__ == "RMSprop"


def test_names_must_match_the_model(setup, capsys):
    cfg = write_config(setup / "c.json", "maps.npz", target_used={"tau": "tru_tau", "phi": "tru_kappa"})
    expect_error(capsys, [cfg], "target_used names ['phi', 'tau'] do not match", "['kappa', 'tau', 'unle']")


def test_bad_command_line_overrides(setup, capsys):
    expect_error(capsys, [write_config(setup / "c.json", "maps.npz"), "--epochs", "0"], "epochs must be a positive")
    expect_error(capsys, [setup / "c.json", "--resume"], "nothing to resume")


@pytest.mark.parametrize("minutes", ["0", "-5", "nan"])
def test_time_limit_must_be_positive(setup, capsys, minutes):
    cfg = write_config(setup / "c.json", "maps.npz", output_dir="limited")
    expect_error(capsys, [cfg, "--time-limit", minutes], "--time-limit must be a positive number of minutes")
    assert not (setup / "limited").exists()


def test_script_runs_from_the_training_folder(setup):
    """`python main.py ../config.json` inside training/ works; bad data fails before any backend loads."""
    cfg = write_config(setup / "c.json", "nothere.npz")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "main.py", os.path.relpath(cfg, REPO_ROOT / "training")],
        cwd=REPO_ROOT / "training",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    missing = (setup / "nothere.npz").resolve()
    # Exactly one line: the check ran before Keras (and TensorFlow's start-up messages) loaded.
    assert proc.stderr == f"error: data file '{missing}' does not exist (set data_path in the config)\n"
    helped = subprocess.run(
        [sys.executable, "training/main.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, env=env,
        timeout=120,
    )
    assert helped.returncode == 0 and "--resume" in helped.stdout and "--output-dir" in helped.stdout


@pytest.mark.slow
def test_end_to_end_with_the_pipeline_cli(tmp_path):
    """Simulate a few dozen 32x32 map sets with datapipe/datapipeline.py, then train 2 epochs with the CLI."""
    pipeline = REPO_ROOT / "datapipe" / "datapipeline.py"
    if not pipeline.is_file():
        pytest.skip("datapipe/datapipeline.py is not present yet")
    maps = tmp_path / "map_sets32.npz"
    sim = subprocess.run(
        [
            sys.executable,
            str(pipeline),
            "--nsims",
            "40",
            "--npix",
            "32",
            "--seed",
            "11",
            "--taper-deg",
            "0",
            "--output",
            str(maps),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sim.returncode == 0, sim.stderr[-2000:]
    cfg = write_config(tmp_path / "config.json", maps.name, output_dir="out", imagesize=32, epochs=5)
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "training" / "main.py"),
            str(cfg),
            "--epochs",
            "2",
            "--output-dir",
            str(tmp_path / "cli"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "cli"
    for name in OUTPUT_FILES:
        assert (out / name).is_file(), name
    assert not (tmp_path / "out").exists()  # --output-dir overrides the config
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_run"] == 2 and summary["maps"] == {"train": 32, "val": 4, "test": 4}
    settings = json.loads((out / "data_settings.json").read_text())  # from the pipeline file's metadata
    assert (settings["npix"], settings["pixel_arcmin"], settings["taper_deg"]) == (32, 2.34375, 0)
    with np.load(out / "predictions.npz") as p, np.load(out / "test_data.npz") as t, np.load(maps) as m:
        assert p["tau_pred"].shape == (4, 32, 32) and np.isfinite(p["tau_pred"]).all()
        assert {"q_len_test", "rec_kappa_test", "rec_tau_test"} <= set(t.files)
        with np.load(out / "split_indices.npz") as s:
            np.testing.assert_array_equal(t["tru_tau_test"], m["tru_tau"][s["test"]])


# ---------------------------------------------------------------------------------------------------------------
# Where the run writes: checked before the data load; another run's folder needs --overwrite; full disks.


def _no_data_load(monkeypatch):
    """Make any data check or load fail loudly: the errors below must come before them."""
    from training.data import sources

    def loaded(cfg):
        raise AssertionError("the data were read before the output folder was checked")

    monkeypatch.setattr(sources, "check_data", loaded)
    monkeypatch.setattr(sources, "load_data", loaded)


@pytest.mark.parametrize("where", ["proc", "file", "unwritable"])
def test_an_output_dir_that_cannot_be_written_fails_before_the_data_load(setup, capsys, monkeypatch, where):
    cfg = write_config(setup / "c.json", "maps.npz")
    if where == "proc":
        out, fragment = "/proc/self/sub/out", "cannot be made: /proc/"
    elif where == "file":
        (setup / "plain").write_text("a file")
        out, fragment = str(setup / "plain" / "out"), "plain is not a folder"
    else:  # an existing folder the user may not write to (simulated: the test may run as root)
        from datapipe import diskio

        (setup / "ro").mkdir()
        out, fragment = str(setup / "ro"), "cannot write to output folder"

        def refuse(*args, dir=None, **kwargs):
            raise PermissionError(13, "Permission denied", str(dir))

        monkeypatch.setattr(diskio.tempfile, "mkstemp", refuse)
    _no_data_load(monkeypatch)
    expect_error(capsys, [cfg, "--output-dir", out], fragment, "choose another --output-dir")


def test_a_new_run_does_not_mix_with_another_runs_files(run, tmp_path, capsys, monkeypatch):
    """A finished run's folder is refused without --resume / --overwrite; with --overwrite the old files go only once
    the new run has its data and model; a full disk while writing the outputs is one line, and --resume finishes."""
    out = tmp_path / "out"
    shutil.copytree(run, out)
    (out / "logs").mkdir()  # an old run's TensorBoard logs: the new run writes none
    (out / "logs" / "events").write_bytes(b"old logs")
    (out / "notes.txt").write_text("the user's own file")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    # The new runs train the small stand-in network: what is tested is the handling of the folder.
    cfg = write_config(tmp_path / "tiny.json", run.parent.parent / "maps.npz", output_dir=out, epochs=EPOCHS,
                       model="tiny_model")

    _no_data_load(monkeypatch)
    expect_error(capsys, [cfg, "--output-dir", out], "holds another training run (training.log", "--overwrite")
    expect_error(capsys, [cfg, "--output-dir", out, "--resume", "--overwrite"], "give only one")
    monkeypatch.undo()

    # A new run that fails once the data are loaded (output names unknown to the model) leaves the old run whole.
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(json.loads(cfg.read_text()) | {"target_used": {"tau": "tru_tau", "phi": "tru_kappa"}}))
    expect_error(capsys, [bad, "--output-dir", out, "--overwrite"], "do not match")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before

    # --overwrite: the old files go; the disk fills up while the predictions are written: one line, exit 1.
    from datapipe import writer

    def full(self, name, start, chunk):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(writer.NpzWriter, "_write_chunk", full)
        assert tmain.main([str(cfg), "--output-dir", str(out), "--overwrite", "--epochs", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: No space left on device (") and "--resume" in err[0], err
    assert not (out / "logs").exists() and not (out / "summary.json").exists()
    assert not [p for p in out.iterdir() if p.name.startswith((".partial", ".predictions"))]
    assert (out / "notes.txt").read_text() == "the user's own file"
    # The checkpoint of the completed epoch was kept: --resume writes the outputs.
    assert tmain.main([str(cfg), "--output-dir", str(out), "--resume", "--epochs", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_run"] == 1 and (out / "predictions.npz").is_file()


@pytest.mark.parametrize(("damage", "fragment"), [("delete", "is missing"), ("truncate", "is damaged")])
def test_resume_with_a_missing_or_damaged_checkpoint_file(run, tmp_path, capsys, monkeypatch, damage, fragment):
    out = tmp_path / "out"
    shutil.copytree(run, out)
    target = out / "checkpoint" / "optimizer.npz"
    if damage == "delete":
        target.unlink()
    else:
        target.write_bytes(target.read_bytes()[:200])
    _no_data_load(monkeypatch)
    cfg = run.parent.parent / "config.json"
    expect_error(capsys, [cfg, "--output-dir", out, "--resume", "--epochs", "4"], f"'{target}' {fragment}")


def test_errors_after_keras_loads_are_still_one_line(setup):
    """TensorFlow's start-up messages are hidden: an error found once the backend is loaded is the only line."""
    cfg = write_config(setup / "c.json", "maps.npz", target_used={"tau": "tru_tau", "phi": "tru_kappa"})
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONPATH")}
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "training" / "main.py"), str(cfg)], capture_output=True,
                          text=True, env=env, timeout=300, cwd=setup)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: target_used names ['phi', 'tau'] do not match") and proc.stderr.count(
        "\n") == 1, proc.stderr


def test_a_diverging_run_is_one_line_exit_2_and_writes_no_model(setup, capsys, monkeypatch):
    monkeypatch.setitem(resunet.MODELS, "tiny_model", tiny_model)
    cfg = write_config(setup / "c.json", "maps.npz", model="tiny_model", epochs=1, learning_rate=1e30)
    assert tmain.main([str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: training diverged: the loss is "), err
    assert "lower learning_rate (now 1e+30)" in err[0]
    assert not (setup / "out" / "model.keras").exists() and not (setup / "out" / "summary.json").exists()


class _NotHandled(Exception):
    pass


def test_sigterm_before_the_training_loop_is_one_line_and_exit_143(setup, capsys, monkeypatch):
    """While the data load and Keras start (before the loop's checkpointing handler), SIGTERM is the one-line notice
    with exit 143, not a silent kill."""
    import signal
    import time

    import training.data.sources

    def terminated(cfg):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    def not_handled(signum, frame):
        raise _NotHandled  # what the test sees if main leaves SIGTERM to its previous handler

    monkeypatch.setattr(training.data.sources, "check_data", terminated)
    previous = signal.signal(signal.SIGTERM, not_handled)
    try:
        status = tmain.main([str(write_config(setup / "c.json", "maps.npz"))])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert status == 143
    assert capsys.readouterr().err.splitlines() == ["interrupted (SIGTERM) before a checkpoint could be saved"]
    assert not (setup / "out").exists()


def test_a_full_disk_before_the_first_checkpoint_says_to_start_again(setup, capsys, monkeypatch):
    """No checkpoint to --resume from yet: the error line says so (it used to promise one)."""

    def full(output_dir, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(output_dir))

    monkeypatch.setattr(tcheckpoint, "save_checkpoint", full)
    cfg = write_config(setup / "c.json", "maps.npz", model="tiny_model", epochs=1)
    assert tmain.main([str(cfg)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: No space left on device ("), err
    assert "no epoch was checkpointed yet" in err[0] and "--overwrite" in err[0] and "--resume" not in err[0]
