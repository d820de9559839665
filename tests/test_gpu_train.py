"""The GPU training script, run end to end on the CPU with its tiny dry-run configuration under JAX."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("jax")


@pytest.mark.slow
def test_dry_run_trains_evaluates_packs_and_unpacks(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(ROOT / "scripts" / "gpu_train.py"), "--dry-run", "--networks", "noiseless_netw",
           "--out", str(out), "--work", str(work), "--budget-min", "3", "--reserve-min", "1.5"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert "noiseless_netw.tar" in files and "gpu_run.json" in files
    parts = [f for f in files if f.startswith("noiseless_netw.weights.h5.part")]
    assert parts and all((out / f).stat().st_size <= 15 * 2**20 for f in parts)
    assert len(files) <= 8  # what the device returns
    report = json.loads((out / "gpu_run.json").read_text())
    assert report["exit"] == {"noiseless_netw": 0} and report["environment"]["backend"] == "jax"
    with tarfile.open(out / "noiseless_netw.tar") as tar:
        names = tar.getnames()
    for expected in ("config.json", "map_means.npz", "map_stds.npz", "model_architecture.json", "training.log",
                     "summary.json", "evaluation/metrics.json", "evaluation/map_comparison.png"):
        assert f"noiseless_netw/{expected}" in names, expected

    dest = tmp_path / "networks"
    unpack = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_unpack.py"), str(out), "--dest", str(dest)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert unpack.returncode == 0, unpack.stderr
    weights = dest / "noiseless_netw" / "model.weights.h5"
    assert weights.read_bytes() == (work / "noiseless_netw" / "model.weights.h5").read_bytes()
    # The shipped folder is a network folder evaluate.py can load.
    from training.evaluation.network import load_network

    net = load_network(dest / "noiseless_netw")
    assert set(net.outputs) == {"tau", "unle", "kappa"}
