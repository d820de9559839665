"""Run a simulation: chunk the map-set indices, simulate (optionally in worker processes), stream to disk."""

from __future__ import annotations

import multiprocessing
import os
import platform
import subprocess
import tempfile
import zipfile
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np

from datapipe.diskio import check_free_space, check_output_path
from datapipe.errors import PipelineError
from datapipe.interrupts import starting_workers, worker_started
from datapipe.settings import SimulationSettings, check_run_options
from datapipe.simulate import MapSetSimulator
from datapipe.taper import cosine_taper, w2_factor
from datapipe.writer import open_writer, write_window_file

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
    """JSON-serializable description of a run, stored inside the output.

    It holds no time stamp and no command line, so that identical settings give identical files (whatever the
    number of workers, the chunk size, or the day).
    """
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
    }


def expected_output_bytes(settings: SimulationSettings, nsims: int) -> int:
    """Size of the output arrays in bytes (float32)."""
    return 4 * nsims * settings.npix**2 * len(settings.maps)


def planned_disk_bytes(settings: SimulationSettings, nsims: int, output: Path) -> int:
    """Disk space a run needs at its peak, in bytes: the arrays, plus one array while a ``.npz`` is packed (its
    parts are moved into the archive one by one), plus the window file."""
    arrays = expected_output_bytes(settings, nsims)
    packing = arrays // len(settings.maps) if Path(output).suffix.lower() == ".npz" else 0
    return arrays + packing + 8 * settings.npix**2


def describe_taper(taper: np.ndarray, taper_deg: float | None = None, pixel_arcmin: float | None = None) -> str:
    """A taper in words, e.g. ``128x128 pixels, 38 pixels per edge (--taper-deg 1.5 at 2.34375 arcmin)``."""
    n = taper.shape[-1]
    row = taper[n // 2]
    width = int(np.argmax(row >= 1.0 - 1e-12)) if np.any(row >= 1.0 - 1e-12) else n // 2
    text = f"{n}x{n} pixels, {width} pixels per edge" if width else f"{n}x{n} pixels, no taper"
    if taper_deg is not None and pixel_arcmin is not None:
        text += f" (--taper-deg {taper_deg:g} at {pixel_arcmin:g} arcmin)"
    return text


def window_needs_writing(path: Path, settings: SimulationSettings, overwrite: bool) -> bool:
    """Whether the run should write ``window_info.npz`` at ``path``: no if an identical one is there.

    Raises
    ------
    PipelineError
        The file holds another taper (or cannot be read) and ``overwrite`` is false: the data set beside it would
        lose its taper.
    """
    path = Path(path)
    if not path.exists():
        return True
    taper = cosine_taper(settings.npix, settings.taper_pixels)[::-1]
    try:
        with np.load(path) as f:
            old = np.asarray(f["taper"], dtype=float)
            old_w2 = float(f["w2"])
            old_deg = float(f["taper_deg"]) if "taper_deg" in f.files else None
            old_pix = float(f["pixel_arcmin"]) if "pixel_arcmin" in f.files else None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        if overwrite:
            return True
        raise PipelineError(f"{path} exists but is not a readable window file ({exc}); pass --overwrite to replace "
                            "it or write into another folder") from None
    same = old.shape == taper.shape and np.allclose(old, taper, rtol=0, atol=1e-12)
    if same and np.isclose(old_w2, w2_factor(taper)):
        return False
    if not overwrite:
        raise PipelineError(
            f"{path} belongs to another data set: its taper is {describe_taper(old, old_deg, old_pix)}, this run's is "
            f"{describe_taper(taper, settings.taper_deg, settings.pixel_arcmin)}; write into another folder, or pass "
            "--overwrite to replace it"
        )
    return True


def check_output(settings: SimulationSettings, output: Path, nsims: int, overwrite: bool) -> Path:
    """Every check on where a run writes, before any work: the output path, the window file, the free space.

    Raises
    ------
    PipelineError
        See :func:`datapipe.diskio.check_output_path`, :func:`window_needs_writing` and
        :func:`datapipe.diskio.check_free_space`.
    """
    output = check_output_path(Path(output), overwrite)
    window_needs_writing(output.parent / WINDOW_FILE_NAME, settings, overwrite)
    check_free_space(output.parent if str(output.parent) else Path("."), planned_disk_bytes(settings, nsims, output))
    return output


def chunk_ranges(nsims: int, chunk_size: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` index ranges covering ``0 .. nsims``."""
    return [(start, min(start + chunk_size, nsims)) for start in range(0, nsims, chunk_size)]


def _init_worker(simulator: MapSetSimulator) -> None:
    global _worker_simulator
    worker_started()
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
    with ExitStack() as stack:
        with starting_workers():  # Ctrl-C and SIGTERM go to this process only; it stops the pool
            pool = stack.enter_context(context.Pool(workers, initializer=_init_worker, initargs=(simulator,)))
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
    check_run_options(nsims, workers, chunk_size)
    output = check_output(settings, Path(output), nsims, overwrite)
    simulator = MapSetSimulator(settings)
    metadata = build_metadata(settings, nsims, simulator)
    ranges = chunk_ranges(nsims, chunk_size)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=nsims, unit="maps", unit_scale=False, dynamic_ncols=True, desc="simulating")
    try:
        with staged_window(output, settings, simulator, overwrite), \
                open_writer(output, list(settings.maps), nsims, settings.npix, metadata) as writer:
            for start, arrays in simulate_chunks(simulator, ranges, workers):
                writer.write(start, arrays)
                if bar is not None:
                    bar.update(len(next(iter(arrays.values()))))
    finally:
        if bar is not None:
            bar.close()
    return output


@contextmanager
def staged_window(output: Path, settings: SimulationSettings, simulator: MapSetSimulator,
                  overwrite: bool) -> Iterator[None]:
    """Write the run's ``window_info.npz`` (beside ``output``) under a temporary name first; it replaces the real
    one only when the block, which writes the output itself, succeeds. An identical window file is left alone.
    """
    path = Path(output).parent / WINDOW_FILE_NAME
    if not window_needs_writing(path, settings, overwrite):
        yield
        return
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    staged = Path(name)
    try:
        write_window_file(staged, simulator.taper, simulator.w2, settings.taper_deg, settings.pixel_arcmin)
        yield
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)
