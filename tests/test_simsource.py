"""Training on fresh simulations streamed from the pipeline (``"data_path": "simulate"``)."""

import json
import shutil

import numpy as np
import pytest
from training_helpers import tiny_model

from datapipe.fields import map_set_rng
from datapipe.settings import SimulationSettings
from datapipe.simulate import MapSetSimulator
from training import main as tmain
from training import resunet
from training.config import TrainingError, validate_config
from training.data.simsource import PILOT_STREAM, TEST_STREAM, VAL_STREAM, parse_simulation_block
from training.data.standardization import Standardization

SIM = {"npix": 32, "taper_deg": 0.3, "steps_per_epoch": 3, "val_maps": 8, "test_maps": 8, "pilot_maps": 16,
       "workers": 2, "qe_mean_field_sims": 8, "seed": 5}
# The stand-in network of tests/training_helpers.py: these tests are about the simulation stream, not ResUNet-CMB.
TINY = {"data_path": "simulate", "imagesize": 32, "batch_size": 4, "epochs": 2, "learning_rate": 1e-3, "seed": 3,
        "dropval": 0.0, "model": "tiny_model", "simulation": SIM}
OUTPUTS = ["training.log", "map_means.npz", "map_stds.npz", "model.keras", "model.weights.h5",
           "model_architecture.json", "predictions.npz", "test_data.npz", "summary.json", "checkpoint/state.json"]


def write_config(folder, **changes):
    cfg = {**TINY, "output_dir": "out", **changes}
    path = folder / "config.json"
    path.write_text(json.dumps(cfg))
    return path


@pytest.fixture(scope="module", autouse=True)
def _tiny_model_registered():
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(resunet.MODELS, "tiny_model", tiny_model)
        yield


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("otf")
    cfg = write_config(folder)
    assert tmain.main([str(cfg)]) == 0
    return folder


def test_a_tiny_on_the_fly_run_writes_every_output(run):
    out = run / "out"
    for name in OUTPUTS:
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_run"] == 2 and summary["maps"] == {"train": 12, "val": 8, "test": 8}
    assert "on-the-fly" in summary["data_source"]
    with np.load(out / "predictions.npz") as p, np.load(out / "test_data.npz") as t:
        assert p["kappa_pred"].shape == (8, 32, 32)
        assert {"q_len_test", "tru_kappa_test", "rec_kappa_test", "rec_tau_test"} <= set(t.files)
    # The test set is the fixed stream-3 simulation, in physical units.
    settings = SimulationSettings(npix=32, taper_deg=0.3, seed=5, qe_mean_field_sims=8, maps=("q_len",))
    expected = MapSetSimulator(settings).simulate(np.arange(8), TEST_STREAM)["q_len"]
    with np.load(out / "test_data.npz") as t:
        np.testing.assert_array_equal(t["q_len_test"], expected)
    with np.load(out / "map_stds.npz") as s:
        assert set(s.files) == {"q_len_std", "u_len_std", "e_unl_std", "tru_tau_std", "tru_kappa_std"}


def _stream(**kw):
    from training.data.simstream import SimulationStream

    settings = SimulationSettings(npix=32, taper_deg=0.3, seed=9, maps=("q_len", "u_len", "tru_kappa"))
    std = Standardization({"q_len": 0.0, "u_len": 0.0, "tru_kappa": 0.0}, {"q_len": 3.0, "u_len": 3.0,
                                                                          "tru_kappa": 0.05})
    args = dict(batch_size=4, steps_per_epoch=3, workers=0)
    args.update(kw)
    return SimulationStream(settings, {"qlen": "q_len", "ulen": "u_len"}, {"kappa": "tru_kappa"}, std, **args)


def test_stream_is_deterministic_differs_between_epochs_and_matches_the_pipeline():
    a, b = _stream(), _stream(workers=2, prefetch=3)
    try:
        first = [a[i][0]["qlen"] for i in range(3)]
        np.testing.assert_array_equal(first[1], b[1][0]["qlen"])  # processes and prefetching change nothing
        a.on_epoch_end()
        second = a[0][0]["qlen"]
        assert not np.allclose(second, first[0])
        # Batch 0 of epoch 1 holds map sets 12..15 of the pipeline's stream 0.
        pipeline = MapSetSimulator(a.settings).simulate(np.arange(12, 16))["q_len"]
        np.testing.assert_allclose(second[..., 0], pipeline / 3.0, rtol=1e-6)
    finally:
        b.close()


def test_resume_continues_the_sequence():
    straight = _stream()
    straight.on_epoch_end()
    resumed = _stream()
    resumed.set_epoch(1)
    np.testing.assert_array_equal(straight[2][1]["kappa"], resumed[2][1]["kappa"])


def test_validation_and_test_seeds_never_overlap_the_training_stream():
    train_draws = {tuple(map_set_rng(5, i, 0).random(4)) for i in range(2000)}
    for stream in (VAL_STREAM, TEST_STREAM, PILOT_STREAM):
        assert not train_draws & {tuple(map_set_rng(5, i, stream).random(4)) for i in range(2000)}


