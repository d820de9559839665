"""Reading map files written by the data pipeline (``.npz``, or ``.h5`` / ``.hdf5`` with datasets at the root).

Map files hold float arrays of shape (nsims, npix, npix) named as in the pipeline (``q_len``, ``u_len``, ``e_unl``,
``tru_kappa``, ``tru_tau``, ``rec_kappa``, …; CMB maps in μK, κ and τ dimensionless). Other entries (``metadata``)
are ignored. Headers are read without the map data, so files can be checked before anything large is loaded.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.config import TrainingError

NON_MAP_ENTRIES = frozenset({"metadata"})


def is_h5(path: Path) -> bool:
    """Whether a path names an HDF5 file (by its suffix)."""
    return path.suffix.lower() in (".h5", ".hdf5")


def inspect_map_file(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the map arrays in a ``.npz`` or ``.h5`` file, read from headers only (no map data).

    Parameters
    ----------
    path : str or pathlib.Path
        The map file.

    Returns
    -------
    dict of str to tuple of int
        Array name → shape, in file order; entries such as ``metadata`` left out.

    Raises
    ------
    TrainingError
        If the file does not exist or cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"data file {str(path)!r} does not exist (set data_path in the config)")
    try:
        if is_h5(path):
            import h5py

            with h5py.File(path, "r") as f:
                shapes = {k: tuple(f[k].shape) for k in f if isinstance(f[k], h5py.Dataset)}
        else:
            shapes = {}
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    name = info.filename.removesuffix(".npy")
                    if name not in NON_MAP_ENTRIES:
                        with zf.open(info) as member:
                            shapes[name] = _npy_shape(member)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise TrainingError(f"cannot read data file {str(path)!r}: {exc}") from None
    return {k: v for k, v in shapes.items() if k not in NON_MAP_ENTRIES}


def _npy_shape(member: Any) -> tuple[int, ...]:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return tuple(np.lib.format.read_array_header_1_0(member)[0])
    if version == (2, 0):
        return tuple(np.lib.format.read_array_header_2_0(member)[0])
    return np.lib.format.read_array(member, allow_pickle=False).shape  # other versions: rare, read the array


def list_map_file(path: str | Path) -> list[str]:
    """Names of the map arrays in a ``.npz`` or ``.h5`` file (entries such as ``metadata`` left out)."""
    return list(inspect_map_file(path))


def check_map_file(path: str | Path, names: Sequence[str], imagesize: int) -> int:
    """Check from the file's headers that the named arrays exist and hold imagesize × imagesize maps.

    Parameters
    ----------
    path : str or pathlib.Path
        ``.npz`` or ``.h5`` / ``.hdf5`` file.
    names : sequence of str
        Arrays the run needs.
    imagesize : int
        Expected map side in pixels.

    Returns
    -------
    int
        Number of maps (nsims).

    Raises
    ------
    TrainingError
        If the file is missing or unreadable, an array is missing (the message lists what the file has), maps are
        not imagesize × imagesize, or arrays hold different numbers of maps.
    """
    path = Path(path)
    shapes = inspect_map_file(path)
    missing = [n for n in names if n not in shapes]
    if missing:
        raise TrainingError(
            f"data file {str(path)!r} lacks array(s) {', '.join(missing)}; it has: {', '.join(shapes) or 'none'}"
        )
    nsims = None
    for name in names:
        shape = shapes[name]
        if len(shape) == 4 and shape[-1] == 1:
            shape = shape[:3]
        if len(shape) != 3:
            raise TrainingError(f"array {name!r} in {str(path)!r} has shape {shape}; expected (nsims, npix, npix)")
        if shape[1:] != (imagesize, imagesize):
            raise TrainingError(
                f"array {name!r} holds {shape[1]}x{shape[2]} maps but imagesize is {imagesize}; "
                "set imagesize to the map size or regenerate the maps"
            )
        if nsims is None:
            nsims = shape[0]
        elif shape[0] != nsims:
            raise TrainingError(
                f"arrays in {str(path)!r} hold different numbers of maps: {names[0]!r} {nsims}, {name!r} {shape[0]}"
            )
    return int(nsims or 0)


def read_maps(path: str | Path, names: Sequence[str], imagesize: int) -> dict[str, np.ndarray]:
    """Read only the named arrays from a map file and check them.

    Parameters
    ----------
    path : str or pathlib.Path
        ``.npz`` or ``.h5`` / ``.hdf5`` file.
    names : sequence of str
        Arrays to read, e.g. ``["q_len", "u_len", "tru_kappa"]``.
    imagesize : int
        Expected map side in pixels.

    Returns
    -------
    dict of str to numpy.ndarray
        Each array (nsims, imagesize, imagesize), floating point, in the file's units.

    Raises
    ------
    TrainingError
        On any problem listed in :func:`check_map_file`, or if a map has NaN or inf values (the message names the
        array and the map index).
    """
    path = Path(path)
    check_map_file(path, names, imagesize)
    try:
        arrays = _read_arrays(path, names)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise TrainingError(f"cannot read data file {str(path)!r}: {exc}") from None
    for name, arr in arrays.items():
        if arr.ndim == 4:
            arr = arrays[name] = arr[..., 0]
        if not np.issubdtype(arr.dtype, np.floating):
            arr = arrays[name] = arr.astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(arr).reshape(arr.shape[0], -1).all(axis=1))
        if bad.size:
            raise TrainingError(
                f"array {name!r} has NaN or inf values in map index {bad[0]}"
                + (f" (and {bad.size - 1} more maps)" if bad.size > 1 else "")
            )
    return arrays


def _read_arrays(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    if is_h5(path):
        import h5py

        with h5py.File(path, "r") as f:
            return {n: f[n][...] for n in names}
    # NpzFile reads one member per key access: only the requested arrays are decompressed.
    with np.load(path, allow_pickle=False) as f:
        return {n: f[n] for n in names}
