"""The command-line interface: outputs, metadata, workers, every bad input, full disks and signals."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from datapipe import datapipeline
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
    """Byte for byte: the arrays, the metadata (no time stamp, no command line) and the zip members' times."""
    _, npz = npz_run
    out = tmp_path / "maps.npz"
    result = run(["--nsims", "12", "--seed", "3", "--output", str(out), *SMALL, "--workers", "2", "--chunk-size",
                  "4", "--quiet"])
    assert result.returncode == 0, result.stderr
    with np.load(out) as a, np.load(npz) as b:
        for name in DEFAULT_MAPS:
            assert a[name].tobytes() == b[name].tobytes(), name
    assert out.read_bytes() == npz.read_bytes()
    assert (out.parent / "window_info.npz").read_bytes() == (npz.parent / "window_info.npz").read_bytes()


def test_h5_files_are_identical_for_identical_settings(tmp_path, monkeypatch):
    """Two .h5 runs of the same settings, with other chunk sizes and command lines, give the same bytes."""
    from datapipe.runner import run_simulation
    from datapipe.settings import SimulationSettings

    settings = SimulationSettings(npix=32, taper_deg=0.3, seed=4, maps=("q_len", "tru_tau"))
    files = []
    for chunk in (3, 5):
        monkeypatch.setattr(sys, "argv", ["datapipeline.py", "--chunk-size", str(chunk)])
        (tmp_path / str(chunk)).mkdir()
        files.append(run_simulation(settings, tmp_path / str(chunk) / "m.h5", 7, chunk_size=chunk, progress=False))
    assert files[0].read_bytes() == files[1].read_bytes()


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


def test_rotation_options_and_default_arrays(npz_run, tmp_path):
    out = tmp_path / "alpha.npz"
    result = run(["--nsims", "12", "--seed", "3", "--output", str(out), *SMALL, "--alpha-amplitude-deg", "0.12",
                  "--null-fields", "alpha", "--quiet"])
    assert result.returncode == 0, result.stderr
    _, plain = npz_run
    with np.load(out) as f, np.load(plain) as g:
        # With the rotation on, the default arrays gain its truth (radians) and QE map.
        assert sorted(f.files) == sorted([*DEFAULT_MAPS, "tru_alpha", "rec_alpha", "metadata"])
        assert 1e-4 < f["tru_alpha"].std() < 1e-2
        # Same map sets (seed 3): the second paper's null map sets keep κ and τ; only α is switched off.
        null = ~np.any(f["tru_alpha"].reshape(12, -1) != 0, axis=1)
        null_paper1 = ~np.any(g["tru_kappa"].reshape(12, -1) != 0, axis=1)
        np.testing.assert_array_equal(null, null_paper1)
        assert null.any() and np.all(np.any(f["tru_kappa"].reshape(12, -1) != 0, axis=1))
    meta = read_metadata(out)
    assert meta["settings"]["alpha_amplitude_deg"] == 0.12 and meta["settings"]["null_fields"] == ["alpha"]
    assert meta["units"]["alpha"] == "radians"


def test_help_documents_every_option():
    result = run(["--help"])
    assert result.returncode == 0
    for option in ("--nsims", "--output", "--maps", "--npix", "--pixel-arcmin", "--taper-deg", "--beam-arcmin",
                   "--noise-uk-arcmin", "--null-fraction", "--seed", "--no-qe", "--no-tau", "--no-lensing",
                   "--workers", "--chunk-size", "--overwrite", "--quiet", "--alpha-amplitude-deg", "--null-fields"):
        assert option in result.stdout, option