def test_resumed_on_the_fly_run_matches_an_uninterrupted_one(run, tmp_path):
    cfg = write_config(tmp_path, epochs=1)
    assert tmain.main([str(cfg)]) == 0
    assert tmain.main([str(cfg), "--resume", "--epochs", "2"]) == 0
    with open(run / "out" / "training.log") as f:
        reference = f.read().splitlines()
    with open(tmp_path / "out" / "training.log") as f:
        resumed = f.read().splitlines()
    assert len(resumed) == len(reference) == 3
    ref_loss = [float(x) for x in reference[-1].split(",")[1:]]
    got_loss = [float(x) for x in resumed[-1].split(",")[1:]]
    np.testing.assert_allclose(got_loss, ref_loss, rtol=1e-3)


@pytest.mark.parametrize(
    "simulation,fragment",
    [
        ({"null_fraction": 1.5}, "null fraction must be a number in [0, 1]"),
        ({"npix": 64}, "differs from imagesize"),
        ({"noise_uk_arcmn": 1}, "did you mean 'noise_uk_arcmin'"),
        ({"steps_per_epoch": 0}, "steps_per_epoch must be an integer >= 1"),
        ({"val_maps": 2}, "fewer than one batch"),
        ({"pixel_arcmin": -1}, "pixel size must be a number in (0, 60] arcmin"),
        # Non-finite, wrong-typed or absurd values get the pipeline's own one-line messages.
        ({"taper_deg": float("inf")}, "taper width must be a number in [0, 30] degrees (got inf)"),
        ({"pixel_arcmin": float("nan")}, "pixel size must be a number in (0, 60] arcmin (got nan)"),
        ({"noise_uk_arcmin": 1e30}, "noise level must be a number in [0, 10000] uK-arcmin"),
        ({"seed": True}, "seed must be an integer"),
        ({"beam_arcmin": 30}, "erases the quadratic estimators' CMB range"),
        ({"alpha_amplitude_deg": -1}, "rotation amplitude must be a number in [0, 45] degrees"),
        ({"null_fields": ["alpha", "tua"]}, "unknown null field 'tua' (did you mean tau?)"),
        ({"null_fields": 1}, "null fields must be names"),
    ],
)
def test_bad_simulation_settings_exit_2_with_the_pipelines_message(tmp_path, capsys, simulation, fragment):
    cfg = write_config(tmp_path, simulation={**SIM, **simulation})
    assert tmain.main([str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [("workers", 10**6, "simulation.workers must be an integer >= 1 and <= "),
     ("prefetch", 10**9, "simulation.prefetch must be an integer >= 1 and <= 4096"),
     ("steps_per_epoch", float("inf"), "simulation.steps_per_epoch must be an integer")],
)
def test_stream_sizes_are_bounded(key, value, fragment):
    """Checked without starting anything (a million workers would be started one per submitted batch)."""
    cfg = validate_config({"data_path": "simulate", "imagesize": 32, "batch_size": 4})
    with pytest.raises(TrainingError, match=fragment):
        parse_simulation_block({**SIM, key: value}, cfg)


def test_simulation_block_defaults_follow_the_pipeline():
    cfg = validate_config({"data_path": "simulate"})
    settings, opts = parse_simulation_block(None, cfg)
    assert settings.npix == 128 and settings.pixel_arcmin == 2.34375 and settings.null_fraction == 0.2
    assert settings.maps == tuple(cfg.arrays) and opts.steps_per_epoch == 1000
    assert settings.alpha_amplitude_deg == 0 and settings.null_fields == ("tau", "kappa")
    rotated, _ = parse_simulation_block({"alpha_amplitude_deg": 0.12, "null_fields": ["alpha"]}, cfg)
    assert rotated.alpha_amplitude_deg == 0.12 and rotated.null_fields == ("alpha",)
    with pytest.raises(TrainingError, match="simulation must be an object"):
        validate_config({"data_path": "simulate", "simulation": [1, 2]})


def test_time_limit_stops_early_and_writes_outputs(tmp_path):
    cfg = write_config(tmp_path, epochs=50, simulation={**SIM, "workers": 1})
    assert tmain.main([str(cfg), "--time-limit", "0.01"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["epochs_run"] == 1
    shutil.rmtree(tmp_path / "out")


STREAM_UNTIL_CTRL_C = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from datapipe.settings import SimulationSettings
from training.data.simstream import SimulationStream
from training.data.standardization import Standardization

settings = SimulationSettings(npix=32, taper_deg=0.3, seed=9, maps=("q_len", "tru_kappa"))
std = Standardization({"q_len": 0.0, "tru_kappa": 0.0}, {"q_len": 3.0, "tru_kappa": 0.05})
stream = SimulationStream(settings, {"qlen": "q_len"}, {"kappa": "tru_kappa"}, std, batch_size=2,
                          steps_per_epoch=50, workers=2, prefetch=6)
try:
    stream[0]
    for future in list(stream._pending.values()):  # the prefetched batches: then the workers wait for work
        future.result()
    Path(sys.argv[2]).write_text("workers waiting")
    time.sleep(300)
except KeyboardInterrupt:
    stream.close()
    print("stopped")
"""


def test_ctrl_c_reaches_the_training_process_not_the_simulation_workers(tmp_path):
    """The terminal sends Ctrl-C to the whole process group: the workers ignore it (waiting for work, they used to
    print a KeyboardInterrupt traceback each); the training process stops them."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    marker = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", STREAM_UNTIL_CTRL_C, str(Path(__file__).parent.parent),
                             str(marker)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.communicate(timeout=60)[1][-2000:]
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and out.strip() == "stopped"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
