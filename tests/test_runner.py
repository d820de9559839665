"""Running a simulation from Python: the window file beside the output is never lost, and the checks come first."""

import os

import numpy as np
import pytest

from datapipe.errors import PipelineError
from datapipe.runner import describe_taper, planned_disk_bytes, run_simulation
from datapipe.settings import SimulationSettings
from datapipe.taper import cosine_taper

MAPS = ("q_len", "tru_tau")  # no QE: fast


def settings(taper_deg: float) -> SimulationSettings:
    return SimulationSettings(npix=32, taper_deg=taper_deg, seed=2, maps=MAPS)


def test_a_second_data_set_with_another_taper_does_not_replace_the_window_file(tmp_path):
    run_simulation(settings(0.3), tmp_path / "a.npz", 4, progress=False)
    window = tmp_path / "window_info.npz"
    before = window.read_bytes()
    with pytest.raises(PipelineError) as info:
        run_simulation(settings(0.15), tmp_path / "b.npz", 4, progress=False)
    message = str(info.value)
    assert f"{window} belongs to another data set" in message
    assert "7 pixels per edge (--taper-deg 0.3 at 2.34375 arcmin)" in message  # the file's taper
    assert "3 pixels per edge (--taper-deg 0.15 at 2.34375 arcmin)" in message  # this run's
    assert "--overwrite" in message and "\n" not in message
    assert window.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", window.name]
    # With --overwrite the new data set and its window replace them.
    run_simulation(settings(0.15), tmp_path / "b.npz", 4, progress=False, overwrite=True)
    with np.load(window) as f:
        np.testing.assert_array_equal(f["taper"], cosine_taper(32, 3)[::-1])


def test_an_identical_window_file_is_left_as_it_is(tmp_path):
    run_simulation(settings(0.3), tmp_path / "a.npz", 4, progress=False)
    window = tmp_path / "window_info.npz"
    os.utime(window, (1, 1))
    run_simulation(settings(0.3), tmp_path / "b.h5", 3, progress=False)
    assert window.stat().st_mtime == 1 and (tmp_path / "b.h5").is_file()


def test_a_window_file_without_the_settings_is_described_by_its_shape(tmp_path):
    np.savez(tmp_path / "window_info.npz", taper=cosine_taper(32, 5), w2=0.5)  # as older versions wrote it
    with pytest.raises(PipelineError, match=r"its taper is 32x32 pixels, 5 pixels per edge, this run's"):
        run_simulation(settings(0.3), tmp_path / "a.npz", 4, progress=False)
    assert describe_taper(np.ones((16, 16))) == "16x16 pixels, no taper"


def test_an_unreadable_window_file_needs_overwrite(tmp_path):
    (tmp_path / "window_info.npz").write_text("not a zip")
    with pytest.raises(PipelineError, match="is not a readable window file"):
        run_simulation(settings(0.3), tmp_path / "a.npz", 4, progress=False)
    run_simulation(settings(0.3), tmp_path / "a.npz", 4, progress=False, overwrite=True)
    with np.load(tmp_path / "window_info.npz") as f:
        assert f["taper"].shape == (32, 32)


def test_planned_disk_bytes_counts_the_packing_copy_of_an_npz():
    s = settings(0.3)
    arrays = 4 * 10 * 32 * 32 * len(MAPS)
    assert planned_disk_bytes(s, 10, "x.h5") == arrays + 8 * 32 * 32
    assert planned_disk_bytes(s, 10, "x.npz") == arrays + arrays // len(MAPS) + 8 * 32 * 32


def test_run_options_are_checked_by_the_python_api_too(tmp_path):
    with pytest.raises(PipelineError, match="--chunk-size must be"):
        run_simulation(settings(0.3), tmp_path / "a.npz", 4, chunk_size=0, progress=False)
    assert list(tmp_path.iterdir()) == []
