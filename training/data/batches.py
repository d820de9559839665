"""Batches of standardized maps for Keras: ``keras.utils.PyDataset`` objects over in-memory or HDF5 map arrays.

Together with :mod:`training.data.simstream`, the only part of the data layer that needs Keras; the sources import it
once the data checked out.
"""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from training.data.order import epoch_batches, epoch_order
from training.data.standardization import Standardization

_fork_hook_registered = False


def _reset_worker_signals() -> None:
    """In a forked batch worker process: leave Ctrl-C and SIGTERM to the training process.

    Forked workers inherit the training loop's interrupt handler (which would keep them alive and print its notice
    when Keras stops the pool): they ignore Ctrl-C, which reaches the whole process group, and die on SIGTERM.
    """
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except ValueError:  # not the child's main thread: nothing to undo there
        pass


def _register_worker_signal_reset() -> None:
    global _fork_hook_registered
    if not _fork_hook_registered:
        os.register_at_fork(after_in_child=_reset_worker_signals)
        _fork_hook_registered = True


class MapDataset(keras.utils.PyDataset):
    """Batches of standardized maps, ``(inputs, targets)`` dicts keyed by model input and output names.

    The dataset keeps the arrays in physical units and standardizes each batch as it is drawn, so no standardized
    copy of the data is held in memory. With ``shuffle``, the batch order of epoch *e* is a permutation drawn from
    ``numpy.random.default_rng([seed, 1, e])`` (:func:`training.data.order.epoch_order`): reproducible, and the same
    after a resume (see :meth:`set_epoch`).

    Parameters
    ----------
    arrays : mapping of str to array
        Arrays by name, (nsims, npix, npix) each; NumPy arrays or h5py datasets.
    indices : numpy.ndarray
        Maps of this split.
    inputs, targets : dict of str to str
        Model input / output name → array name (``feat_used``, ``target_used``). ``targets`` may be empty.
    standardization : Standardization
        Statistics of the training split.
    batch_size : int
        Maps per batch; the last batch may be smaller.
    shuffle : bool
        Draw a new map order every epoch.
    seed : int
        Seed of the shuffling.
    **kwargs
        Passed to ``keras.utils.PyDataset`` (``workers``, ``use_multiprocessing``, ``max_queue_size``).
    """

    def __init__(
        self,
        arrays: Mapping[str, Any],
        indices: np.ndarray,
        inputs: Mapping[str, str],
        targets: Mapping[str, str],
        standardization: Standardization,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.arrays = arrays
        self.indices = np.asarray(indices)
        self.inputs = dict(inputs)
        self.targets = dict(targets)
        self.standardization = standardization
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self._order_epoch: int | None = None
        self._order = self.indices
        if self.use_multiprocessing:
            _register_worker_signal_reset()

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch counter (the shuffling stream), e.g. to the epoch a resumed run restarts from."""
        self.epoch = int(epoch)

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def _current_order(self) -> np.ndarray:
        if not self.shuffle:
            return self.indices
        if self._order_epoch != self.epoch:
            self._order = epoch_order(self.indices, self.seed, self.epoch)
            self._order_epoch = self.epoch
        return self._order

    def batch_indices(self, index: int) -> np.ndarray:
        """Map indices of batch ``index`` of the current epoch (sorted, which h5py needs for reading)."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range ({len(self)} batches)")
        return np.sort(self._current_order()[index * self.batch_size : (index + 1) * self.batch_size])

    def __getitem__(self, index: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        idx = self.batch_indices(index)
        std = self.standardization

        def take(names: Mapping[str, str]) -> dict[str, np.ndarray]:
            return {key: std.apply(arr, self.arrays[arr][idx])[..., None] for key, arr in names.items()}

        return take(self.inputs), take(self.targets)

    @property
    def last_batch_size(self) -> int:
        """Maps in the last batch of an epoch (``batch_size`` unless the split does not divide evenly)."""
        return len(self.indices) - (len(self) - 1) * self.batch_size


class H5MapDataset(MapDataset):
    """Training batches streamed from an HDF5 file, shuffled per epoch in contiguous blocks.

    The batches of epoch *e* are :func:`training.data.order.epoch_batches` of the training indices: runs of
    ``block_maps`` consecutive maps, in a random order drawn from ``numpy.random.default_rng([seed, 1, e])``, so
    each batch is read in a few contiguous slices. Standardization, epoch counting and :meth:`set_epoch` are those
    of :class:`MapDataset`.

    Parameters
    ----------
    arrays : mapping of str to training.data.h5file.H5Column
        The file's arrays, read on demand.
    indices : numpy.ndarray
        Training rows.
    inputs, targets, standardization, batch_size, seed
        As for :class:`MapDataset`.
    block_maps : int
        Consecutive maps per block (``data_block_maps``).
    **kwargs
        Passed to ``keras.utils.PyDataset`` (``workers``, ``use_multiprocessing``, ``max_queue_size``).
    """

    def __init__(
        self,
        arrays: Mapping[str, Any],
        indices: np.ndarray,
        inputs: Mapping[str, str],
        targets: Mapping[str, str],
        standardization: Standardization,
        batch_size: int,
        block_maps: int = 16,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(arrays, np.sort(indices), inputs, targets, standardization, batch_size, True, seed, **kwargs)
        self.block_maps = int(block_maps)
        self._epoch_batches: tuple[int, list[np.ndarray]] | None = None

    def batch_indices(self, index: int) -> np.ndarray:
        """Map indices of batch ``index`` of the current epoch (sorted: read in file order)."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range ({len(self)} batches)")
        cached = self._epoch_batches  # one read: worker threads may replace it concurrently
        if cached is None or cached[0] != self.epoch:
            cached = (self.epoch, epoch_batches(self.indices, self.batch_size, self.block_maps, self.seed, self.epoch))
            self._epoch_batches = cached
        return cached[1][index]


def _leading(batch: Any) -> int:
    """Number of maps in a batch (a tuple of dicts of arrays)."""
    leaf = batch
    while isinstance(leaf, tuple | list | dict):
        leaf = next(iter(leaf.values())) if isinstance(leaf, dict) else leaf[0]
    return int(np.shape(leaf)[0])


def _map_arrays(batch: Any, fn: Any) -> Any:
    if isinstance(batch, dict):
        return {k: _map_arrays(v, fn) for k, v in batch.items()}
    if isinstance(batch, tuple | list):
        return type(batch)(_map_arrays(v, fn) for v in batch)
    return fn(np.asarray(batch))


class ReplicaBatches(keras.utils.PyDataset):
    """Batches of another dataset resized to multiples of the replica count, for data-parallel training.

    Every replica must receive the same number of maps. Without ``pad``, a batch keeps its first
    ``replicas × floor(size / replicas)`` maps (a last batch smaller than the replica count is dropped); with
    ``pad`` (for predictions) the last batch is completed by repeating its last map, and the predictions for the
    repeats must be dropped by the caller (they come last). With ``share=(index, count)`` each of ``count`` processes
    yields its own contiguous share of every resized batch (JAX with several processes).

    Parameters
    ----------
    dataset : keras.utils.PyDataset
        Yields global batches ``(inputs, targets)``. Its ``workers`` / ``use_multiprocessing`` settings carry over.
    replicas : int
        Replica count of the whole job.
    pad : bool
        Pad instead of trimming.
    share : (int, int), optional
        This process's index and the number of processes.
    """

    def __init__(self, dataset: Any, replicas: int, pad: bool = False, share: tuple[int, int] = (0, 1)) -> None:
        super().__init__(workers=dataset.workers, use_multiprocessing=dataset.use_multiprocessing,
                         max_queue_size=dataset.max_queue_size)
        self.dataset = dataset
        self.replicas = int(replicas)
        self.pad = pad
        self.share = share

    def __len__(self) -> int:
        n = len(self.dataset)
        last = getattr(self.dataset, "last_batch_size", None)
        if not self.pad and last is not None and last < self.replicas:
            n -= 1
        return n

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range ({len(self)} batches)")
        batch = self.dataset[index]
        size = _leading(batch)
        if self.pad:
            target = -(-size // self.replicas) * self.replicas
            if target != size:
                batch = _map_arrays(batch, lambda a: np.concatenate([a, np.repeat(a[-1:], target - size, axis=0)]))
        else:
            target = size // self.replicas * self.replicas
            if target != size:
                batch = _map_arrays(batch, lambda a: a[:target])
        index_, count = self.share
        if count > 1:
            part = target // count
            batch = _map_arrays(batch, lambda a: a[index_ * part : (index_ + 1) * part])
        return batch

    def set_epoch(self, epoch: int) -> None:
        """Forwarded to the wrapped dataset (resume)."""
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def on_epoch_begin(self) -> None:
        self.dataset.on_epoch_begin()

    def on_epoch_end(self) -> None:
        self.dataset.on_epoch_end()

    def close(self) -> None:
        """Forwarded to the wrapped dataset (stops the workers of an on-the-fly stream)."""
        if hasattr(self.dataset, "close"):
            self.dataset.close()


class BatchWindow(keras.utils.PyDataset):
    """Batches ``start .. stop`` of another dataset, e.g. to predict a large test set chunk by chunk.

    Parameters
    ----------
    dataset : keras.utils.PyDataset
        The full dataset (fixed batch order).
    start, stop : int
        Batch range.
    """

    def __init__(self, dataset: Any, start: int, stop: int) -> None:
        super().__init__(workers=dataset.workers, use_multiprocessing=dataset.use_multiprocessing,
                         max_queue_size=dataset.max_queue_size)
        self.dataset = dataset
        self.start, self.stop = int(start), int(stop)

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range ({len(self)} batches)")
        return self.dataset[self.start + index]
