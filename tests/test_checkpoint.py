"""Tests of training/checkpoint.py: per-epoch checkpoints, --resume, and clean stops on SIGINT / SIGTERM."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from training_helpers import tiny_model, write_config, write_map_file

from training import loop as tloop
from training import main as tmain
from training import resunet
from training.checkpoint_files import checkpoint_dir, has_checkpoint

REPO_ROOT = Path(__file__).resolve().parent.parent
STEPS_PER_EPOCH = 8  # 32 training maps in batches of 4
EPOCHS_NEVER_REACHED = 100_000


def log_epochs(out: Path) -> list[int]:
    with open(out / "training.log") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def state(out: Path) -> dict:
    return json.loads((out / "checkpoint" / "state.json").read_text())


def optimizer_iterations(out: Path) -> int:
    with np.load(out / "checkpoint" / "optimizer.npz") as f:
        paths = list(f["paths"])
        return int(f[f"v{paths.index(next(p for p in paths if p.endswith('/iteration')))}"])


def test_sigterm_saves_a_checkpoint_and_resume_continues(tmp_path, capsys, monkeypatch):
    """SIGTERM during training: exit 143 with a checkpoint; --resume then continues from it and completes the run.

    training/main.py runs as a script (through tests/tiny_main.py, which registers the small stand-in network)."""
    monkeypatch.setitem(resunet.MODELS, "tiny_model", tiny_model)
    write_map_file(tmp_path / "maps.npz", nsims=40, npix=16, seed=0)
    # Far more epochs (and patience) than could ever run out before the signal: whenever it comes, the run is still
    # training at its initial learning rate.
    cfg = write_config(tmp_path / "config.json", "maps.npz", output_dir="out", epochs=EPOCHS_NEVER_REACHED,
                       haltpatience=EPOCHS_NEVER_REACHED, lrpatience=EPOCHS_NEVER_REACHED, model="tiny_model")
    out = tmp_path / "out"
    with open(tmp_path / "stdout.txt", "w") as stdout, open(tmp_path / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "tests" / "tiny_main.py"), str(cfg)], stdout=stdout, stderr=stderr
        )
        try:
            # The trigger is a condition, not a clock: the first checkpoint is on disk (so the signal handler is in
            # place and there is a state to save). The deadline only bounds a run that never gets there.
            deadline = time.monotonic() + 600
            while not has_checkpoint(out) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()[-2000:]
            assert has_checkpoint(out), "no checkpoint after 600 s: " + (tmp_path / "stderr.txt").read_text()[-2000:]
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    err = (tmp_path / "stderr.txt").read_text()
    assert rc == 128 + signal.SIGTERM, err[-2000:]
    assert "interrupted: SIGTERM received" in err and "continue with --resume" in err
    assert "Traceback" not in err
    st = state(out)
    done, iterations = st["epoch"], optimizer_iterations(out)
    assert 1 <= done < EPOCHS_NEVER_REACHED and not st["finished"]
    assert iterations >= done * STEPS_PER_EPOCH  # the weights may be from within the interrupted epoch
    assert st["early_stopping"]["best"] is not None and st["learning_rate"] == pytest.approx(1e-3)
    assert log_epochs(out) == list(range(done))
    assert not (out / "summary.json").exists()

    # Resume for one more epoch: the optimizer state continues from the checkpoint.
    assert tmain.main([str(cfg), "--resume", "--epochs", str(done + 1)]) == 0
    assert log_epochs(out) == list(range(done + 1))
    assert optimizer_iterations(out) == iterations + STEPS_PER_EPOCH
    st = state(out)
    assert st["finished"] and st["epoch"] == done + 1 and (out / "checkpoint" / "best_weights.npz").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_run"] == done + 1 and summary["total_wall_time_s"] > summary["wall_time_s"] > 0

    # A finished run has nothing to resume; a changed config is refused.
    before = (out / "training.log").read_text()
    capsys.readouterr()
    assert tmain.main([str(cfg), "--resume", "--epochs", str(done + 1)]) == 0
    assert f"already finished after {done + 1} epochs" in capsys.readouterr().out
    assert (out / "training.log").read_text() == before
    other = cfg.with_name("changed.json")
    other.write_text(json.dumps(json.loads(cfg.read_text()) | {"seed": 8}))
    assert tmain.main([str(other), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot resume: config key 'seed' is 8 but the checkpoint was made with 7;")


def test_checkpoint_falls_back_to_the_swapped_out_copy(tmp_path):
    assert not has_checkpoint(tmp_path)
    (tmp_path / "checkpoint.old").mkdir()
    (tmp_path / "checkpoint.old" / "state.json").write_text("{}")
    assert has_checkpoint(tmp_path) and checkpoint_dir(tmp_path) == tmp_path / "checkpoint.old"
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "state.json").write_text("{}")
    assert checkpoint_dir(tmp_path) == tmp_path / "checkpoint"


def test_log_is_truncated_to_the_checkpointed_epochs(tmp_path):
    log = tmp_path / "training.log"
    log.write_text("epoch,loss\n0,1.0\n1,0.5\n2,0.4\n")
    tloop._truncate_log(log, 2)
    assert log.read_text() == "epoch,loss\n0,1.0\n1,0.5\n"


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    import keras

    from training import checkpoint_files
    from training.checkpoint import RunState
    from training.resunet import ResUNet_CMB

    model = ResUNet_CMB({"imagesize": 16, "dropval": 0.3})
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    first = checkpoint_files.save_checkpoint(tmp_path, model, RunState(epoch=1), None)
    saved = (first / "weights.npz").read_bytes()
    model.set_weights([w + 1 for w in model.get_weights()])
    real = checkpoint_files.save_npz
    calls = {"n": 0}

    def fill_up(path, arrays):
        calls["n"] += 1
        if calls["n"] == 3:  # weights and RNG states written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, arrays)

    monkeypatch.setattr(checkpoint_files, "save_npz", fill_up)
    with pytest.raises(OSError, match="No space left"):
        checkpoint_files.save_checkpoint(tmp_path, model, RunState(epoch=2), None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # no checkpoint.partial left
    assert (tmp_path / "checkpoint" / "weights.npz").read_bytes() == saved
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["epoch"] == 1
    # The kept checkpoint restores the weights of epoch 1 into a fresh model.
    fresh = ResUNet_CMB({"imagesize": 16, "dropval": 0.3})
    fresh.compile(optimizer="adam", loss="mse")
    checkpoint_files.load_checkpoint(tmp_path, fresh)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(fresh.weights[0]), np.load(first / "weights.npz")["w0"])


GOOD_STATE = {"epoch": 3, "learning_rate": 0.001, "finished": False, "wall_time_s": 12.5, "backend": "tensorflow",
              "config": {"epochs": 5}, "early_stopping": {"wait": 0, "best": 1.5, "best_epoch": 2, "stopped_epoch": 0},
              "reduce_lr": {"wait": 1, "best": None, "cooldown_counter": 0}}


@pytest.mark.parametrize(("key", "value", "fragment"), [
    ("epoch", "x", "'epoch' is 'x', not an integer >= 0"),
    ("epoch", -1, "'epoch' is -1"),
    ("epoch", True, "'epoch' is True"),
    ("learning_rate", float("nan"), "'learning_rate' is nan, not a positive number"),
    ("learning_rate", None, "'learning_rate' is None"),
    ("finished", "yes", "'finished' is 'yes', not true or false"),
    ("wall_time_s", -3, "'wall_time_s' is -3"),
    ("config", "zz", "'config' is 'zz', not an object"),
    ("early_stopping", {"wait": "0"}, "'early_stopping' is {'wait': '0'}"),
])
def test_a_state_json_with_values_of_the_wrong_kind_is_a_damaged_checkpoint(tmp_path, key, value, fragment):
    from training.checkpoint import read_state
    from training.config import TrainingError

    checkpoint_dir(tmp_path).mkdir(parents=True)
    state_file = checkpoint_dir(tmp_path) / "state.json"
    state_file.write_text(json.dumps(GOOD_STATE))
    assert read_state(tmp_path).epoch == 3
    state_file.write_text(json.dumps({**GOOD_STATE, key: value}))
    with pytest.raises(TrainingError, match="is damaged: ") as caught:
        read_state(tmp_path)
    assert fragment in str(caught.value) and "--overwrite" in str(caught.value)
