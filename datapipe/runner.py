"""Run a simulation: chunk the map-set indices, simulate (optionally in worker processes), stream to disk."""

from __future__ import annotations

import datetime
import multiprocessing
import platform
import subprocess
import sys
from collections import deque
from collections.abc import Iterator
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np

from datapipe.settings import SimulationSettings
from datapipe.simulate import MapSetSimulator
from datapipe.writer import check_output_path, open_writer, write_window_file

WINDOW_FILE_NAME = "window_info.npz"
_PACKAGES = ("numpy", "scipy", "pixell", "ducc0", "symlens", "camb", "h5py")

_worker_simulator: MapSetSimulator | None = None


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages the simulation depends on."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def code_version() -> str:
    """``git describe`` of the repository when available, else the installed package version."""
    repo = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=repo, capture_output=True,
                             text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        try:
            return importlib_metadata.version("resunet-cmb")
        except importlib_metadata.PackageNotFoundError:
            return "unknown"


def build_metadata(settings: SimulationSettings, nsims: int, simulator: MapSetSimulator) -> dict:
    """JSON-serializable description of a run, stored inside the output."""
    return {
        "settings": settings.to_dict(),
        "nsims": nsims,
        "seed": settings.seed,
        "arrays": list(settings.maps),
        "units": {"t/q/u/e/b maps": "uK", "kappa, tau, phi": "dimensionless", "alpha": "radians"},
        "w2": simulator.w2,
        "flipped_up_down": True,
        "versions": package_versions(),
        "code_version": code_version(),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
    }


def expected_output_bytes(settings: SimulationSettings, nsims: int) -> int:
    """Size of the output arrays in bytes (float32)."""
    return 4 * nsims * settings.npix**2 * len(settings.maps)


def chunk_ranges(nsims: int, chunk_size: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` index ranges covering ``0 .. nsims``."""
    return [(start, min(start + chunk_size, nsims)) for start in range(0, nsims, chunk_size)]


def _init_worker(simulator: MapSetSimulator) -> None:
    global _worker_simulator
    _worker_simulator = simulator


def _simulate_range(bounds: tuple[int, int]) -> tuple[int, dict[str, np.ndarray]]:
    start, stop = bounds
    assert _worker_simulator is not None
    return start, _worker_simulator.simulate(np.arange(start, stop))


def simulate_chunks(simulator: MapSetSimulator, ranges: list[tuple[int, int]],
                    workers: int = 1) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yield ``(start, arrays)`` for each range, in order, computed in ``workers`` processes.

    At most ``2 × workers`` chunks are in flight, so memory stays bounded whatever the number of chunks.
    """
    if workers <= 1:
        for start, stop in ranges:
            yield start, simulator.simulate(np.arange(start, stop))
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(simulator,)) as pool:
        pending: deque = deque()
        queue = iter(ranges)
        for bounds in queue:
            pending.append(pool.apply_async(_simulate_range, (bounds,)))
            if len(pending) >= 2 * workers:
                break
        while pending:
            yield pending.popleft().get()
            nxt = next(queue, None)
            if nxt is not None:
                pending.append(pool.apply_async(_simulate_range, (nxt,)))


def run_simulation(settings: SimulationSettings, output: Path, nsims: int, *, workers: int = 1,
                   chunk_size: int = 16, overwrite: bool = False, progress: bool = True) -> Path:
    """Simulate ``nsims`` map sets and write them to ``output`` plus ``window_info.npz`` beside it.

    Parameters
    ----------
    settings : SimulationSettings
        What to simulate.
    output : Path
        ``.npz`` or ``.h5`` file.
    nsims : int
        Number of map sets.
    workers : int
        Worker processes (the output does not depend on it).
    chunk_size : int
        Map sets per chunk (the output does not depend on it).
    overwrite : bool
        Replace an existing output.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    Path
        The output path.
    """
    output = check_output_path(Path(output), overwrite)
    simulator = MapSetSimulator(settings)
    metadata = build_metadata(settings, nsims, simulator)
    ranges = chunk_ranges(nsims, chunk_size)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=nsims, unit="maps", unit_scale=False, dynamic_ncols=True, desc="simulating")
    try:
        with open_writer(output, list(settings.maps), nsims, settings.npix, metadata) as writer:
            for start, arrays in simulate_chunks(simulator, ranges, workers):
                writer.write(start, arrays)
                if bar is not None:
                    bar.update(len(next(iter(arrays.values()))))
    finally:
        if bar is not None:
            bar.close()
    write_window_file(output.parent / WINDOW_FILE_NAME, simulator.taper, simulator.w2)
    return output
