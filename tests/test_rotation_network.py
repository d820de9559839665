"""The second paper end to end: ResUNet_CMB_4out trained on rotated maps, from a file and on the fly, and evaluated
against the rotation QE. Tiny sizes (32² maps, one epoch): the network learns nothing; the machinery is checked."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from datapipe.runner import run_simulation
from datapipe.settings import SimulationSettings
from training import evaluate as evaluate_cli
from training import main as tmain
from training.config import load_config

REPO_ROOT = Path(__file__).resolve().parent.parent
NPIX = 32
MAPS = ("q_len", "u_len", "e_unl", "tru_kappa", "tru_tau", "tru_alpha", "rec_kappa", "rec_tau", "rec_alpha",
        "wf_rec_alpha")
#: The second paper's simulation: rotation amplitude 0.12° and null map sets with α = 0 only.
PAPER2 = {"alpha_amplitude_deg": 0.12, "null_fields": ["alpha"]}
TINY = {"imagesize": NPIX, "batch_size": 4, "epochs": 1, "learning_rate": 1e-3, "dropval": 0.0, "seed": 3}


def _config(folder: Path, **changes) -> Path:
    """config_4output.json of the repository with tiny sizes and the given changes."""
    cfg = json.loads((REPO_ROOT / "config_4output.json").read_text())
    cfg.update(TINY, output_dir="net", **changes)
    path = folder / "config.json"
    path.write_text(json.dumps(cfg))
    return path


def test_the_four_output_config_is_the_paper_one():
    cfg = load_config(REPO_ROOT / "config_4output.json")
    paper1 = load_config(REPO_ROOT / "config.json")
    assert cfg.model == "ResUNet_CMB_4out" and cfg.target_used["cbf"] == "tru_alpha"
    assert {k: v for k, v in cfg.target_used.items() if k != "cbf"} == paper1.target_used
    assert cfg.feat_used == paper1.feat_used and "rec_alpha" in cfg.trace_used
    for key in ("learning_rate", "batch_size", "epochs", "haltpatience", "lrpatience", "lrfactordelta", "dropval",
                "optimizer", "loss", "imagesize", "training_split", "val_split", "test_split"):
        assert getattr(cfg, key) == getattr(paper1, key), key
    from training.data.simsource import parse_simulation_block

    settings, _ = parse_simulation_block(cfg.simulation, cfg)
    assert settings.alpha_amplitude_deg == 0.12 and settings.null_fields == ("alpha",) and "tru_alpha" in settings.maps


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("four_outputs")
    settings = SimulationSettings(npix=NPIX, taper_deg=0.3, seed=1, maps=MAPS, qe_mean_field_sims=8,
                                  alpha_amplitude_deg=PAPER2["alpha_amplitude_deg"], null_fields=("alpha",))
    run_simulation(settings, folder / "maps_alpha.npz", 20, progress=False)
    (folder / "test").mkdir()
    run_simulation(settings.replace(seed=2), folder / "test" / "maps_alpha.npz", 12, progress=False)
    splits = {"training_split": 0.6, "val_split": 0.2, "test_split": 0.2}
    assert tmain.main([str(_config(folder, data_path="maps_alpha.npz", **splits))]) == 0
    return folder


def test_trains_from_a_file(trained):
    out = trained / "net"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_run"] == 1
    with np.load(out / "predictions.npz") as p, np.load(out / "map_stds.npz") as s:
        assert sorted(p.files) == ["cbf_pred", "kappa_pred", "tau_pred", "unle_pred"]
        assert np.all(np.isfinite(p["cbf_pred"])) and "tru_alpha_std" in s.files


def test_evaluation_reports_r_ell_of_alpha_against_the_rotation_qe(trained):
    out = trained / "eval"
    argv = ["--model-dir", str(trained / "net"), "--data", str(trained / "test" / "maps_alpha.npz"), "--output",
            str(out), "--batch-size", "4"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert evaluate_cli.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    fields = metrics["fields"]
    assert list(fields) == ["tau", "kappa", "unle", "cbf"]
    alpha = fields["cbf"]
    assert alpha["label"] == "α" and alpha["units"] == "rad" and alpha["truth"] == "tru_alpha"
    assert sorted(alpha["qe"]) == ["rec_alpha", "wf_rec_alpha"]
    # The second paper's null map sets have α = 0 only: they are left out of α's statistics, not of κ's.
    assert alpha["null_maps_left_out"] > 0 and fields["kappa"]["null_maps_left_out"] == 0
    assert alpha["nmaps"] + alpha["null_maps_left_out"] == 12
    for row in (alpha["network"], alpha["qe"]["rec_alpha"]):
        r = np.array([np.nan if v is None else v for v in row["r"]], dtype=float)
        assert np.isfinite(r).sum() > 10 and np.nanmax(np.abs(r)) <= 1
    assert any(line.startswith("α") and "QE rec_alpha" in line for line in stdout.getvalue().splitlines())


@pytest.mark.slow  # a few minutes on a loaded 2-core CPU, like the other on-the-fly run (tests/test_simsource.py)
def test_trains_on_the_fly_with_rotation(tmp_path):
    simulation = {**PAPER2, "npix": NPIX, "taper_deg": 0.3, "steps_per_epoch": 2, "val_maps": 4, "test_maps": 4,
                  "pilot_maps": 8, "workers": 1, "qe_mean_field_sims": 4, "seed": 5}
    assert tmain.main([str(_config(tmp_path, data_path="simulate", simulation=simulation))]) == 0
    out = tmp_path / "net"
    with np.load(out / "test_data.npz") as t, np.load(out / "predictions.npz") as p:
        assert {"tru_alpha_test", "rec_alpha_test"} <= set(t.files) and p["cbf_pred"].shape == (4, NPIX, NPIX)
        # The test set is the fixed stream-3 simulation with rotation (α in radians: rms ~ 0.2°).
        assert 1e-4 < np.std(t["tru_alpha_test"]) < 1e-2
    assert "rotation A = 0.12 deg" in json.loads((out / "summary.json").read_text())["data_source"]
