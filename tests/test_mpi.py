"""MPI-sharded simulation (datapipe/mpi.py): index ranges, the virtual HDF5 file, and runs under ``mpirun -n 2``.

The ``mpirun`` tests need an MPI launcher and mpi4py (``.ci/run`` installs both); they are skipped, with the reason,
where either is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from datapipe.mpi import launcher_world_size, rank_ranges, shard_folder, shard_name
from datapipe.writer import H5Writer, read_metadata, write_virtual_h5

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "datapipe" / "datapipeline.py"
SMALL = ["--npix", "32", "--taper-deg", "0.3", "--qe-mean-field-sims", "4", "--seed", "5", "--quiet"]
NSIMS = 13  # odd: the two ranks get 7 and 6 map sets
LAUNCHER = shutil.which("mpirun") or shutil.which("mpiexec")
HAS_MPI4PY = importlib.util.find_spec("mpi4py") is not None

needs_mpirun = pytest.mark.skipif(
    LAUNCHER is None or not HAS_MPI4PY,
    reason="no MPI launcher (mpirun/mpiexec) on PATH" if LAUNCHER is None
    else "mpi4py not installed (pip install -r requirements-mpi.txt)",
)


def mpirun(nranks: int, args: list[str], cwd: Path, script: Path = SCRIPT) -> subprocess.CompletedProcess:
    """Run ``script args`` on ``nranks`` MPI ranks and return the finished process."""
    assert LAUNCHER is not None
    version = subprocess.run([LAUNCHER, "--version"], capture_output=True, text=True, timeout=60).stdout
    extra = ["--oversubscribe"] if "Open MPI" in version else []  # the CI machine may report a single slot
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}
    return subprocess.run([LAUNCHER, "-n", str(nranks), *extra, sys.executable, str(script), *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def serial(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def visible_and_hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------------------------------------------
# Pieces that need no MPI


@pytest.mark.parametrize(("nsims", "size"), [(13, 2), (10, 3), (2, 4), (1000, 7), (5, 1)])
def test_rank_ranges_are_disjoint_contiguous_and_balanced(nsims, size):
    ranges = rank_ranges(nsims, size)
    assert len(ranges) == size
    covered = np.concatenate([np.arange(a, b) for a, b in ranges])
    np.testing.assert_array_equal(covered, np.arange(nsims))  # in order, each index once
    lengths = [b - a for a, b in ranges]
    assert max(lengths) - min(lengths) <= 1


def test_launcher_world_size_reads_launcher_variables_only():
    assert launcher_world_size({}) == 1
    assert launcher_world_size({"OMPI_COMM_WORLD_SIZE": "4"}) == 4
    assert launcher_world_size({"PMI_SIZE": "3"}) == 3
    # Inside an sbatch script with several tasks but no srun step, nothing runs in parallel yet.
    assert launcher_world_size({"SLURM_STEP_NUM_TASKS": "8", "SLURM_NTASKS": "8"}) == 1
    assert launcher_world_size({"SLURM_STEP_NUM_TASKS": "8", "SLURM_STEP_ID": "0"}) == 8


def test_shard_names():
    out = Path("/data/sims.h5")
    assert shard_folder(out) == Path("/data/sims.h5.shards")
    assert shard_name(out, 3, 16) == "sims.00003-of-00016.h5"


def test_virtual_file_reads_like_one_file_and_moves_with_its_shards(tmp_path):
    folder = tmp_path / "a"
    (folder / "x.h5.shards").mkdir(parents=True)
    rng = np.random.default_rng(1)
    full = {name: rng.normal(size=(9, 4, 4)).astype(np.float32) for name in ("q_len", "tru_tau")}
    shards = []
    for i, (start, stop) in enumerate(rank_ranges(9, 2)):
        rel = f"x.h5.shards/x.{i}.h5"
        with H5Writer(folder / rel, list(full), stop - start, 4, {"part": i}) as writer:
            writer.write(0, {k: v[start:stop] for k, v in full.items()})
        shards.append((rel, start, stop))
    write_virtual_h5(folder / "x.h5", list(full), 9, 4, shards, {"nsims": 9, "settings": {"npix": 4}})
    shutil.move(folder, tmp_path / "b")  # relative shard paths: the pair can be moved
    with h5py.File(tmp_path / "b" / "x.h5") as f:
        assert sorted(f) == sorted(full) and f["q_len"].is_virtual
        for name, arr in full.items():
            np.testing.assert_array_equal(f[name][...], arr)
            np.testing.assert_array_equal(f[name][3:7], arr[3:7])  # a slice across the shard boundary
    assert read_metadata(tmp_path / "b" / "x.h5")["nsims"] == 9
    # A range no shard covers reads as NaN, which the training data checks reject.
    write_virtual_h5(tmp_path / "b" / "gap.h5", ["q_len"], 12, 4, shards, {})
    with h5py.File(tmp_path / "b" / "gap.h5") as f:
        assert np.isnan(f["q_len"][9:]).all() and np.isfinite(f["q_len"][:9]).all()


def test_mpi_flag_without_mpi4py_is_a_one_line_error(tmp_path):
    # Block mpi4py whether or not it is installed; also under a launcher that announces two ranks.
    driver = tmp_path / "no_mpi4py.py"
    driver.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "sys.modules['mpi4py'] = None\n"
        "from datapipe.datapipeline import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    out = tmp_path / "x.h5"
    result = subprocess.run([sys.executable, str(driver), "--mpi", "--output", str(out), *SMALL],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--mpi needs mpi4py" in result.stderr and "requirements-mpi.txt" in result.stderr
    env = {**os.environ, "OMPI_COMM_WORLD_SIZE": "2"}
    result = subprocess.run([sys.executable, str(driver), "--output", str(out), *SMALL], capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 2 and "started as 2 MPI ranks, but mpi4py is not installed" in result.stderr
    assert visible_and_hidden(tmp_path) == ["no_mpi4py.py"]


# ----------------------------------------------------------------------------------------------------------------
# Runs under mpirun


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serial")
    result = serial(["--nsims", str(NSIMS), "--output", "maps.h5", "--chunk-size", "5", *SMALL], cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


@needs_mpirun
def test_mpirun_output_equals_serial_output(serial_run, tmp_path):
    result = mpirun(2, ["--nsims", str(NSIMS), "--output", "maps.h5", "--chunk-size", "4", *SMALL], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert visible_and_hidden(tmp_path) == ["maps.h5", "maps.h5.shards", "window_info.npz"]
    assert visible_and_hidden(tmp_path / "maps.h5.shards") == ["maps.00000-of-00002.h5", "maps.00001-of-00002.h5"]
    with h5py.File(tmp_path / "maps.h5") as mpi_file, h5py.File(serial_run / "maps.h5") as ref:
        assert sorted(mpi_file) == sorted(ref)
        for name in ref:
            assert mpi_file[name].is_virtual and mpi_file[name].dtype == np.float32
            np.testing.assert_array_equal(mpi_file[name][...], ref[name][...])
    meta, ref_meta = read_metadata(tmp_path / "maps.h5"), read_metadata(serial_run / "maps.h5")
    assert meta["settings"] == ref_meta["settings"] and meta["nsims"] == NSIMS
    assert meta["mpi"]["ranks"] == 2 and [s["stop"] for s in meta["mpi"]["shards"]] == [7, 13]
    with h5py.File(tmp_path / "maps.h5") as f:
        assert json.loads(f.attrs["settings"])["npix"] == 32 and f.attrs["seed"] == 5  # attributes like H5Writer's
    with np.load(tmp_path / "window_info.npz") as w, np.load(serial_run / "window_info.npz") as w_ref:
        np.testing.assert_array_equal(w["taper"], w_ref["taper"])


@needs_mpirun
def test_a_failing_rank_leaves_no_output(tmp_path):
    # Rank 1 fails while finishing its shard, after rank 0 completed its own: everything is removed.
    driver = tmp_path / "failing_rank.py"
    driver.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from mpi4py import MPI\n"
        "from datapipe import writer\n"
        "def fail(self):\n"
        "    raise OSError('disk full (injected)')\n"
        "if MPI.COMM_WORLD.Get_rank() == 1:\n"
        "    writer.H5Writer.close = fail\n"
        "from datapipe.datapipeline import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    out = tmp_path / "run"
    out.mkdir()
    result = mpirun(2, ["--nsims", str(NSIMS), "--output", "maps.h5", *SMALL], cwd=out, script=driver)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.count("datapipeline.py: error:") == 1
    assert "rank 1 failed (OSError: disk full (injected)); no output written" in result.stderr
    assert visible_and_hidden(out) == []


@needs_mpirun
def test_npz_output_under_mpirun_is_refused(tmp_path):
    result = mpirun(2, ["--nsims", "4", "--output", "maps.npz", *SMALL], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("datapipeline.py: error:") == 1 and "use a .h5 output" in result.stderr
    assert visible_and_hidden(tmp_path) == []


@needs_mpirun
def test_existing_output_needs_overwrite(tmp_path):
    args = ["--nsims", "4", "--output", "maps.h5", *SMALL]
    assert mpirun(2, args, cwd=tmp_path).returncode == 0
    result = mpirun(2, args, cwd=tmp_path)
    assert result.returncode == 2 and "pass --overwrite" in result.stderr
    result = mpirun(2, [*args, "--overwrite", "--seed", "6"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert visible_and_hidden(tmp_path) == ["maps.h5", "maps.h5.shards", "window_info.npz"]
    assert read_metadata(tmp_path / "maps.h5")["seed"] == 6
