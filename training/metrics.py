"""Coefficient of determination R² for map outputs.

R² = 1 − Σ (y − ŷ)² / Σ (y − ȳ)², pooled over every pixel of every map seen (not averaged per batch), so the
epoch value logged by Keras is the R² of the whole split. R² = 1 is a perfect reconstruction, R² = 0 is no better
than predicting the mean map value. It is unchanged by a common affine rescaling of truth and prediction, so the
value on standardized maps equals the one in physical units.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="resunet_cmb")
class RSquared(keras.metrics.Metric):
    """Streaming R² of one model output, written with ``keras.ops`` only (any backend).

    The metric accumulates Σ(y − ŷ)², Σy, Σy² and the pixel count over batches; ``result()`` forms
    1 − SS_res / SS_tot with SS_tot = Σy² − (Σy)²/N. Accumulators are float32, which is accurate for standardized
    targets (mean ≈ 0, variance ≈ 1), the case in training.

    Parameters
    ----------
    name : str
        Metric name; Keras logs it as ``<output>_<name>`` (e.g. ``kappa_r2``, ``val_kappa_r2``).
    dtype : str, optional
        Dtype of the accumulators (default: float32).
    """

    def __init__(self, name: str = "r2", dtype: Any = None, **kwargs: Any) -> None:
        super().__init__(name=name, dtype=dtype or "float32", **kwargs)
        self._sums = [
            self.add_variable(shape=(), initializer="zeros", name=part)
            for part in ("sum_sq_residual", "sum_y", "sum_y_sq", "count")
        ]

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Add one batch: ``y_true`` and ``y_pred`` of the same shape (batch, ...), optional per-map weights."""
        y_true = ops.cast(ops.convert_to_tensor(y_true), self.dtype)
        y_pred = ops.cast(ops.convert_to_tensor(y_pred), self.dtype)
        if sample_weight is None:
            weight = ops.ones_like(y_true)
        else:
            weight = ops.cast(ops.convert_to_tensor(sample_weight), self.dtype)
            for _ in range(len(y_true.shape) - len(weight.shape)):
                weight = ops.expand_dims(weight, -1)
            weight = ops.broadcast_to(weight, ops.shape(y_true))
        parts = (
            ops.sum(weight * ops.square(y_true - y_pred)),
            ops.sum(weight * y_true),
            ops.sum(weight * ops.square(y_true)),
            ops.sum(weight),
        )
        for var, part in zip(self._sums, parts, strict=True):
            var.assign_add(part)

    def result(self) -> Any:
        """R² of everything seen since the last reset (0 when the truth has no variance)."""
        ss_res, s_y, s_y2, n = self._sums
        n_safe = ops.maximum(n, 1.0)
        ss_tot = s_y2 - ops.square(s_y) / n_safe
        return ops.where(ss_tot > 0, 1.0 - ss_res / ops.maximum(ss_tot, 1e-30), 0.0)

    def reset_state(self) -> None:
        """Zero the accumulators (Keras calls this at the start of every epoch)."""
        for var in self._sums:
            var.assign(ops.zeros((), dtype=self.dtype))


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """R² of a prediction over all pixels, in float64 (NumPy; for the saved test-set summary).

    Parameters
    ----------
    y_true, y_pred : numpy.ndarray
        Truth and prediction, same shape, any units (the same for both).

    Returns
    -------
    float
        1 − Σ(y − ŷ)² / Σ(y − ȳ)²; ``nan`` if the truth is constant.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shapes differ: truth {y_true.shape}, prediction {y_pred.shape}")
    ss_tot = np.sum((y_true - y_true.mean()) ** 2)
    if ss_tot == 0:
        return float("nan")
    return float(1.0 - np.sum((y_true - y_pred) ** 2) / ss_tot)
