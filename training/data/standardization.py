"""Standardization of maps: per-array mean and standard deviation of the training split.

The network sees every array as x_std = (x − mean) / std, with the statistics of the training maps; predictions are
mapped back to physical units with the same numbers (``map_means.npz`` / ``map_stds.npz`` of a network folder).
:meth:`Standardization.fit` computes them in two passes over in-memory arrays, :func:`streaming_standardization` in
one pass over a file read in chunks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from training.config import TrainingError

# Maps per chunk when computing statistics, to bound the memory of float64 temporaries.
_STATS_CHUNK = 256
#: Maps per read in the streaming statistics pass (e.g. 16 MB per array at 128 × 128 float32, 32 MB as float64).
STATS_CHUNK_MAPS = 256


@dataclasses.dataclass
class Standardization:
    """Per-array mean and standard deviation of the training split: x_std = (x − mean) / std.

    Attributes
    ----------
    means, stds : dict of str to float
        Keyed by array name (e.g. ``"q_len"``), in the array's physical units.
    """

    means: dict[str, float]
    stds: dict[str, float]

    @classmethod
    def fit(cls, arrays: Mapping[str, Any], indices: np.ndarray | None = None) -> Standardization:
        """Compute the mean, then the standard deviation about it, of each array over the given maps.

        Parameters
        ----------
        arrays : mapping of str to array
            Arrays (nsims, npix, npix); NumPy arrays or anything indexable along the first axis.
        indices : numpy.ndarray, optional
            Maps to use (the training split); all when omitted.

        Returns
        -------
        Standardization

        Raises
        ------
        TrainingError
            If an array is constant over those maps (zero standard deviation).
        """
        means, stds = {}, {}
        for name, arr in arrays.items():
            idx = np.arange(len(arr)) if indices is None else np.asarray(indices)
            chunks = [idx[i : i + _STATS_CHUNK] for i in range(0, len(idx), _STATS_CHUNK)]
            count = len(idx) * math.prod(arr.shape[1:])
            mean = sum(np.sum(arr[c], dtype=np.float64) for c in chunks) / count
            var = sum(np.sum((np.asarray(arr[c], dtype=np.float64) - mean) ** 2) for c in chunks) / count
            if not var > 0:
                raise TrainingError(f"array {name!r} is constant over the training split; it cannot be standardized")
            means[name], stds[name] = float(mean), float(np.sqrt(var))
        return cls(means, stds)

    def apply(self, name: str, x: np.ndarray) -> np.ndarray:
        """Standardize maps of array ``name`` (physical units → zero mean, unit variance), float32."""
        # float32 arithmetic: this runs on every batch, and the maps are float32 already.
        return (np.asarray(x, dtype=np.float32) - np.float32(self.means[name])) / np.float32(self.stds[name])

    def invert(self, name: str, x: np.ndarray) -> np.ndarray:
        """Map standardized values of array ``name`` back to physical units, float32."""
        return np.asarray(x, dtype=np.float32) * np.float32(self.stds[name]) + np.float32(self.means[name])

    def to_npz_dicts(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The contents of ``map_means.npz`` and ``map_stds.npz``: keys ``<array>_mean`` and ``<array>_std``."""
        means = {f"{k}_mean": np.float64(v) for k, v in self.means.items()}
        stds = {f"{k}_std": np.float64(v) for k, v in self.stds.items()}
        return means, stds

    @classmethod
    def from_npz(cls, means_path: str | Path, stds_path: str | Path) -> Standardization:
        """Read ``map_means.npz`` and ``map_stds.npz`` written by a training run."""
        with np.load(means_path) as m, np.load(stds_path) as s:
            means = {k.removesuffix("_mean"): float(m[k]) for k in m.files}
            stds = {k.removesuffix("_std"): float(s[k]) for k in s.files}
        return cls(means, stds)


def streaming_standardization(columns: Mapping[str, Any], indices: np.ndarray,
                              chunk: int = STATS_CHUNK_MAPS) -> Standardization:
    """Training-split mean and standard deviation of each array from one pass over the file.

    The file is read in contiguous chunks of ``chunk`` maps covering the training indices; each chunk contributes
    the count, mean and sum of squared deviations of its training maps, merged with the pairwise update of Chan,
    Golub & LeVeque (float64). The result equals the two-pass :meth:`Standardization.fit` to rounding.

    Parameters
    ----------
    columns : mapping of str to array-like
        The arrays to standardize (features and targets), sliceable along the first axis
        (e.g. :class:`training.data.h5file.H5Column`), (nsims, npix, npix) each.
    indices : numpy.ndarray
        Training-split rows.
    chunk : int
        Maps per read.

    Returns
    -------
    Standardization
        Means and standard deviations in the arrays' physical units.

    Raises
    ------
    TrainingError
        If a map read in the pass has NaN or inf values (array and map index named), or an array is constant over
        the training split.
    """
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
