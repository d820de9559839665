"""HDF5 map files read on demand: nothing is loaded whole, so a data set may exceed the RAM.

Every read goes through :class:`H5Column`, which opens the file lazily once per process (threads and worker
processes alike) and merges nearby row indices into slices (:func:`read_rows`). :class:`SplitView` presents the maps
of one split as an array read chunk by chunk. :func:`check_virtual_sources` checks the shards behind the virtual
datasets of an MPI run's output. The data source built on these is :mod:`training.data.h5source`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.config import TrainingError

#: Row indices at most this far apart are read in one slice (reading a few unneeded maps beats a separate read).
MAX_GAP_ROWS = 4


class H5MapFile:
    """An HDF5 map file opened lazily, once per process (for threads and worker processes alike).

    Pickling keeps only the path, so worker processes reopen the file themselves.

    Parameters
    ----------
    path : str or pathlib.Path
        The file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._handle: Any = None
        self._pid: int | None = None

    def dataset(self, name: str) -> Any:
        """The h5py dataset ``name``, from this process's handle."""
        if self._handle is None or self._pid != os.getpid():
            import h5py

            self._handle = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._handle[name]

    def close(self) -> None:
        """Close this process's handle (it is reopened on the next read)."""
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle, self._pid = None, None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_handle": None, "_pid": None}


def read_rows(dataset: Any, rows: np.ndarray, max_gap: int = MAX_GAP_ROWS) -> np.ndarray:
    """Read the given rows of an array in as few contiguous slices as possible.

    Parameters
    ----------
    dataset : h5py.Dataset or numpy.ndarray
        Array indexed along its first axis.
    rows : numpy.ndarray
        Row indices, in any order, without repeats.
    max_gap : int
        Rows at most this far apart are read in one slice (the rows in between are discarded).

    Returns
    -------
    numpy.ndarray
        ``dataset[rows]``, in the order of ``rows``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    out = np.empty((len(rows), *dataset.shape[1:]), dtype=dataset.dtype)
    if len(rows) == 0:
        return out
    breaks = np.flatnonzero(np.diff(ordered) > max_gap) + 1
    for run, where in zip(np.split(ordered, breaks), np.split(order, breaks), strict=True):
        block = dataset[int(run[0]) : int(run[-1]) + 1]
        out[where] = block[run - run[0]]
    return out


class H5Column:
    """One map array of an HDF5 file, read on demand: ``column[rows]`` or ``column[a:b]`` → float maps.

    Arrays stored as ``(nsims, npix, npix, 1)`` are returned as ``(…, npix, npix)``; integer arrays as float32.

    Parameters
    ----------
    file : H5MapFile
        The (lazily opened) file.
    name : str
        Dataset name at the file's root, e.g. ``"q_len"``.
    """

    def __init__(self, file: H5MapFile, name: str) -> None:
        self.file = file
        self.name = name
        ds = file.dataset(name)
        self.shape = tuple(ds.shape[:3])
        self.dtype = ds.dtype if np.issubdtype(ds.dtype, np.floating) else np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice | np.ndarray | Sequence[int]) -> np.ndarray:
        ds = self.file.dataset(self.name)
        block = ds[key] if isinstance(key, slice) else read_rows(ds, np.asarray(key))
        if block.ndim == 4:
            block = block[..., 0]
        return block.astype(self.dtype, copy=False)


class SplitView:
    """The maps of one split of an :class:`H5Column`, as a read-only array ``(n, npix, npix)`` read on demand.

    Parameters
    ----------
    column : H5Column
        The array in the file.
    indices : numpy.ndarray
        Rows of the split, in the order the view presents them.
    """

    def __init__(self, column: H5Column, indices: np.ndarray) -> None:
        self.column = column
        self.indices = np.asarray(indices)
        self.shape = (len(self.indices), *column.shape[1:])
        self.dtype = column.dtype

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        return self.column[self.indices[key]]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """All maps of the split (reads them all; for small test sets and tests)."""
        arr = self[slice(None)]
        return arr if dtype is None else arr.astype(dtype)


def check_virtual_sources(path: str | Path, names: Sequence[str]) -> None:
    """Require the shard files behind virtual datasets (an MPI run's output) to exist.

    Raises
    ------
    TrainingError
        Naming the array and the missing shard.
    """
    import h5py

    path = Path(path)
    with h5py.File(path, "r") as f:
        for name in names:
            ds = f[name]
            if not ds.is_virtual:
                continue
            for source in ds.virtual_sources():
                if source.file_name == ".":
                    continue
                shard = Path(source.file_name)
                if not (shard if shard.is_absolute() else path.parent / shard).is_file():
                    raise TrainingError(
                        f"array {name!r} of {str(path)!r} is a virtual dataset whose shard {source.file_name} is "
                        "missing; keep the .shards folder beside the file (move them together)"
                    )
