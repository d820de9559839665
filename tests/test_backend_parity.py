"""Backend independence: a tiny training run under JAX, and weights moved between JAX and TensorFlow.

The JAX side runs in a subprocess (the backend is fixed when Keras is imported). It trains with
``training/main.py`` and must not import TensorFlow. Its saved weights, loaded here under the test process's
backend (TensorFlow by default), must give the predictions it saved; and weights saved here must give the same
predictions under JAX.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from training_helpers import write_config, write_map_file

from training.data.standardization import Standardization
from training.resunet import ResUNet_CMB, load_model

REPO_ROOT = Path(__file__).resolve().parent.parent

JAX_SCRIPT = """
import json, runpy, sys
import numpy as np
cfg, main_py, tf_weights, inputs, out_npz = sys.argv[1:6]
sys.argv = [main_py, cfg]
try:
    runpy.run_path(main_py, run_name="__main__")
    rc = 0
except SystemExit as exc:
    rc = exc.code
import keras
from training.resunet import ResUNet_CMB
model = ResUNet_CMB({"imagesize": 16, "dropval": 0.3})
model.load_weights(tf_weights)
with np.load(inputs) as f:
    preds = model.predict({"qlen": f["qlen"], "ulen": f["ulen"]}, verbose=0)
np.savez(out_npz, **dict(zip(model.output_names, preds)))
print("PARITY " + json.dumps({"rc": rc, "backend": keras.backend.backend(), "tf": "tensorflow" in sys.modules}))
"""


@pytest.mark.slow  # the full network trained under JAX in a process of its own: ~1.5 min on a 2-core CPU
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_jax_run_and_cross_backend_weights(tmp_path):
    # Weights and predictions of an untrained model under this process's backend, for the JAX side to reproduce.
    keras.utils.set_random_seed(3)
    model = ResUNet_CMB({"imagesize": 16, "dropval": 0.3})
    rng = np.random.default_rng(3)
    x = {name: rng.standard_normal((3, 16, 16, 1), dtype=np.float32) for name in ("qlen", "ulen")}
    here = dict(zip(model.output_names, model.predict(x, verbose=0), strict=True))
    model.save_weights(tmp_path / "here.weights.h5")
    np.savez(tmp_path / "inputs.npz", **x)

    write_map_file(tmp_path / "maps.npz", nsims=40, npix=16, seed=0)
    cfg = write_config(tmp_path / "config.json", "maps.npz", output_dir="jax", epochs=1)
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(REPO_ROOT))
    args = [cfg, REPO_ROOT / "training" / "main.py", tmp_path / "here.weights.h5", tmp_path / "inputs.npz"]
    proc = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, *map(str, args), str(tmp_path / "there.npz")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("PARITY ")), None)
    assert line is not None, proc.stderr[-3000:]
    report = json.loads(line.removeprefix("PARITY "))
    assert report == {"rc": 0, "backend": "jax", "tf": False}, proc.stderr[-3000:]

    # This backend's weights give the same predictions under JAX.
    with np.load(tmp_path / "there.npz") as there:
        for name, pred in here.items():
            np.testing.assert_allclose(there[name], pred, rtol=1e-4, atol=1e-4 * np.abs(pred).max())

    # The JAX run's files load here and reproduce its predictions (physical units).
    out = tmp_path / "jax"
    assert json.loads((out / "summary.json").read_text())["backend"] == "jax"
    std = Standardization.from_npz(out / "map_means.npz", out / "map_stds.npz")
    with np.load(out / "test_data.npz") as f:
        x_test = {
            "qlen": std.apply("q_len", f["q_len_test"])[..., None],
            "ulen": std.apply("u_len", f["u_len_test"])[..., None],
        }
    targets = {"tau": "tru_tau", "unle": "e_unl", "kappa": "tru_kappa"}
    rebuilt = ResUNet_CMB({"imagesize": 16, "dropval": 0.0})
    rebuilt.load_weights(out / "model.weights.h5")
    with np.load(out / "predictions.npz") as saved:
        for loaded in (rebuilt, load_model(out / "model.keras")):
            preds = dict(zip(loaded.output_names, loaded.predict(x_test, verbose=0), strict=True))
            for name, array in targets.items():
                mine = std.invert(array, preds[name][..., 0])
                theirs = saved[f"{name}_pred"]
                np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())
