"""Work done in the on-the-fly simulation processes (no Keras import: workers start fast, on any backend)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from datapipe.interrupts import worker_started
from datapipe.settings import SimulationSettings
from datapipe.simulate import MapSetSimulator
from training.data.standardization import Standardization

#: Seed stream of the training batches: the pipeline's own (``datapipeline.py --seed`` writes the same map sets).
TRAIN_STREAM = 0

# Worker-process state: one simulator per process, built once.
_worker_state: dict[str, Any] = {}


def init_worker(settings: SimulationSettings, inputs: dict, targets: dict, std: Standardization) -> None:
    """Pool initializer: build this process's simulator once (Ctrl-C stays blocked: see
    :func:`datapipe.interrupts.starting_workers`)."""
    worker_started()
    _worker_state.update(simulator=MapSetSimulator(settings), inputs=inputs, targets=targets, std=std)


def standardized_batch(
    simulator: MapSetSimulator,
    indices: np.ndarray,
    stream: int,
    inputs: Mapping[str, str],
    targets: Mapping[str, str],
    std: Standardization,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Simulate map sets and return standardized ``(inputs, targets)`` dicts with a channel axis."""
    arrays = simulator.simulate(indices, stream)

    def take(names: Mapping[str, str]) -> dict[str, np.ndarray]:
        return {key: std.apply(arr, arrays[arr])[..., None] for key, arr in names.items()}

    return take(inputs), take(targets)


def worker_batch(indices: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One training batch in a worker process (after :func:`init_worker`)."""
    s = _worker_state
    return standardized_batch(s["simulator"], indices, TRAIN_STREAM, s["inputs"], s["targets"], s["std"])


