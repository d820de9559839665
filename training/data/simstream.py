"""The on-the-fly training stream: a ``keras.utils.PyDataset`` whose batches are simulated by worker processes.

See :mod:`training.data.simsource` for the settings and the seeding scheme.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Mapping
from concurrent.futures import Future, ProcessPoolExecutor

import keras
import numpy as np

from datapipe.interrupts import starting_workers
from datapipe.settings import SimulationSettings
from datapipe.simulate import MapSetSimulator
from training.data.simworker import TRAIN_STREAM, init_worker, standardized_batch, worker_batch
from training.data.standardization import Standardization


class SimulationStream(keras.utils.PyDataset):
    """Training batches simulated on the fly by a pool of worker processes (never repeated).

    Parameters
    ----------
    settings : SimulationSettings
        Pipeline settings; only the features and targets are simulated (no QE).
    inputs, targets : dict of str to str
        Model input / output name → array name.
    standardization : Standardization
        Statistics applied to every batch (from the pilot simulations).
    batch_size, steps_per_epoch : int
        Batch size and batches per epoch.
    workers, prefetch : int
        Worker processes (``spawn`` start method, safe beside JAX/CUDA) and batches kept in flight.
        ``workers=0`` simulates in the calling thread (for tests and debugging).
    """

    def __init__(
        self,
        settings: SimulationSettings,
        inputs: Mapping[str, str],
        targets: Mapping[str, str],
        standardization: Standardization,
        batch_size: int,
        steps_per_epoch: int,
        workers: int = 1,
        prefetch: int = 2,
    ) -> None:
        super().__init__()
        used = list(dict.fromkeys([*inputs.values(), *targets.values()]))
        self.settings = settings.replace(maps=tuple(used))
        self.inputs = dict(inputs)
        self.targets = dict(targets)
        self.standardization = standardization
        self.batch_size = int(batch_size)
        self.steps_per_epoch = int(steps_per_epoch)
        self.n_workers = int(workers)
        self.prefetch = max(1, int(prefetch))
        self.epoch = 0
        self._pool: ProcessPoolExecutor | None = None
        self._local: MapSetSimulator | None = None
        self._pending: dict[tuple[int, int], Future] = {}

    def __len__(self) -> int:
        return self.steps_per_epoch

    def batch_map_indices(self, epoch: int, batch: int) -> np.ndarray:
        """Map-set indices (of seed stream 0) of training batch ``batch`` in epoch ``epoch``."""
        start = (epoch * self.steps_per_epoch + batch) * self.batch_size
        return np.arange(start, start + self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Continue the stream at ``epoch`` (a resumed run)."""
        self.epoch = int(epoch)
        self._cancel_pending()

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                self.n_workers,
                mp_context=context,
                initializer=init_worker,
                initargs=(self.settings, self.inputs, self.targets, self.standardization),
            )
        return self._pool

    def _submit(self, epoch: int, batch: int) -> None:
        key = (epoch, batch)
        if key not in self._pending:
            pool = self._ensure_pool()
            # The executor starts its workers on submission: they must not see Ctrl-C (the training process
            # saves a checkpoint and stops them) nor be cut short while starting.
            with starting_workers():
                self._pending[key] = pool.submit(worker_batch, self.batch_map_indices(epoch, batch))

    def __getitem__(self, index: int):
        if not 0 <= index < self.steps_per_epoch:
            raise IndexError(f"batch {index} out of range ({self.steps_per_epoch} batches)")
        if self.n_workers == 0:
            if self._local is None:
                self._local = MapSetSimulator(self.settings)
            return standardized_batch(
                self._local,
                self.batch_map_indices(self.epoch, index),
                TRAIN_STREAM,
                self.inputs,
                self.targets,
                self.standardization,
            )
        # Keep `prefetch` batches in flight, spilling over into the next epoch.
        for ahead in range(self.prefetch):
            flat = self.epoch * self.steps_per_epoch + index + ahead
            self._submit(flat // self.steps_per_epoch, flat % self.steps_per_epoch)
        return self._pending.pop((self.epoch, index)).result()

    def _cancel_pending(self) -> None:
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()

    def close(self) -> None:
        """Stop the worker processes."""
        self._cancel_pending()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - best effort at interpreter shutdown
            pass


