"""Simulation spread over MPI ranks (mpi4py): one HDF5 shard per rank, one virtual HDF5 file over them.

``mpirun -n N python datapipe/datapipeline.py --output sims.h5 …`` splits the map-set indices ``0 .. nsims`` into
N contiguous, disjoint ranges (:func:`rank_ranges`). Each rank simulates its range and writes it to its own shard,
``sims.h5.shards/sims.<rank>-of-<N>.h5`` (under a temporary name, renamed when complete). Since map set *i*
depends only on (seed, *i*) (:func:`datapipe.fields.map_set_rng`), the shards hold exactly the serial run's maps.

Once every rank reports a complete shard (a collective ``allgather``), rank 0 writes ``sims.h5``: for each array an
HDF5 virtual dataset ``(nsims, npix, npix)`` that maps each index range onto its shard, with the run's metadata as
attributes, then ``window_info.npz``. Readers (h5py, ``training/``) see one ordinary file. The virtual datasets
refer to the shards by relative path, so ``sims.h5`` and ``sims.h5.shards/`` must stay side by side (move them
together). If any rank fails, every shard is removed and no final file is written; an interrupted run (Ctrl-C, a
killed job) leaves at most a hidden ``.sims.h5.shards-*`` folder, safe to delete.

``.npz`` outputs are refused under MPI: a zip archive cannot be written by several processes, and gathering the maps
on rank 0 would bring back the memory wall the shards avoid.

mpi4py is optional: it is imported only when the process was started by an MPI launcher with more than one rank
(:func:`launcher_world_size`) or when ``--mpi`` asks for it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datapipe.diskio import check_output_path
from datapipe.errors import PipelineError
from datapipe.writer import H5Writer, write_virtual_h5

if TYPE_CHECKING:  # the simulation modules load pixell and symlens: imported when a run starts
    from datapipe.settings import SimulationSettings
    from datapipe.simulate import MapSetSimulator

#: Environment variables in which MPI launchers publish the number of ranks (Open MPI, MPICH / Intel MPI / PMI-2,
#: MVAPICH2); Slurm's ``srun`` sets ``SLURM_STEP_NUM_TASKS`` in every task of a job step.
LAUNCHER_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")

INSTALL_HINT = (
    "pip install -r requirements-mpi.txt, after installing an MPI library "
    "(Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev, or mpich; clusters: module load openmpi)"
)


class MPIAbort(Exception):
    """The MPI run stopped on every rank; no output was written.

    Attributes
    ----------
    exit_code : int
        Exit status for the command line: 2 for bad input, 1 when a rank failed while simulating or writing.
    quiet : bool
        True on the ranks that leave the message to rank 0, so that it is printed once.
    """

    def __init__(self, message: str, exit_code: int = 1, quiet: bool = False):
        super().__init__(message)
        self.exit_code = exit_code
        self.quiet = quiet


def launcher_world_size(environ: dict[str, str] | None = None) -> int:
    """Number of ranks announced by an MPI launcher in the environment (1 when there is none).

    Reads the variables in :data:`LAUNCHER_SIZE_VARIABLES`, and ``SLURM_STEP_NUM_TASKS`` inside an ``srun`` job
    step, without initializing MPI.

    Parameters
    ----------
    environ : dict, optional
        Environment to read (default ``os.environ``).

    Returns
    -------
    int
        The largest announced world size, or 1.
    """
    env = os.environ if environ is None else environ
    names = list(LAUNCHER_SIZE_VARIABLES)
    if env.get("SLURM_STEP_ID", "").isdigit():  # a job step started by srun (not the batch script itself)
        names.append("SLURM_STEP_NUM_TASKS")
    sizes = [int(env[name]) for name in names if env.get(name, "").strip().isdigit()]
    return max(sizes, default=1)


def get_world(require: bool = False) -> Any | None:
    """The MPI world communicator when the simulation should run under MPI, else None.

    Parameters
    ----------
    require : bool
        ``--mpi``: use MPI even with one rank, and fail if mpi4py is missing.

    Returns
    -------
    mpi4py.MPI.Comm or None
        ``MPI.COMM_WORLD`` when ``require`` or when more than one rank runs; None for a serial run.

    Raises
    ------
    PipelineError
        mpi4py is not installed but ``--mpi`` was given or a launcher started several ranks.
    """
    launched = launcher_world_size()
    if not require and launched <= 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        why = "--mpi needs mpi4py" if require else f"started as {launched} MPI ranks, but mpi4py is not installed"
        raise PipelineError(f"{why}; install it ({INSTALL_HINT}) or run without MPI") from None
    comm = MPI.COMM_WORLD
    return comm if require or comm.Get_size() > 1 else None


def rank_ranges(nsims: int, size: int) -> list[tuple[int, int]]:
    """Split ``0 .. nsims`` into ``size`` contiguous ``(start, stop)`` ranges differing in length by at most one.

    Parameters
    ----------
    nsims : int
        Number of map sets.
    size : int
        Number of ranks.

    Returns
    -------
    list of (int, int)
        Range of rank ``r`` at position ``r``; ranks beyond ``nsims`` get empty ranges.
    """
    base, extra = divmod(nsims, size)
    bounds = [0]
    for rank in range(size):
        bounds.append(bounds[-1] + base + (1 if rank < extra else 0))
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def shard_folder(output: Path) -> Path:
    """The folder holding the shards of an MPI output: ``<output>.shards`` beside it."""
    output = Path(output)
    return output.with_name(output.name + ".shards")


def shard_name(output: Path, rank: int, size: int) -> str:
    """File name of rank ``rank``'s shard, e.g. ``sims.00001-of-00004.h5``."""
    output = Path(output)
    return f"{output.stem}.{rank:05d}-of-{size:05d}{output.suffix}"


