"""Tests of training/config.py: defaults, validation, path resolution, error messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.config import DEFAULTS, TrainingConfig, TrainingError, load_config, validate_config

REPO_ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, obj: object, name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_repo_config_holds_exactly_the_paper_defaults():
    raw = json.loads((REPO_ROOT / "config.json").read_text())
    assert set(raw) == set(DEFAULTS)
    assert raw == DEFAULTS
    cfg = load_config(REPO_ROOT / "config.json")
    assert cfg.learning_rate == 0.25 and cfg.batch_size == 32 and cfg.epochs == 500 and cfg.imagesize == 128
    assert cfg.splits == (0.8, 0.1, 0.1)
    assert cfg.output_dir == (REPO_ROOT / "results" / "run_1").resolve()
    assert cfg.resolve(cfg.data_path) == REPO_ROOT / "datapipe" / "map_sets32.npz"


def test_missing_keys_take_defaults_and_arrays_are_listed_once(tmp_path):
    cfg = load_config(write(tmp_path, {"epochs": 3, "trace_used": ["rec_kappa", "q_len"]}))
    assert cfg.epochs == 3
    assert cfg.model == "ResUNet_CMB" and cfg.dropval == 0.3 and cfg.seed == 43 and cfg.mixed_precision is None
    assert cfg.arrays == ["q_len", "u_len", "e_unl", "tru_tau", "tru_kappa", "rec_kappa"]


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    sub = tmp_path / "configs"
    sub.mkdir()
    path = write(sub, {"data_path": "../maps/x.npz", "output_dir": "runs/a"})
    monkeypatch.chdir(tmp_path.parent)  # the working directory must not matter
    cfg = load_config(path)
    assert cfg.resolve(cfg.data_path) == (tmp_path / "maps" / "x.npz").resolve()
    assert cfg.output_dir == (sub / "runs" / "a").resolve()
    absolute = load_config(write(sub, {"output_dir": str(tmp_path / "abs")}, "b.json"))
    assert absolute.output_dir == (tmp_path / "abs").resolve()


def test_model_name_is_an_alias_of_model(tmp_path):
    assert load_config(write(tmp_path, {"model_name": "Other"})).model == "Other"
    with pytest.raises(TrainingError, match="both set 'model'"):
        load_config(write(tmp_path, {"model_name": "A", "model": "B"}))


def test_unknown_key_suggests_the_closest_one(tmp_path):
    with pytest.raises(TrainingError, match=r"unknown config key 'learnin_rate' \(did you mean 'learning_rate'\?\)"):
        load_config(write(tmp_path, {"learnin_rate": 0.1}))
    with pytest.raises(TrainingError, match="valid keys: model, data_path"):
        load_config(write(tmp_path, {"zzzz": 1}))


def test_unreadable_or_invalid_json(tmp_path):
    with pytest.raises(TrainingError, match="does not exist"):
        load_config(tmp_path / "nope.json")
    with pytest.raises(TrainingError, match="cannot read"):
        load_config(tmp_path)  # a folder
    with pytest.raises(TrainingError, match="not valid JSON: .* line 2"):
        load_config(write(tmp_path, '{"epochs": 3,\n "seed": }'))
    with pytest.raises(TrainingError, match="one JSON object"):
        load_config(write(tmp_path, "[1, 2]"))


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        ((0.8, 0.2, 0.0), "test_split must be a positive fraction"),
        ((0.9, -0.1, 0.2), "val_split must be a positive fraction"),
        ((0.8, 0.1, 0.2), "must sum to 1"),
        ((0.5, 0.1, 0.1), "must sum to 1"),
    ],
)
def test_splits_must_be_positive_and_sum_to_one(tmp_path, splits, message):
    raw = dict(zip(("training_split", "val_split", "test_split"), splits, strict=True))
    with pytest.raises(TrainingError, match=message):
        load_config(write(tmp_path, raw))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("batch_size", "32", "batch_size must be a positive integer"),
        ("batch_size", True, "batch_size must be a positive integer"),
        ("epochs", 0, "epochs must be a positive integer"),
        ("haltpatience", -1, "haltpatience must be an integer >= 0"),
        ("learning_rate", 0, "learning_rate must be a positive number"),
        ("lrfactordelta", 1.0, "lrfactordelta must be a number between 0 and 1"),
        ("dropval", 1.0, r"dropval must be a number in \[0, 1\)"),
        ("mixed_precision", "float16", "mixed_precision must be null"),
        ("feat_used", ["q_len"], "feat_used must be a non-empty object"),
        ("target_used", {}, "target_used must be a non-empty object"),
        ("trace_used", "rec_kappa", "trace_used must be a list"),
        ("tensboard_log", "yes", "tensboard_log must be true or false"),
        ("model", "", "model must be a non-empty string"),
    ],
)
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(TrainingError, match=message):
        validate_config({key: value})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("seed", 2**32, "seed must be an integer >= 0 no larger than 4294967295"),
        ("seed", float("nan"), "seed must be an integer >= 0"),
        ("epochs", float("inf"), "epochs must be a positive integer"),
        ("epochs", 10**9, "epochs must be a positive integer no larger than 1000000"),
        ("batch_size", 10**6, "batch_size must be a positive integer no larger than 65536"),
        ("imagesize", 2, "imagesize must be an integer >= 4"),
        ("data_workers", 10**5, "data_workers must be a positive integer no larger than 1024"),
        ("haltpatience", True, "haltpatience must be an integer >= 0"),
        ("learning_rate", float("inf"), "learning_rate must be a positive number"),
        ("learning_rate", float("nan"), "learning_rate must be a positive number"),
        ("dropval", float("nan"), r"dropval must be a number in \[0, 1\)"),
        ("val_split", float("inf"), "val_split must be a positive fraction below 1"),
    ],
)
def test_numbers_must_be_finite_and_in_range(key, value, message):
    """The seed feeds NumPy's legacy seeding (32 bits): 2**32 used to pass here and crash the run later."""
    with pytest.raises(TrainingError, match=message):
        validate_config({key: value})


def test_integral_floats_are_accepted_as_integers_and_dropout_zero_is_valid():
    cfg = validate_config({"epochs": 5.0, "dropval": 0})
    assert cfg.epochs == 5 and isinstance(cfg.epochs, int) and cfg.dropval == 0.0


def test_mixed_precision_policies_are_accepted():
    for policy in ("mixed_float16", "mixed_bfloat16", None):
        assert validate_config({"mixed_precision": policy}).mixed_precision == policy


def test_replace_validates_and_to_dict_round_trips(tmp_path):
    cfg = load_config(write(tmp_path, {"epochs": 3}))
    assert isinstance(cfg, TrainingConfig)
    assert cfg.replace(epochs=7).epochs == 7
    with pytest.raises(TrainingError, match="epochs"):
        cfg.replace(epochs=-1)
    again = validate_config(json.loads(json.dumps(cfg.to_dict())), cfg.config_dir)
    assert again == cfg


def test_config_module_does_not_import_keras():
    code = "import sys, training.config; sys.exit('keras' in sys.modules or 'tensorflow' in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=120)
