"""Tests of training/predict.py (the command line): FITS and pipeline inputs, FITS outputs, one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from apply_helpers import identity_network, random_enmaps
from evaluation_helpers import simulate
from pixell import enmap

from training import predict as tpredict

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    return identity_network(tmp_path_factory.mktemp("identity"))


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    """Q and U FITS maps of 64x80 pixels (pixell's orientation), their TQU stack, and bad variants."""
    folder = tmp_path_factory.mktemp("maps")
    q, u = random_enmaps((64, 80), seed=1)
    enmap.write_map(str(folder / "q.fits"), q)
    enmap.write_map(str(folder / "u.fits"), u)
    enmap.write_map(str(folder / "tqu.fits"), enmap.enmap(np.stack([q * 0, q, u]), q.wcs))
    enmap.write_map(str(folder / "u_cut.fits"), u[:, :70])
    shifted = u.copy()
    shifted.wcs.wcs.crval = [0.5, 0.0]
    enmap.write_map(str(folder / "u_shifted.fits"), shifted)
    coarse_q, coarse_u = random_enmaps((64, 80), seed=1, pixel_arcmin=3.0)
    enmap.write_map(str(folder / "q_coarse.fits"), coarse_q)
    enmap.write_map(str(folder / "u_coarse.fits"), coarse_u)
    holed = q.copy()
    holed[5, 6] = np.nan
    enmap.write_map(str(folder / "q_nan.fits"), holed)
    small_q, small_u = random_enmaps((20, 80), seed=1)
    enmap.write_map(str(folder / "q_small.fits"), small_q)
    enmap.write_map(str(folder / "u_small.fits"), small_u)
    return folder, q, u


def _run(capsys, network, q, u, output, *extra):
    status = tpredict.main(["--model-dir", str(network), "--q", str(q), "--u", str(u), "--output", str(output),
                            *map(str, extra)])
    return status, capsys.readouterr()


def test_fits_in_fits_out(capsys, network, maps, tmp_path):
    folder, q, u = maps
    out = tmp_path / "out"
    status, captured = _run(capsys, network, folder / "q.fits", folder / "u.fits", out, "--batch-size", 4)
    assert status == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["kappa.fits", "e_unl.fits", "tau.fits", "coverage.fits", "predict_info.json"])
    kappa, coverage = enmap.read_map(str(out / "kappa.fits")), enmap.read_map(str(out / "coverage.fits"))
    assert np.allclose(kappa.wcs.wcs.cdelt, q.wcs.wcs.cdelt) and np.allclose(kappa.wcs.wcs.crpix, q.wcs.wcs.crpix)
    inside = coverage >= 1
    np.testing.assert_allclose(kappa[inside], 2 * q[inside], atol=1e-5)  # the identity network: kappa = 2 q
    info = json.loads((out / "predict_info.json").read_text())
    assert info["path"] == "tiled" and info["tiles"] == 3 * 4 and info["stride"] == 16
    assert info["fields"]["e_unl"] == {"unit": "uK"} and info["pixel_arcmin"] == 2.34375
    assert "predicted kappa, e_unl, tau on 64x80 maps (12 tiles of 32x32, stride 16)" in captured.out


def test_one_tqu_file_for_both(capsys, network, maps, tmp_path):
    folder, q, u = maps
    status, captured = _run(capsys, network, folder / "tqu.fits", folder / "tqu.fits", tmp_path / "out", "--quiet")
    assert status == 0, captured.err
    assert captured.out == ""
    tau, coverage = enmap.read_map(str(tmp_path / "out" / "tau.fits")), enmap.read_map(str(tmp_path / "out" /
                                                                                             "coverage.fits"))
    np.testing.assert_allclose(tau, coverage * u / 5, atol=1e-5)


def test_a_pipeline_map_set_takes_the_direct_path(capsys, network, tmp_path):
    data = simulate(tmp_path / "data" / "maps.npz", 3, seed=2, maps=("q_len", "u_len"))
    status, captured = _run(capsys, network, data, data, tmp_path / "out", "--index", 1)
    assert status == 0, captured.err
    e_unl = enmap.read_map(str(tmp_path / "out" / "e_unl.fits"))
    with np.load(data) as f:
        q_saved = f["q_len"][1]
    np.testing.assert_allclose(e_unl[::-1], 3 * q_saved, atol=1e-5)  # written in pixell's orientation
    info = json.loads((tmp_path / "out" / "predict_info.json").read_text())
    assert info["path"] == "direct" and info["index"] == 1 and info["notes"] == []


BAD_INPUTS = [
    ("q_missing.fits", "u.fits", [], "Q map '.*q_missing.fits' does not exist"),
    ("q.fits", "u_missing.fits", [], "U map '.*u_missing.fits' does not exist"),
    ("q.fits", "u_cut.fits", [], "the Q map is 64x80 pixels but the U map 64x70"),
    ("q.fits", "u_shifted.fits", [], "the Q and U maps have different WCS"),
    ("q_coarse.fits", "u_coarse.fits", [], "the maps have 3' pixels but the network was trained on 2.34375' pixels"),
    ("q_nan.fits", "u.fits", [], r"the Q map has 1 NaN or inf pixels \(first at row 5, column 6\)"),
    ("q_small.fits", "u_small.fits", [], "the maps are 20x80 pixels, smaller than the network's 32x32 input"),
    ("q.fits", "u.fits", ["--pixel-arcmin", "2"], "trained with pixel size 2.34375'"),
    ("q.fits", "u.fits", ["--stride", "0"], "--stride must lie between 1 and the tile side 32"),
    ("q.fits", "u.fits", ["--batch-size", "0"], "--batch-size must be at least 1"),
]


