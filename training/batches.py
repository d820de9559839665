"""Batches of standardized maps for Keras: a ``keras.utils.PyDataset`` over in-memory (or HDF5) map arrays.

This is the only part of the data layer that needs Keras; :mod:`training.data` imports it once the data checked out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from training.data import Standardization

# Random stream of the batch order, distinct from the split's (training.data) for the same seed.
_SHUFFLE_STREAM = 1


class MapDataset(keras.utils.PyDataset):
    """Batches of standardized maps, ``(inputs, targets)`` dicts keyed by model input and output names.

    The dataset keeps the arrays in physical units and standardizes each batch as it is drawn, so no standardized
    copy of the data is held in memory. With ``shuffle``, the batch order of epoch *e* is a permutation drawn from
    ``numpy.random.default_rng([seed, 1, e])``: reproducible, and the same after a resume (see :meth:`set_epoch`).

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
            rng = np.random.default_rng([self.seed, _SHUFFLE_STREAM, self.epoch])
            self._order = self.indices[rng.permutation(len(self.indices))]
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
