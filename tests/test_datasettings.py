"""Tests of training/datasettings.py: the training maps' settings recorded beside a network (data_settings.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from evaluation_helpers import simulate

from training.config import TrainingError, validate_config
from training.datasettings import DATA_SETTINGS_FILE, describe_training_data, read_data_settings, write_data_settings


def test_settings_come_from_the_data_files_metadata(tmp_path):
    simulate(tmp_path / "maps.npz", 2, seed=1, maps=("q_len", "u_len"), pixel_arcmin=1.5, taper_deg=0.2,
             beam_arcmin=1.4, noise_uk_arcmin=2.0)
    cfg = validate_config({"data_path": "maps.npz", "imagesize": 32}, tmp_path)
    (tmp_path / "net").mkdir()
    path = write_data_settings(tmp_path / "net", cfg)
    assert path == tmp_path / "net" / DATA_SETTINGS_FILE
    settings = read_data_settings(tmp_path / "net")
    assert settings["npix"] == 32 and settings["pixel_arcmin"] == 1.5 and settings["taper_deg"] == 0.2
    assert settings["beam_arcmin"] == 1.4 and settings["noise_uk_arcmin"] == 2.0 and settings["tau"] is True
    assert settings["taper_pixels"] == 8 and settings["data_source"] == "maps.npz" and settings["flipped_up_down"]
    assert "maps" not in settings


def test_a_file_without_metadata_leaves_the_physics_unknown(tmp_path):
    np.savez(tmp_path / "maps.npz", q_len=np.zeros((4, 16, 16), np.float32))
    cfg = validate_config({"data_path": "maps.npz", "imagesize": 16}, tmp_path)
    settings = describe_training_data(cfg)
    assert settings["npix"] == 16
    assert settings["pixel_arcmin"] is None and settings["taper_deg"] is None and settings["taper_pixels"] is None


def test_on_the_fly_data_record_the_simulation_block(tmp_path):
    block = {"pixel_arcmin": 2.0, "taper_deg": 0.4, "noise_uk_arcmin": 1.0, "no_tau": True}
    cfg = validate_config({"data_path": "simulate", "imagesize": 32, "simulation": block}, tmp_path)
    settings = describe_training_data(cfg)
    geometry = (settings["npix"], settings["pixel_arcmin"], settings["taper_deg"], settings["taper_pixels"])
    assert geometry == (32, 2.0, 0.4, 12)
    assert settings["noise_uk_arcmin"] == 1.0 and settings["tau"] is False and settings["data_source"] == "simulate"
    # The defaults of the pipeline fill what the block leaves out.
    assert settings["beam_arcmin"] == 0.0 and settings["lensing"] is True


def test_reading_old_and_broken_folders(tmp_path):
    assert read_data_settings(tmp_path) is None
    (tmp_path / DATA_SETTINGS_FILE).write_text("[1, 2]")
    with pytest.raises(TrainingError, match="does not hold a JSON object"):
        read_data_settings(tmp_path)
    (tmp_path / DATA_SETTINGS_FILE).write_text("{")
    with pytest.raises(TrainingError, match="cannot read .*data_settings.json"):
        read_data_settings(tmp_path)
    (tmp_path / DATA_SETTINGS_FILE).write_text(json.dumps({"npix": 8}))
    assert read_data_settings(tmp_path) == {"npix": 8}
