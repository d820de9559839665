"""The order in which training maps are drawn: a new, reproducible permutation every epoch.

Both orders come from ``numpy.random.default_rng([seed, 1, epoch])`` (stream 1 of the run's seed; the split uses
stream 0), so a resumed run draws the same batches as an uninterrupted one:

- :func:`epoch_order`: a permutation of the training maps (in-memory data);
- :func:`epoch_batches`: contiguous blocks of maps in a random order (data streamed from an HDF5 file, where each
  batch is then read in a few contiguous slices, never map by map). The pipeline's map sets are independent draws
  (map set *i* depends only on (seed, *i*)), so consecutive maps make batches as random as any; a file sorted by
  some property should be shuffled first.
"""

from __future__ import annotations

import numpy as np

#: Random stream of the batch order, distinct from the split's (:mod:`training.data.splits`) for the same seed.
SHUFFLE_STREAM = 1


def epoch_order(indices: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The training maps of one epoch in a random order.

    Parameters
    ----------
    indices : numpy.ndarray
        Training rows.
    seed, epoch : int
        The permutation is drawn from ``numpy.random.default_rng([seed, 1, epoch])``.

    Returns
    -------
    numpy.ndarray
        ``indices`` permuted.
    """
    indices = np.asarray(indices)
    rng = np.random.default_rng([seed, SHUFFLE_STREAM, epoch])
    return indices[rng.permutation(len(indices))]


def epoch_batches(indices: np.ndarray, batch_size: int, block: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The training batches of one epoch, drawn in contiguous blocks (see :mod:`training.data.order`).

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
    rng = np.random.default_rng([seed, SHUFFLE_STREAM, epoch])
    phase = int(rng.integers(block)) if n > block else 0
    rolled = np.roll(indices, -phase)
    blocks = [rolled[i : i + block] for i in range(0, n, block)]
    order = np.concatenate([blocks[j] for j in rng.permutation(len(blocks))]) if blocks else rolled
    return [np.sort(order[i : i + batch_size]) for i in range(0, n, batch_size)]
