"""Data-parallel training (training/distribution.py, ReplicaBatches): one step on two CPU devices equals one step on
one device with the same global batch, under TensorFlow (two logical CPUs, MirroredStrategy) and JAX (two host
devices, keras.distribution.DataParallel).

Each backend runs in a subprocess (the device split must precede the backend's start): a one-device run with
``batch_size`` 8 and a data-parallel run with ``batch_size`` 4 × 2 replicas, from the same initial weights, on a
training split of exactly one global batch, so that one epoch is one step. Plain SGD makes the update proportional
to the gradient (Adam would hide a gradient off by the replica count). The tolerances allow for float32 sums taken in
another order, amplified by batch normalization: measured here, the update differs by 5e-6 (TensorFlow) and 3e-4
(JAX) of its norm, the predictions by 1e-5 / 4e-4 of their standard deviation. The errors they guard against are
far larger: with per-replica batch statistics (TensorFlow without synchronization) the update differs by 16 %, the
predictions by 28 %, the validation loss by 5 %; gradients summed instead of averaged would double the update.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from training.config import TrainingError, validate_config
from training.data.batches import ReplicaBatches
from training.distribution import multi_worker_requested, setup_distribution, slurm_nodes

ROOT = Path(__file__).resolve().parent.parent

DRIVER = r'''
import csv, json, os, sys
from pathlib import Path

sys.path[:0] = [{root!r}, {tests!r}]
if os.environ["KERAS_BACKEND"] == "tensorflow":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from training_helpers import write_config, write_map_file

from training import loop as tloop
from training.config import load_config

folder = Path(sys.argv[1])
# 25 maps: 8 training (one global batch: one step), 8 validation, 9 test (the last test batch is padded).
write_map_file(folder / "maps.npz", nsims=25, npix=16)
splits = {{"training_split": 0.32, "val_split": 0.32, "test_split": 0.36}}
built, original = {{}}, tloop.build_model


def build_from_same_weights(cfg):
    model = original(cfg)
    init = folder / "init.npz"
    if not init.exists():
        np.savez(init, *model.get_weights())
    with np.load(init) as f:
        model.set_weights([f[f"arr_{{i}}"] for i in range(len(f.files))])
    built["model"] = model
    return model


tloop.build_model = build_from_same_weights
results = {{}}
for name, keys in (("single", {{"batch_size": 8}}), ("parallel", {{"batch_size": 4, "distribution": "data_parallel"}})):
    cfg = write_config(folder / f"{{name}}.json", "maps.npz", output_dir=name, epochs=1, optimizer="SGD",
                       learning_rate=0.01, **splits, **keys)
    summary = tloop.train(load_config(cfg))
    with open(folder / name / "training.log") as f:
        row = next(csv.DictReader(f))
    np.savez(folder / f"{{name}}_weights.npz", *built["model"].get_weights())
    results[name] = {{"loss": float(row["loss"]), "val_loss": float(row["val_loss"]),
                      "distribution": summary["distribution"], "global_batch": summary["global_batch_size"]}}
print("RESULTS " + json.dumps(results))
'''


def run_backend(backend: str, folder: Path, extra_env: dict[str, str]) -> dict:
    script = folder / "driver.py"
    script.write_text(DRIVER.format(root=str(ROOT), tests=str(ROOT / "tests")))
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "", **extra_env}
    proc = subprocess.run([sys.executable, str(script), str(folder)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULTS "))
    return json.loads(line.removeprefix("RESULTS "))


def relative_update_error(folder: Path) -> float:
    """‖Δw_parallel − Δw_single‖ / ‖Δw_single‖ over all weights, Δw = weights after the step − initial weights."""
    with np.load(folder / "init.npz") as w0, np.load(folder / "single_weights.npz") as w1, \
            np.load(folder / "parallel_weights.npz") as w2:
        keys = w0.files
        d1 = np.concatenate([(w1[k] - w0[k]).ravel() for k in keys]).astype(np.float64)
        d2 = np.concatenate([(w2[k] - w0[k]).ravel() for k in keys]).astype(np.float64)
    return float(np.linalg.norm(d2 - d1) / np.linalg.norm(d1))


def check_parity(folder: Path, results: dict, engine: str) -> None:
    single, parallel = results["single"], results["parallel"]
    assert parallel["distribution"]["engine"] == engine and parallel["distribution"]["replicas"] == 2
    assert parallel["global_batch"] == single["global_batch"] == 8
    assert parallel["loss"] == pytest.approx(single["loss"], rel=1e-5)  # first step: same weights, same batch
    assert relative_update_error(folder) < 3e-3  # the step itself
    assert parallel["val_loss"] == pytest.approx(single["val_loss"], rel=1e-3)  # after the step
    with np.load(folder / "single" / "predictions.npz") as p1, np.load(folder / "parallel" / "predictions.npz") as p2:
        assert sorted(p1.files) == sorted(p2.files)
        for key in p1.files:
            assert p1[key].shape == p2[key].shape == (9, 16, 16)  # the padded map was dropped
            np.testing.assert_allclose(p2[key], p1[key], rtol=0, atol=3e-3 * float(np.std(p1[key])))


@pytest.mark.slow
def test_tensorflow_mirrored_strategy_step_equals_single_device_step(tmp_path):
    results = run_backend("tensorflow", tmp_path, {})
    check_parity(tmp_path, results, "MirroredStrategy")


@pytest.mark.slow
def test_jax_data_parallel_step_equals_single_device_step(tmp_path):
    results = run_backend("jax", tmp_path, {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    check_parity(tmp_path, results, "DataParallel")


# ----------------------------------------------------------------------------------------------------------------
# Pieces


def test_distribution_key_is_validated():
    assert validate_config({}).distribution is None
    assert validate_config({"distribution": "data_parallel"}).distribution == "data_parallel"
    with pytest.raises(TrainingError, match='distribution must be null .* or "data_parallel", got \'mirrored\''):
        validate_config({"distribution": "mirrored"})


def test_torch_backend_is_refused_and_none_is_one_device():
    with pytest.raises(TrainingError, match="tensorflow and jax backends, not torch"):
        setup_distribution("data_parallel", "torch")
    one = setup_distribution(None, keras.backend.backend())
    assert one.replicas == 1 and one.is_chief and one.engine == "none"


def test_cluster_detection_from_the_environment():
    assert not multi_worker_requested({})
    assert multi_worker_requested({"SLURM_JOB_NUM_NODES": "2"}) and slurm_nodes({"SLURM_JOB_NUM_NODES": "4"}) == 4
    assert not multi_worker_requested({"SLURM_JOB_NUM_NODES": "1", "SLURM_NTASKS": "4"})
    tf_config = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}
    assert multi_worker_requested({"TF_CONFIG": json.dumps(tf_config)})
    assert multi_worker_requested({"KERAS_DISTRIBUTION_NUM_PROCESSES": "2"})
    with pytest.raises(TrainingError, match="TF_CONFIG is not valid JSON"):
        multi_worker_requested({"TF_CONFIG": "{"})


class _Batches(keras.utils.PyDataset):
    """Batches of ``sizes`` maps; map values are their running index."""

    def __init__(self, sizes):
        super().__init__()
        self.sizes = sizes
        self.last_batch_size = sizes[-1]
        self.epochs_ended = 0

    def __len__(self):
        return len(self.sizes)

    def __getitem__(self, i):
        start = sum(self.sizes[:i])
        x = np.arange(start, start + self.sizes[i], dtype=np.float32)[:, None]
        return {"q": x}, {"k": 2 * x}

    def on_epoch_end(self):
        self.epochs_ended += 1


def test_replica_batches_trim_pad_and_share():
    inner = _Batches([6, 6, 5])
    trimmed = ReplicaBatches(inner, 4)
    assert len(trimmed) == 3
    x, y = trimmed[2]
    np.testing.assert_array_equal(x["q"][:, 0], [12, 13, 14, 15])  # 5 -> 4 maps, the first ones kept
    np.testing.assert_array_equal(y["k"][:, 0], 2 * x["q"][:, 0])
    assert len(ReplicaBatches(_Batches([6, 6, 1]), 2)) == 2  # a last batch smaller than the replica count is dropped
    padded = ReplicaBatches(inner, 4, pad=True)
    np.testing.assert_array_equal(padded[2][0]["q"][:, 0], [12, 13, 14, 15, 16, 16, 16, 16])
    np.testing.assert_array_equal(padded[0][0]["q"][:, 0], [0, 1, 2, 3, 4, 5, 5, 5])
    shares = [ReplicaBatches(inner, 2, share=(k, 2))[1][0]["q"][:, 0] for k in range(2)]
    np.testing.assert_array_equal(np.concatenate(shares), np.arange(6, 12))
    trimmed.on_epoch_end()
    assert inner.epochs_ended == 1
    with pytest.raises(IndexError):
        trimmed[3]
