"""The command-line interface: outputs, metadata, workers, and every bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from datapipe.settings import DEFAULT_MAPS
from datapipe.writer import read_metadata

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "datapipe" / "datapipeline.py"
SMALL = ["--npix", "32", "--taper-deg", "0.3"]


def run(args, cwd=None):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd or ROOT,
                          timeout=300)


@pytest.fixture(scope="module")
def npz_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("npz")
    out = folder / "maps.npz"
    result = run(["--nsims", "12", "--seed", "3", "--output", str(out), *SMALL])
    assert result.returncode == 0, result.stderr
    return result, out


def test_npz_output_names_dtype_shape_window_and_metadata(npz_run):
    result, out = npz_run
    assert "12 map sets" in result.stdout and "expected" in result.stdout
    with np.load(out) as f:
        assert sorted(f.files) == sorted([*DEFAULT_MAPS, "metadata"])
        for name in DEFAULT_MAPS:
            assert f[name].shape == (12, 32, 32) and f[name].dtype == np.float32
    meta = read_metadata(out)
    assert meta["nsims"] == 12 and meta["seed"] == 3 and meta["settings"]["npix"] == 32
    assert {"numpy", "pixell", "symlens", "python"} <= set(meta["versions"]) and meta["code_version"]
    window = np.load(out.parent / "window_info.npz")
    assert window["taper"].shape == (32, 32)
    assert window["w2"] == pytest.approx(np.mean(window["taper"] ** 2))
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_h5_output_equals_npz_output(npz_run, tmp_path):
    _, npz = npz_run
    out = tmp_path / "maps.h5"
    result = run(["--nsims", "12", "--seed", "3", "--output", str(out), *SMALL, "--chunk-size", "5"])
    assert result.returncode == 0, result.stderr
    with h5py.File(out) as h, np.load(npz) as f:
        for name in DEFAULT_MAPS:
            np.testing.assert_array_equal(h[name][...], f[name])
        assert json.loads(h.attrs["metadata"])["nsims"] == 12
        assert h.attrs["seed"] == 3


def test_workers_and_chunks_do_not_change_the_output(npz_run, tmp_path):
    _, npz = npz_run
    out = tmp_path / "maps.npz"
    result = run(["--nsims", "12", "--seed", "3", "--output", str(out), *SMALL, "--workers", "2", "--chunk-size",
                  "4", "--quiet"])
    assert result.returncode == 0, result.stderr
    with np.load(out) as a, np.load(npz) as b:
        for name in DEFAULT_MAPS:
            assert a[name].tobytes() == b[name].tobytes(), name


def test_map_selection_no_qe_and_running_from_the_datapipe_folder(tmp_path):
    out = tmp_path / "sel.npz"
    result = run(["--nsims", "2", "--output", str(out), *SMALL, "--maps", "q_len,u_len,rec_kappa", "--no-qe"],
                 cwd=ROOT / "datapipe")
    assert result.returncode == 2 and "--no-qe conflicts" in result.stderr
    result = run(["--nsims", "2", "--output", str(out), *SMALL, "--maps", "t_len,b_unl,tru_phi"],
                 cwd=ROOT / "datapipe")
    assert result.returncode == 0, result.stderr
    with np.load(out) as f:
        assert sorted(f.files) == ["b_unl", "metadata", "t_len", "tru_phi"]
    out2 = tmp_path / "noqe.npz"
    assert run(["--nsims", "2", "--output", str(out2), *SMALL, "--no-qe", "--quiet"]).returncode == 0
    with np.load(out2) as f:
        assert not [n for n in f.files if n.startswith(("rec", "wf_"))]


def test_help_documents_every_option():
    result = run(["--help"])
    assert result.returncode == 0
    for option in ("--nsims", "--output", "--maps", "--npix", "--pixel-arcmin", "--taper-deg", "--beam-arcmin",
                   "--noise-uk-arcmin", "--null-fraction", "--seed", "--no-qe", "--no-tau", "--no-lensing",
                   "--workers", "--chunk-size", "--overwrite", "--quiet"):
        assert option in result.stdout, option


BAD_INPUTS = [
    (["--nsims", "0"], "--nsims must be a positive"),
    (["--nsims", "-3"], "--nsims must be a positive"),
    (["--npix", "0"], "--npix must be a positive"),
    (["--npix", "31"], "npix must be even"),
    (["--pixel-arcmin", "0"], "pixel size must be positive"),
    (["--pixel-arcmin", "-1"], "pixel size must be positive"),
    (["--maps", "q_len,qlen"], "unknown map name 'qlen'"),
    (["--null-fraction", "1.5"], "null fraction must lie in [0, 1]"),
    (["--null-fraction", "-0.1"], "null fraction must lie in [0, 1]"),
    (["--workers", "0"], "--workers must be a positive"),
    (["--taper-deg", "1.5"], "wider than half"),
    (["--noise-uk-arcmin", "-1"], "noise level must be >= 0"),
    (["--chunk-size", "0"], "--chunk-size must be a positive"),
    (["--chunk-size", "-4"], "--chunk-size must be a positive"),
    (["--beam-arcmin", "-1.5"], "beam FWHM must be >= 0"),
    (["--seed", "-1"], "seed must be a non-negative integer"),
    (["--taper-deg", "-0.5"], "taper width must be >= 0"),
    (["--maps", ""], "no maps requested"),
    (["--maps", " , "], "no maps requested"),
    (["--maps", "q_len,u_len,q_len"], "map names repeated"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, args, message):
    out = tmp_path / "bad.npz"
    result = run(["--nsims", "2", *SMALL, "--output", str(out), *args])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_existing_output_needs_overwrite_and_bad_paths(tmp_path):
    out = tmp_path / "exists.npz"
    out.write_bytes(b"keep me")
    result = run(["--nsims", "2", *SMALL, "--output", str(out)])
    assert result.returncode == 2 and "--overwrite" in result.stderr and out.read_bytes() == b"keep me"
    assert run(["--nsims", "2", *SMALL, "--output", str(out), "--overwrite", "--quiet"]).returncode == 0
    assert np.load(out)["q_len"].shape == (2, 32, 32)
    result = run(["--nsims", "2", *SMALL, "--output", str(tmp_path / "missing" / "x.npz")])
    assert result.returncode == 2 and "does not exist" in result.stderr
    result = run(["--nsims", "2", *SMALL, "--output", str(tmp_path / "x.txt")])
    assert result.returncode == 2 and ".npz or .h5" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0 and not os.path.isdir("/proc/self"), reason="needs /proc")
def test_unwritable_output_folder(tmp_path):
    result = run(["--nsims", "2", *SMALL, "--output", "/proc/self/map_sets32.npz"])
    assert result.returncode == 2
    assert "cannot write" in result.stderr or "does not exist" in result.stderr


def test_failed_run_leaves_no_output(tmp_path, monkeypatch):
    from datapipe import runner
    from datapipe.settings import SimulationSettings
    from datapipe.simulate import MapSetSimulator

    calls = {"n": 0}
    original = MapSetSimulator.simulate

    def failing(self, indices):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        return original(self, indices)

    monkeypatch.setattr(MapSetSimulator, "simulate", failing)
    out = tmp_path / "crash.npz"
    with pytest.raises(RuntimeError, match="simulated crash"):
        runner.run_simulation(SimulationSettings(npix=32, taper_deg=0.3), out, 10, chunk_size=4, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cwd", ["root", "elsewhere"])
def test_default_output_is_the_data_path_of_config_json_from_any_folder(cwd, tmp_path, monkeypatch):
    from datapipe import datapipeline
    from training.config import load_config

    monkeypatch.chdir(ROOT if cwd == "root" else tmp_path)
    default = datapipeline.build_parser().parse_args([]).output
    config = load_config(ROOT / "config.json")
    assert default.is_absolute()
    assert default == config.resolve(config.data_path) == ROOT / "datapipe" / "map_sets32.npz"


def test_help_shows_the_resolved_default_output(tmp_path):
    result = run(["--help"], cwd=tmp_path)
    assert result.returncode == 0
    squeeze = "".join  # argparse wraps long help lines, perhaps inside a long path
    assert squeeze(str(ROOT / "datapipe" / "map_sets32.npz").split()) in squeeze(result.stdout.split())


def test_default_output_of_an_installed_package_is_in_the_working_folder(tmp_path, monkeypatch):
    from datapipe import settings

    fake = tmp_path / "site-packages" / "datapipe" / "settings.py"  # no config.json nor training/ above it
    monkeypatch.setattr(settings, "__file__", str(fake))
    monkeypatch.chdir(tmp_path)
    assert settings.default_output_path() == tmp_path.resolve() / "map_sets32.npz"