@pytest.mark.parametrize("q, u, extra, message", BAD_INPUTS, ids=[m[:30] for *_, m in BAD_INPUTS])
def test_bad_input_is_one_line_and_writes_nothing(capsys, network, maps, tmp_path, q, u, extra, message):
    folder = maps[0]
    out = tmp_path / "out"
    status, captured = _run(capsys, network, folder / q, folder / u, out, *extra)
    assert status == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert re.search(message, lines[0]), lines[0]
    assert not out.exists()


def test_an_earlier_output_is_kept_without_overwrite(capsys, network, maps, tmp_path):
    folder = maps[0]
    out = tmp_path / "out"
    assert _run(capsys, network, folder / "q.fits", folder / "u.fits", out, "--quiet")[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    status, captured = _run(capsys, network, folder / "tqu.fits", folder / "tqu.fits", out)
    assert status == 2 and captured.err.startswith("error: ") and "pass --overwrite" in captured.err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    status, captured = _run(capsys, network, folder / "q.fits", folder / "u.fits", out, "--overwrite", "--stride", 8)
    assert status == 0, captured.err
    assert json.loads((out / "predict_info.json").read_text())["stride"] == 8


def test_missing_network_folder(capsys, maps, tmp_path):
    folder = maps[0]
    status, captured = _run(capsys, tmp_path / "nonet", folder / "q.fits", folder / "u.fits", tmp_path / "out")
    assert status == 2 and captured.err.startswith("error: model folder") and len(captured.err.splitlines()) == 1


def test_the_script_runs_from_anywhere(network, tmp_path):
    """``python training/predict.py`` finds the package; a missing map fails before Keras loads."""
    command = [sys.executable, str(REPO_ROOT / "training" / "predict.py"), "--model-dir", str(network), "--q",
               "nope.fits", "--u", "nope.fits", "--output", "out"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: Q map 'nope.fits' does not exist; pass --q a FITS map or a "
                                                "pipeline .npz/.h5 file"]


def test_a_folder_without_data_settings_takes_the_paper_pixels_or_the_options(capsys, maps, tmp_path):
    old = identity_network(tmp_path / "old", record=False)
    folder = maps[0]
    status, captured = _run(capsys, old, folder / "q.fits", folder / "u.fits", tmp_path / "out")
    assert status == 2 and "1.5 deg taper (38 pixels per edge) does not fit the network's 32-pixel" in captured.err
    status, captured = _run(capsys, old, folder / "q.fits", folder / "u.fits", tmp_path / "out", "--taper-deg", 0.3)
    assert status == 0, captured.err
    assert "note: " in captured.out and "assuming the paper's 2.34375' (set --pixel-arcmin)" in captured.out
    info = json.loads((tmp_path / "out" / "predict_info.json").read_text())
    assert info["taper_pixels"] == 7 and any("--pixel-arcmin" in note for note in info["notes"])


def _interrupting_write_map(monkeypatch, action):
    """Make pixell's ``write_map`` write its first file, then ``action()`` (a signal, a full disk) on the second."""
    real_write = enmap.write_map
    calls = []

    def write_map(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            action(path)
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(enmap, "write_map", write_map)
    return calls


def test_sigterm_while_writing_is_one_line_and_leaves_nothing(capsys, network, maps, tmp_path, monkeypatch):
    """A batch scheduler's SIGTERM arrives after one output map was written: exit 143, one line, no output folder
    (and no temporary file) left behind."""
    import os
    import signal
    import time

    def terminate(path):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises here

    calls = _interrupting_write_map(monkeypatch, terminate)
    handler = signal.getsignal(signal.SIGTERM)
    folder = maps[0]
    out = tmp_path / "out"
    status, captured = _run(capsys, network, folder / "q.fits", folder / "u.fits", out, "--quiet")
    assert len(calls) == 2
    assert status == 143
    assert captured.err == "SIGTERM received: stopped; no output written\n"
    assert not out.exists()
    assert signal.getsignal(signal.SIGTERM) == handler  # the previous handler is back


def test_a_full_disk_is_one_line_and_leaves_nothing(capsys, network, maps, tmp_path, monkeypatch):
    import errno

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    calls = _interrupting_write_map(monkeypatch, full)
    folder = maps[0]
    out = tmp_path / "out"
    status, captured = _run(capsys, network, folder / "q.fits", folder / "u.fits", out, "--quiet")
    assert status == 1
    assert captured.err == (f"error: No space left on device ({calls[1]}); free some space or choose another "
                            "--output; no output written\n")
    assert not out.exists()


def test_an_error_after_the_network_loads_is_one_line_without_tensorflows_start_up_messages(network, maps, tmp_path):
    """Keras loads through training.runtime.load_keras: no absl/CUDA lines before the error (a 2-D U is missing)."""
    folder = maps[0]
    enmap.write_map(str(tmp_path / "u4d.fits"), enmap.zeros((2, 2, 8, 8), enmap.read_map(str(folder / "q.fits")).wcs))
    command = [sys.executable, str(REPO_ROOT / "training" / "predict.py"), "--model-dir", str(network), "--q",
               str(folder / "q.fits"), "--u", str(tmp_path / "u4d.fits"), "--output", str(tmp_path / "out")]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert not (tmp_path / "out").exists()
