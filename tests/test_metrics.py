"""Tests of training/metrics.py: the streaming R² metric against a direct NumPy computation."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from training.metrics import RSquared, r2_score


def direct_r2(y, p):
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    return 1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum()


def run_metric(batches, metric=None):
    metric = metric or RSquared()
    for args in batches:
        metric.update_state(*args)
    return float(keras.ops.convert_to_numpy(metric.result()))


def test_streaming_r2_equals_the_pooled_value():
    rng = np.random.default_rng(0)
    y = rng.normal(0.3, 1.0, (10, 8, 8, 1)).astype(np.float32)
    p = (0.8 * y + rng.normal(0, 0.4, y.shape)).astype(np.float32)
    batched = run_metric([(y[i : i + 3], p[i : i + 3]) for i in range(0, 10, 3)])
    assert batched == pytest.approx(direct_r2(y, p), abs=1e-5)
    assert r2_score(y, p) == pytest.approx(direct_r2(y, p), abs=1e-12)
    # The mean of per-batch values would differ: the metric pools.
    per_batch = np.mean([direct_r2(y[i : i + 3], p[i : i + 3]) for i in range(0, 10, 3)])
    assert abs(per_batch - batched) > 1e-4


def test_reference_values():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(4, 6, 6)).astype(np.float32)
    assert run_metric([(y, y)]) == pytest.approx(1.0, abs=1e-6)
    assert run_metric([(y, np.full_like(y, y.mean()))]) == pytest.approx(0.0, abs=1e-5)
    assert run_metric([(np.ones_like(y), y)]) == 0.0  # no variance in the truth
    assert np.isnan(r2_score(np.ones(5), np.arange(5.0)))


def test_sample_weights_drop_maps():
    rng = np.random.default_rng(2)
    y = rng.normal(size=(5, 4, 4, 1)).astype(np.float32)
    p = rng.normal(size=y.shape).astype(np.float32)
    weights = np.array([1, 1, 0, 1, 0], np.float32)
    keep = weights > 0
    assert run_metric([(y, p, weights)]) == pytest.approx(direct_r2(y[keep], p[keep]), abs=1e-5)


def test_reset_and_serialization():
    metric = RSquared(name="r2")
    rng = np.random.default_rng(3)
    y = rng.normal(size=(3, 4, 4)).astype(np.float32)
    run_metric([(y, rng.normal(size=y.shape).astype(np.float32))], metric)
    metric.reset_state()
    assert run_metric([(y, 0.5 * y)], metric) == pytest.approx(direct_r2(y, 0.5 * y), abs=1e-5)
    clone = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert isinstance(clone, RSquared) and clone.name == "r2"


def test_r2_is_unchanged_by_a_common_affine_map():
    rng = np.random.default_rng(4)
    y = rng.normal(size=(50,))
    p = y + rng.normal(0, 0.5, size=50)
    assert r2_score(3 * y - 7, 3 * p - 7) == pytest.approx(r2_score(y, p), rel=1e-12)
    with pytest.raises(ValueError, match="shapes differ"):
        r2_score(y, p[:10])
