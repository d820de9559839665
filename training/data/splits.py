"""Deterministic train / validation / test splits of the map sets of a file."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.config import TrainingError

SPLIT_NAMES = ("train", "val", "test")
# Random stream of the split permutation (training.data.order uses stream 1 of the same seed for the batch order).
_SPLIT_STREAM = 0


def split_counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Numbers of maps in the (train, val, test) splits: val and test rounded, train takes the rest."""
    n_val = int(round(n * fractions[1]))
    n_test = int(round(n * fractions[2]))
    return n - n_val - n_test, n_val, n_test


def split_indices(n: int, fractions: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """Deterministic random train/val/test split of map indices.

    One permutation from ``numpy.random.default_rng`` seeded by ``seed`` is shared by every array (features,
    targets, traces), so map *i* of each array lands in the same split.

    Parameters
    ----------
    n : int
        Number of maps.
    fractions : sequence of 3 float
        Training, validation and test fractions (summing to 1).
    seed : int
        Seed of the permutation.

    Returns
    -------
    dict
        ``{"train": idx, "val": idx, "test": idx}``, disjoint sorted int64 index arrays covering ``range(n)``.
    """
    counts = split_counts(n, fractions)
    perm = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(n)
    bounds = np.cumsum((0, *counts))
    return {name: np.sort(perm[bounds[i] : bounds[i + 1]]) for i, name in enumerate(SPLIT_NAMES)}


def check_split_sizes(n: int, fractions: Sequence[float], batch_size: int) -> None:
    """Require every split of ``n`` maps to hold at least one batch.

    Raises
    ------
    TrainingError
        Naming the split, its size and the remedies.
    """
    for label, count in zip(("training", "validation", "test"), split_counts(n, fractions), strict=True):
        if count < batch_size:
            raise TrainingError(
                f"the {label} split has {count} of {n} maps, fewer than one batch (batch_size {batch_size}); "
                "use more maps, a smaller batch_size or other split fractions"
            )
