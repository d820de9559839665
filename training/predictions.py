"""Test-set outputs of a run, written chunk by chunk: ``predictions.npz``, ``test_data.npz`` and the test R².

The test split is predicted :data:`PREDICT_CHUNK_MAPS` maps at a time (``model.predict`` over a window of the test
batches) and each chunk goes straight to disk (:class:`datapipe.writer.NpzWriter`: one ``.npy`` part per array,
packed into the ``.npz`` at the end, all under a temporary name), so memory does not grow with the test split: an
HDF5 data set larger than the RAM gives the same files as an in-memory one. The R² of each output is accumulated
over the chunks (float64; equal to :func:`training.metrics.r2_score` on the whole split to rounding).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from datapipe.writer import NpzWriter

#: Maps predicted per ``model.predict`` call (50 MB of float32 predictions for three 128 × 128 outputs).
PREDICT_CHUNK_MAPS = 256


class R2Accumulator:
    """R² = 1 − Σ(y − ŷ)² / Σ(y − ȳ)² over all pixels of chunks seen one at a time (float64).

    The total sum of squares is merged over chunks with the pairwise update of Chan et al., so a large mean does not
    cost precision.
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.ss_res = 0.0

    def update(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        """Add a chunk of truths and predictions (same shape, same units)."""
        y = np.asarray(y_true, dtype=np.float64)
        p = np.asarray(y_pred, dtype=np.float64)
        if y.shape != p.shape:
            raise ValueError(f"shapes differ: truth {y.shape}, prediction {p.shape}")
        if y.size == 0:
            return
        n_b, mean_b = y.size, float(y.mean())
        m2_b = float(np.sum((y - mean_b) ** 2))
        n = self.count + n_b
        delta = mean_b - self.mean
        self.m2 += m2_b + delta**2 * self.count * n_b / n
        self.mean += delta * n_b / n
        self.count = n
        self.ss_res += float(np.sum((y - p) ** 2))

    def value(self) -> float:
        """The R² so far (``nan`` if the truth is constant)."""
        return float("nan") if self.m2 == 0 else 1.0 - self.ss_res / self.m2


def write_test_outputs(model: Any, bundle: Any, target_used: Mapping[str, str], out: Path,
                       chunk_maps: int = PREDICT_CHUNK_MAPS) -> dict[str, float]:
    """Predict the test split and write ``predictions.npz`` and ``test_data.npz`` chunk by chunk.

    Parameters
    ----------
    model : keras.Model
        The trained model.
    bundle : training.data.bundle.DataBundle
        ``test`` yields the test batches in the order of ``test_arrays`` (possibly padded at the very end, as by
        :class:`training.data.batches.ReplicaBatches`: the predictions beyond the test split's size are dropped);
        ``test_arrays`` holds the test split of every array, sliceable along the first axis.
    target_used : mapping of str to str
        Model output name → target array name.
    out : Path
        Output folder.
    chunk_maps : int
        Maps per ``model.predict`` call and per write.

    Returns
    -------
    dict of str to float
        R² of each output on the test split, in physical units.

    Notes
    -----
    ``predictions.npz`` holds ``<output>_pred`` and ``test_data.npz`` ``<array>_test``, each (n_test, npix, npix)
    float32 in physical units, in the same map order.
    """
    from training import artifacts as art
    from training.data.batches import BatchWindow

    out = Path(out)
    arrays = bundle.test_arrays
    n_test = len(next(iter(arrays.values())))
    npix = int(next(iter(arrays.values())).shape[-1])
    names = list(model.output_names)
    std = bundle.standardization
    batches = len(bundle.test)
    per_call = max(1, chunk_maps // max(1, math.ceil(n_test / batches)))
    scores = {name: R2Accumulator() for name in names}
    with NpzWriter(out / art.PREDICTIONS_FILE, [f"{n}_pred" for n in names], n_test, npix, None) as writer:
        done = 0
        for first in range(0, batches, per_call):
            preds = model.predict(BatchWindow(bundle.test, first, min(first + per_call, batches)), verbose=0)
            if not isinstance(preds, list | tuple):
                preds = [preds]
            keep = min(len(preds[0]), n_test - done)
            chunk = {
                name: std.invert(target_used[name], p[:keep, ..., 0]) for name, p in zip(names, preds, strict=True)
            }
            writer.write(done, {f"{name}_pred": pred for name, pred in chunk.items()})
            for name, pred in chunk.items():
                scores[name].update(arrays[target_used[name]][done : done + keep], pred)
            done += keep
    with NpzWriter(out / art.TEST_DATA_FILE, [f"{n}_test" for n in arrays], n_test, npix, None) as writer:
        for first in range(0, n_test, chunk_maps):
            last = min(first + chunk_maps, n_test)
            writer.write(first, {f"{name}_test": np.asarray(arr[first:last]) for name, arr in arrays.items()})
    return {name: acc.value() for name, acc in scores.items()}
