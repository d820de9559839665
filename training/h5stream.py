"""Training data streamed from an HDF5 map file: nothing is loaded whole, so the data set may exceed the RAM.

With ``data_path`` ending in ``.h5`` / ``.hdf5`` (a file of ``datapipe/datapipeline.py``, also the virtual file of an
MPI run), :data:`H5_STREAM_SOURCE` serves the batches:

- **split** by index exactly like the in-memory source (:func:`training.data.split_indices`): the same maps land in
  the same splits for the same file and seed;
- **standardization** statistics of the training split from one streaming pass over the file
  (:func:`streaming_standardization`: contiguous chunks of :data:`STATS_CHUNK_MAPS` maps, per-chunk mean and squared
  deviations combined with Chan et al.'s update, in float64). The same pass rejects NaN / inf in any map of the
  feature and target arrays;
- **training batches in contiguous blocks** (:func:`epoch_batches`): the training indices, in file order, are cut
  into blocks of ``data_block_maps`` consecutive maps starting at a random phase; the blocks are put in a random
  order and the batches are consecutive runs of that order. Each batch is thus read in a few contiguous slices
  (one per block), never map by map, and both the batch contents and their order change every epoch, reproducibly
  from ``(seed, epoch)``. The pipeline's map sets are independent draws (map set *i* depends only on (seed, *i*)),
  so consecutive maps make batches as random as any; a file sorted by some property should be shuffled first;
- **validation / test batches** in file order, as in the in-memory source (so the saved test set and predictions
  have the same order);
- optional **prefetch** by ``data_workers`` threads (or processes with ``data_multiprocessing``; each process opens
  the file itself).

Every read goes through :class:`H5Column`, which opens the file lazily once per process and merges nearby row
indices into slices (:func:`read_rows`). The test split is handed to the training loop as :class:`SplitView` objects,
read chunk by chunk when ``test_data.npz`` and ``predictions.npz`` are written.

This module does not import Keras (the batches live in :mod:`training.batches`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.config import TrainingConfig, TrainingError

#: Maps per read in the statistics pass (e.g. 16 MB per array at 128 × 128 float32, 32 MB as float64).
STATS_CHUNK_MAPS = 256
#: Row indices at most this far apart are read in one slice (reading a few unneeded maps beats a separate read).
MAX_GAP_ROWS = 4
# Random stream of the batch order, the same as training.batches uses for in-memory data.
_SHUFFLE_STREAM = 1


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


def streaming_standardization(columns: Mapping[str, H5Column], indices: np.ndarray,
                              chunk: int = STATS_CHUNK_MAPS) -> Any:
    """Training-split mean and standard deviation of each array from one pass over the file.

    The file is read in contiguous chunks of ``chunk`` maps covering the training indices; each chunk contributes
    the count, mean and sum of squared deviations of its training maps, merged with the pairwise update of Chan,
    Golub & LeVeque (float64). The result equals the two-pass :meth:`training.data.Standardization.fit` to rounding.

    Parameters
    ----------
    columns : mapping of str to H5Column
        The arrays to standardize (features and targets).
    indices : numpy.ndarray
        Training-split rows.
    chunk : int
        Maps per read.

    Returns
    -------
    training.data.Standardization
        Means and standard deviations in the arrays' physical units.

    Raises
    ------
    TrainingError
        If a map read in the pass has NaN or inf values (array and map index named), or an array is constant over
        the training split.
    """
    from training.data import Standardization

    indices = np.sort(np.asarray(indices))
    nsims = len(next(iter(columns.values())))
    selected = np.zeros(nsims, dtype=bool)
    selected[indices] = True
    stats = {name: (0, 0.0, 0.0) for name in columns}  # (count, mean, M2) per array
    for start in range(0, nsims, chunk):
        stop = min(start + chunk, nsims)
        keep = selected[start:stop]
        for name, column in columns.items():
            block = column[start:stop]
            bad = np.flatnonzero(~np.isfinite(block).reshape(len(block), -1).all(axis=1))
            if bad.size:
                raise TrainingError(f"array {name!r} has NaN or inf values in map index {start + bad[0]}")
            values = np.asarray(block[keep], dtype=np.float64)
            if values.size == 0:
                continue
            n_b, mean_b = values.size, float(values.mean())
            m2_b = float(np.sum((values - mean_b) ** 2))
            n_a, mean_a, m2_a = stats[name]
            n = n_a + n_b
            delta = mean_b - mean_a
            stats[name] = (n, mean_a + delta * n_b / n, m2_a + m2_b + delta**2 * n_a * n_b / n)
    means, stds = {}, {}
    for name, (n, mean, m2) in stats.items():
        var = m2 / n
        if not var > 0:
            raise TrainingError(f"array {name!r} is constant over the training split; it cannot be standardized")
        means[name], stds[name] = mean, float(np.sqrt(var))
    return Standardization(means, stds)


def epoch_batches(indices: np.ndarray, batch_size: int, block: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The training batches of one epoch, drawn in contiguous blocks (see the module docstring).

    Parameters
    ----------
    indices : numpy.ndarray
        Training rows, sorted (file order).
    batch_size : int
        Maps per batch; the last batch holds the remainder.
    block : int
        Consecutive training maps per block (``data_block_maps``).
    seed, epoch : int
        The order is drawn from ``numpy.random.default_rng([seed, 1, epoch])``.

    Returns
    -------
    list of numpy.ndarray
        ``ceil(n / batch_size)`` sorted row arrays, together covering ``indices`` once.
    """
    indices = np.asarray(indices)
    n = len(indices)
    rng = np.random.default_rng([seed, _SHUFFLE_STREAM, epoch])
    phase = int(rng.integers(block)) if n > block else 0
    rolled = np.roll(indices, -phase)
    blocks = [rolled[i : i + block] for i in range(0, n, block)]
    order = np.concatenate([blocks[j] for j in rng.permutation(len(blocks))]) if blocks else rolled
    return [np.sort(order[i : i + batch_size]) for i in range(0, n, batch_size)]


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


