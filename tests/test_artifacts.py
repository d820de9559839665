"""Output files of a training run."""

import json
import subprocess
import sys

import keras

from training.artifacts import architecture_json, save_text
from training.metrics import RSquared
from training.resunet import ResUNet_CMB


def test_architecture_json_rebuilds_with_keras_alone(tmp_path):
    model = ResUNet_CMB({"imagesize": 16, "dropval": 0.0})
    model.compile(optimizer="adam", loss="mse", metrics={name: [RSquared(name="r2")] for name in model.output_names})
    path = save_text(tmp_path / "model_architecture.json", architecture_json(model))
    assert "compile_config" not in json.loads(path.read_text())
    # A fresh interpreter that never imports the project: plain Keras must rebuild the network.
    code = ("import keras, sys; m = keras.models.model_from_json(open(sys.argv[1]).read()); "
            "print(m.count_params(), ','.join(m.output_names))")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    count, names = result.stdout.strip().splitlines()[-1].split()
    assert int(count) == model.count_params() == 5_292_367
    assert names.split(",") == list(model.output_names)
    keras.backend.clear_session()