def check_mpi_output(output: Path, overwrite: bool) -> Path:
    """Validate the output of an MPI run: an ``.h5`` path that :func:`check_output_path` accepts, no stray shards.

    Raises
    ------
    PipelineError
        A ``.npz`` output, or any problem :func:`datapipe.diskio.check_output_path` reports, or an existing shard
        folder without ``overwrite``.
    """
    output = check_output_path(Path(output), overwrite)
    if output.suffix.lower() == ".npz":
        raise PipelineError(
            f"output {output} is .npz, which several MPI ranks cannot write; use a .h5 output (one shard per rank "
            "joined by an HDF5 virtual dataset), or run without MPI for .npz"
        )
    shards = shard_folder(output)
    if shards.exists() and not overwrite:
        raise PipelineError(f"shard folder {shards} already exists; pass --overwrite to replace it or choose another "
                            "--output")
    return output


def run_simulation_mpi(comm: Any, settings: SimulationSettings, output: Path, nsims: int, *, workers: int = 1,
                       chunk_size: int = 16, overwrite: bool = False, progress: bool = True,
                       plan: str | None = None) -> Path:
    """Simulate ``nsims`` map sets over the ranks of ``comm`` into a virtual HDF5 file over per-rank shards.

    Every rank of ``comm`` must call this with the same arguments. The assembled arrays equal those of
    :func:`datapipe.runner.run_simulation` with the same settings, whatever the number of ranks.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        Communicator of the ranks taking part (``MPI.COMM_WORLD``).
    settings : SimulationSettings
        What to simulate.
    output : Path
        ``.h5`` / ``.hdf5`` file written by rank 0; the shards go to ``<output>.shards/``.
    nsims : int
        Number of map sets.
    workers : int
        Worker processes per rank (the output does not depend on it).
    chunk_size : int
        Map sets per chunk (the output does not depend on it).
    overwrite : bool
        Replace an existing output and its shard folder.
    progress : bool
        Show rank 0's progress bar.
    plan : str, optional
        Text printed by rank 0 once the output is validated (the command line's summary of the run).

    Returns
    -------
    Path
        The output path (on every rank).

    Raises
    ------
    PipelineError
        On rank 0, for bad input (see :func:`check_mpi_output`).
    MPIAbort
        On the other ranks for bad input (quiet), and on every rank when a rank failed (rank 0 names it).
    """
    from datapipe.simulate import MapSetSimulator

    rank, size = comm.Get_rank(), comm.Get_size()
    output = Path(output)

    # Rank 0 checks the output and creates the temporary shard folder; every rank learns the verdict.
    verdict: tuple[str | None, str | None] = (None, None)
    if rank == 0:
        try:
            check_mpi_output(output, overwrite)
            from datapipe.runner import check_output

            check_output(settings, output, nsims, overwrite)  # the window file and the free space
            verdict = (None, tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.shards-"))
        except PipelineError as exc:
            verdict = (str(exc), None)
    error, tmp_name = comm.bcast(verdict, root=0)
    if error is not None:
        if rank == 0:
            raise PipelineError(error)
        raise MPIAbort(error, exit_code=2, quiet=True)
    tmp_dir = Path(tmp_name)
    if plan and rank == 0:
        print(plan, flush=True)

    start, stop = rank_ranges(nsims, size)[rank]
    local_error = None
    simulator = None
    try:
        simulator = MapSetSimulator(settings)
        if stop > start:
            _write_shard(simulator, settings, tmp_dir / shard_name(output, rank, size), start, stop, nsims,
                         workers, chunk_size, progress and rank == 0, f"rank 0 of {size}")
    except Exception as exc:  # noqa: BLE001 - any failure is reported collectively below, then the run aborts
        local_error = f"{type(exc).__name__}: {exc}"
    # Collective check: nobody assembles anything unless every shard is complete.
    errors = comm.allgather(local_error)
    failed = [(r, e) for r, e in enumerate(errors) if e is not None]
    if failed:
        comm.Barrier()
        if rank == 0:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        message = "; ".join(f"rank {r} failed ({e})" for r, e in failed) + "; no output written"
        raise MPIAbort(message, exit_code=1, quiet=rank != 0)

    if rank == 0:
        assert simulator is not None
        try:
            _assemble(output, tmp_dir, settings, nsims, size, simulator, overwrite)
            error = None
        except Exception as exc:  # noqa: BLE001 - shared with the other ranks so that they exit alike
            shutil.rmtree(tmp_dir, ignore_errors=True)
            error = f"rank 0 failed to assemble {output} ({type(exc).__name__}: {exc}); no output written"
    error = comm.bcast(error if rank == 0 else None, root=0)
    if error is not None:
        raise MPIAbort(error, exit_code=1, quiet=rank != 0)
    return output


def _write_shard(simulator: MapSetSimulator, settings: SimulationSettings, path: Path, start: int, stop: int,
                 nsims: int, workers: int, chunk_size: int, progress: bool, label: str) -> None:
    """Simulate map sets ``start .. stop`` into one shard (an ordinary :class:`H5Writer` file)."""
    from datapipe.runner import build_metadata, chunk_ranges, simulate_chunks

    metadata = build_metadata(settings, nsims, simulator)
    metadata["shard"] = {"start": start, "stop": stop}
    ranges = [(start + a, start + b) for a, b in chunk_ranges(stop - start, chunk_size)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=stop - start, unit="maps", dynamic_ncols=True, desc=f"simulating ({label})")
    try:
        with H5Writer(path, list(settings.maps), stop - start, settings.npix, metadata) as writer:
            for first, arrays in simulate_chunks(simulator, ranges, workers):
                writer.write(first - start, arrays)
                if bar is not None:
                    bar.update(len(next(iter(arrays.values()))))
    finally:
        if bar is not None:
            bar.close()


def _assemble(output: Path, tmp_dir: Path, settings: SimulationSettings, nsims: int, size: int,
              simulator: MapSetSimulator, overwrite: bool) -> None:
    """Rank 0, all shards complete: move them to the shard folder, write the virtual file and the window file."""
    from datapipe.runner import build_metadata, staged_window

    final_dir = shard_folder(output)
    shards = []
    for rank, (start, stop) in enumerate(rank_ranges(nsims, size)):
        name = shard_name(output, rank, size)
        if stop > start:
            if not (tmp_dir / name).is_file():
                raise RuntimeError(f"shard {name} of rank {rank} is missing")
            shards.append((f"{final_dir.name}/{name}", start, stop))
    old = None
    if final_dir.exists():
        if not overwrite:
            raise RuntimeError(f"{final_dir} appeared during the run")
        old = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{final_dir.name}.old-"))
        os.replace(final_dir, old / final_dir.name)
    os.chmod(tmp_dir, 0o755)
    os.replace(tmp_dir, final_dir)
    try:
        metadata = build_metadata(settings, nsims, simulator)
        metadata["mpi"] = {"ranks": size, "shards": [{"file": f, "start": a, "stop": b} for f, a, b in shards]}
        # The rename inside write_virtual_h5 is the commit point: before it, no final file exists.
        with staged_window(output, settings, simulator, overwrite):
            write_virtual_h5(output, list(settings.maps), nsims, settings.npix, shards, metadata)
    except BaseException:
        shutil.rmtree(final_dir, ignore_errors=True)
        if old is not None:
            os.replace(old / final_dir.name, final_dir)
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