BAD_INPUTS = [
    (["--nsims", "0"], "--nsims must be an integer in [1, "),
    (["--nsims", "-3"], "--nsims must be an integer in [1, "),
    (["--npix", "0"], "npix must be an integer in [8, 8192]"),
    (["--npix", "31"], "npix must be even"),
    (["--pixel-arcmin", "0"], "pixel size must be a number in (0, 60] arcmin"),
    (["--pixel-arcmin", "-1"], "pixel size must be a number in (0, 60] arcmin"),
    (["--maps", "q_len,qlen"], "unknown map name 'qlen'"),
    (["--null-fraction", "1.5"], "null fraction must be a number in [0, 1]"),
    (["--null-fraction", "-0.1"], "null fraction must be a number in [0, 1]"),
    (["--workers", "0"], "--workers must be an integer in [1, "),
    (["--taper-deg", "1.5"], "wider than half"),
    (["--noise-uk-arcmin", "-1"], "noise level must be a number in [0, 10000] uK-arcmin"),
    # Non-finite and degenerate values (each was a traceback, or an exit 0 with NaN arrays).
    (["--taper-deg", "inf"], "taper width must be a number in [0, 30] degrees (got inf)"),
    (["--pixel-arcmin", "inf"], "pixel size must be a number in (0, 60] arcmin (got inf)"),
    (["--pixel-arcmin", "nan"], "pixel size must be a number in (0, 60] arcmin (got nan)"),
    (["--noise-uk-arcmin", "inf"], "noise level must be a number in [0, 10000] uK-arcmin (got inf)"),
    (["--noise-uk-arcmin", "nan"], "noise level must be a number"),
    (["--beam-arcmin", "inf"], "beam FWHM must be a number"),
    (["--beam-arcmin", "-1"], "beam FWHM must be a number"),
    (["--null-fraction", "nan"], "null fraction must be a number in [0, 1] (got nan)"),
    (["--seed", str(2**64)], "seed must be an integer in [0, 9223372036854775807]"),
    (["--qe-mean-field-sims", "-1"], "QE mean-field simulations must be an integer in [0, 100000]"),
    (["--npix", "4", "--taper-deg", "0"], "8x8 is the smallest map the quadratic estimators handle"),
    (["--pixel-arcmin", "40"], "has 0 Fourier mode(s) per axis in the quadratic estimators' CMB range"),
    (["--npix", "8", "--pixel-arcmin", "1.5", "--taper-deg", "0"], "they need 3"),
    (["--beam-arcmin", "20"], "erases the quadratic estimators' CMB range"),
    (["--beam-arcmin", "100", "--no-qe"], "is as wide as the 75-arcmin map"),
    (["--npix", "1024", "--pixel-arcmin", "6", "--no-qe"], "flat-sky patches must be at most 60 deg wide"),
    (["--taper-deg", "0.625"], "leaves no untapered centre"),
    (["--chunk-size", "0"], "--chunk-size must be an integer in [1, 4096]"),
    (["--chunk-size", "100000"], "--chunk-size must be an integer in [1, 4096]"),
    (["--alpha-amplitude-deg", "-0.12"], "rotation amplitude must be a number in [0, 45] degrees"),
    (["--null-fields", "tau,alhpa"], "unknown null field 'alhpa' (did you mean alpha?)"),
    (["--null-fields", "alpha"], "switches off a rotation that is already off"),
    (["--chunk-size", "-4"], "--chunk-size must be an integer in [1, 4096]"),
    (["--beam-arcmin", "-1.5"], "beam FWHM must be a number"),
    (["--seed", "-1"], "seed must be an integer in [0, "),
    (["--taper-deg", "-0.5"], "taper width must be a number in [0, 30] degrees"),
    (["--maps", ""], "no maps requested"),
    (["--maps", " , "], "no maps requested"),
    (["--maps", "q_len,u_len,q_len"], "map names repeated"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, capsys, args, message):
    out = tmp_path / "bad.npz"
    assert datapipeline.main(["--nsims", "2", *SMALL, "--output", str(out), *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert lines[0].startswith("datapipeline.py: error: ")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_bad_input_from_the_command_line_has_no_traceback(tmp_path):
    out = tmp_path / "bad.npz"
    result = run(["--nsims", "2", *SMALL, "--output", str(out), "--taper-deg", "inf"])
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "taper width must be a number" in result.stderr and not list(tmp_path.iterdir())


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


@pytest.mark.parametrize("parent", ["/etc/passwd", "file"])
def test_a_parent_that_is_a_file_is_not_a_folder(tmp_path, capsys, parent):
    if parent == "file":
        parent = tmp_path / "plain.txt"
        parent.write_text("a file")
    assert datapipeline.main(["--nsims", "2", *SMALL, "--output", f"{parent}/x.npz"]) == 2
    err = capsys.readouterr().err
    assert err == f"datapipeline.py: error: output folder {parent} is not a folder; choose another --output\n"
    assert datapipeline.main(["--nsims", "2", *SMALL, "--output", f"{parent}/sub/x.npz"]) == 2
    assert f"{parent} is not a folder" in capsys.readouterr().err


def test_a_run_that_does_not_fit_on_the_disk_is_refused(tmp_path, capsys, monkeypatch):
    """The free space is compared with the planned output size (printed in the plan line) before any work."""
    import shutil

    real = shutil.disk_usage
    # 2 map sets of 7 arrays of 32x32 float32 = 57 kB, plus the packing copy and the margin: 1 MB is too little.
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=10**6))
    out = tmp_path / "big.npz"
    assert datapipeline.main(["--nsims", "2", *SMALL, "--output", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "not enough free space in" in lines[0] and "0.00 GB are free" in lines[0], lines
    assert captured.out == "" and not list(tmp_path.iterdir())  # refused before the plan and before any file
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=10**8))
    assert datapipeline.main(["--nsims", "2", *SMALL, "--output", str(out), "--quiet"]) == 0


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_a_disk_full_while_writing_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch, suffix):
    """ENOSPC on the third chunk: one line, exit 1, no output, no temporary file (in-process)."""
    from datapipe import writer

    cls = writer.NpzWriter if suffix == ".npz" else writer.H5Writer
    original = cls._write_chunk
    calls = {"n": 0}

    def fill_up(self, name, start, chunk):
        calls["n"] += 1
        if calls["n"] > 2 * len(self.names):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        original(self, name, start, chunk)

    monkeypatch.setattr(cls, "_write_chunk", fill_up)
    out = tmp_path / f"maps{suffix}"
    status = datapipeline.main(["--nsims", "12", *SMALL, "--chunk-size", "4", "--output", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert status == 1 and err == (f"datapipeline.py: error: writing {out} failed (No space left on device); free "
                                   "some space or choose another --output; no output written, temporary files "
                                   "removed\n")
    assert list(tmp_path.iterdir()) == []


FILE_SIZE_LIMIT = """
import resource, runpy, signal, sys
limit = int(sys.argv.pop(1))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the kernel then fails the write (EFBIG), as a full disk would
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize(("suffix", "limit"), [(".h5", 200_000), (".npz", 1_500_000)])
def test_a_real_write_failure_in_hdf5_or_while_packing_the_npz(tmp_path, suffix, limit):
    """The kernel refuses writes past a file-size limit (no root needed), in the HDF5 library or while the .npz
    parts (5 arrays of 400 kB) are packed into one 2 MB file: no crash (HDF5 used to segfault), nothing left."""
    out = tmp_path / f"maps{suffix}"
    result = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMIT, str(limit), str(SCRIPT), "--nsims", "100", *SMALL, "--no-qe",
         "--output", str(out), "--quiet"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert result.stderr == (f"datapipeline.py: error: writing {out} failed (File too large); no output written, "
                             "temporary files removed\n")
    assert list(tmp_path.iterdir()) == []


def wait_for(condition, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.parametrize(("sig", "group", "workers"), [(signal.SIGTERM, False, "1"), (signal.SIGINT, True, "2"),
                                                       (signal.SIGTERM, True, "2")])
def test_sigterm_and_ctrl_c_stop_cleanly(tmp_path, sig, group, workers):
    """SIGTERM (a batch scheduler) is handled like Ctrl-C: one line, 128 + signal, no temporary file left. With
    workers and the signal sent to the whole process group (as a terminal or scheduler does), no worker prints."""
    out = tmp_path / "maps.npz"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--nsims", "100000", *SMALL, "--output", str(out),
                             "--workers", workers, "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        # Once the arrays' temporary parts exist, the run is writing (the pool, if any, is starting).
        wait_for(lambda: any(p.name.startswith(".maps.npz.parts-") and any(p.iterdir())
                             for p in tmp_path.iterdir()), what="the temporary parts")
        (os.killpg if group else os.kill)(proc.pid, sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    name = "Ctrl-C" if sig == signal.SIGINT else "SIGTERM"
    assert proc.returncode == 128 + sig
    assert err == f"datapipeline.py: interrupted ({name}); no output written, temporary files removed\n"
    assert list(tmp_path.iterdir()) == []


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
    from datapipe import paths

    fake = tmp_path / "site-packages" / "datapipe" / "paths.py"  # no config.json nor training/ above it
    monkeypatch.setattr(paths, "__file__", str(fake))
    monkeypatch.chdir(tmp_path)
    assert paths.default_output_path() == tmp_path.resolve() / "map_sets32.npz"


class _CutImport:
    """Stands in for datapipe.mpi whose import a Ctrl-C cut short: every name lookup is interrupted."""

    def __getattr__(self, name):
        from datapipe.interrupts import PipelineInterrupted

        raise PipelineInterrupted(signal.SIGINT)


def test_ctrl_c_during_the_first_imports_is_the_one_line_notice(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "datapipe.mpi", _CutImport())
    assert datapipeline.main(["--nsims", "2", *SMALL, "--output", str(tmp_path / "a.npz")]) == 130
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["datapipeline.py: interrupted (Ctrl-C); no output written, temporary files removed"]
    assert not list(tmp_path.iterdir())


def test_a_signal_that_resurfaces_as_another_error_is_the_one_line_notice(tmp_path, capsys, monkeypatch):
    def swallowed_then_broken(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except BaseException:  # noqa: BLE001 - a library's bare except around an interrupted import
            pass
        raise AttributeError("module 'sympy' has no attribute 'polys'")

    monkeypatch.setattr(datapipeline, "settings_from_args", swallowed_then_broken)
    assert datapipeline.main(["--nsims", "2", *SMALL, "--output", str(tmp_path / "a.npz")]) == 143
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["datapipeline.py: interrupted (SIGTERM); no output written, temporary files removed"]
    assert not list(tmp_path.iterdir())