def check_h5_stream_source(cfg: TrainingConfig) -> None:
    """Cheap checks from the file's headers: arrays, map size, split sizes, shards of virtual datasets."""
    from training.data import check_map_file_source

    check_map_file_source(cfg)
    try:
        check_virtual_sources(cfg.resolve(cfg.data_path), cfg.arrays)
    except OSError as exc:
        raise TrainingError(f"cannot read data file {cfg.data_path!r}: {exc}") from None


def load_h5_stream_source(cfg: TrainingConfig) -> Any:
    """Data source for an HDF5 ``data_path``: batches streamed from the file (see the module docstring).

    Parameters
    ----------
    cfg : TrainingConfig
        Uses ``data_path``, the arrays, ``imagesize``, the splits, ``batch_size``, ``seed``, ``data_block_maps``,
        ``data_workers`` and ``data_multiprocessing``.

    Returns
    -------
    training.data.DataBundle
        ``test_arrays`` holds :class:`SplitView` objects (read on demand), not arrays.

    Raises
    ------
    TrainingError
        Any problem of :func:`check_h5_stream_source`, or NaN / inf / constant arrays found by the statistics pass.
    """
    from training.data import DataBundle, check_map_file, check_split_sizes, split_indices

    path = cfg.resolve(cfg.data_path)
    nsims = check_map_file(path, cfg.arrays, cfg.imagesize)
    check_split_sizes(nsims, cfg.splits, cfg.batch_size)
    splits = split_indices(nsims, cfg.splits, cfg.seed)
    file = H5MapFile(path)
    try:
        columns = {name: H5Column(file, name) for name in cfg.arrays}
        used = list(dict.fromkeys([*cfg.feat_used.values(), *cfg.target_used.values()]))
        std = streaming_standardization({name: columns[name] for name in used}, splits["train"])
    except OSError as exc:
        raise TrainingError(f"cannot read data file {str(path)!r}: {exc}") from None

    from training.batches import H5MapDataset, MapDataset  # Keras enters here, once the data checked out

    loader = {"workers": cfg.data_workers, "use_multiprocessing": cfg.data_multiprocessing}
    common = (cfg.feat_used, cfg.target_used, std, cfg.batch_size)
    return DataBundle(
        train=H5MapDataset(columns, splits["train"], *common, block_maps=cfg.data_block_maps, seed=cfg.seed,
                           **loader),
        val=MapDataset(columns, splits["val"], *common, **loader),
        test=MapDataset(columns, splits["test"], *common, **loader),
        standardization=std,
        test_arrays={name: SplitView(column, splits["test"]) for name, column in columns.items()},
        sizes={name: int(idx.size) for name, idx in splits.items()},
        split_indices=splits,
        source=f"{path} ({nsims} maps of {cfg.imagesize}x{cfg.imagesize}, streamed from HDF5)",
        close=file.close,
    )
