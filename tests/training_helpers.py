"""Small synthetic map files and configs for the training-stage tests.

The maps mimic the pipeline's ``map_sets32.npz``: float32 arrays (nsims, npix, npix) with the pipeline's names and
a ``metadata`` JSON string. The targets are simple local functions of the inputs, so a network can learn them in a
few epochs: E = 2 Q + 1 (μK-like offset), κ = 0.01 (Q − U), τ = 0.05 (Q + U) smoothed; the reconstructions
(``rec_*``) are the truths plus noise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

TINY = {"imagesize": 16, "batch_size": 4, "learning_rate": 1e-3, "dropval": 0.0}


def smooth(maps: np.ndarray) -> np.ndarray:
    """Average each pixel with its four neighbours (periodic), map by map."""
    return (maps + sum(np.roll(maps, s, axis=a) for s in (1, -1) for a in (1, 2))) / 5.0


def synthetic_maps(nsims: int, npix: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays with the pipeline's names; see the module docstring for their relations."""
    rng = np.random.default_rng(seed)
    q = smooth(rng.normal(0.0, 3.0, (nsims, npix, npix)))
    u = smooth(rng.normal(0.0, 3.0, (nsims, npix, npix)))
    maps = {
        "q_len": q,
        "u_len": u,
        "t_len": rng.normal(0.0, 100.0, q.shape),
        "e_unl": 2.0 * q + 1.0,
        "tru_kappa": 0.01 * (q - u),
        "tru_tau": smooth(0.05 * (q + u)),
    }
    maps["rec_kappa"] = maps["tru_kappa"] + rng.normal(0.0, 0.005, q.shape)
    maps["rec_tau"] = maps["tru_tau"] + rng.normal(0.0, 0.02, q.shape)
    return {k: v.astype(np.float32) for k, v in maps.items()}


def write_map_file(path: Path, nsims: int = 40, npix: int = 16, seed: int = 0, **replace: np.ndarray) -> Path:
    """Write a synthetic ``.npz`` map file (plus ``metadata``); ``replace`` swaps or adds arrays."""
    maps = synthetic_maps(nsims, npix, seed)
    maps.update(replace)
    meta = np.array(json.dumps({"nsims": nsims, "npix": npix, "seed": seed, "synthetic": True}))
    np.savez(path, metadata=meta, **maps)
    return path


def write_config(path: Path, data_path: str | Path, output_dir: str | Path = "out", **keys: Any) -> Path:
    """Write a config JSON for a tiny run (:data:`TINY` settings, two epochs) and return its path."""
    cfg = {"data_path": str(data_path), "output_dir": str(output_dir), "epochs": 2, "seed": 7, **TINY, **keys}
    path.write_text(json.dumps(cfg, indent=1))
    return path


def tiny_model(params: Any):
    """A few-hundred-parameter stand-in with ResUNet-CMB's inputs (qlen, ulen) and outputs (kappa, unle, tau), for
    tests of the machinery around the network (building and training the real one takes minutes on a 2-core CPU).

    Like ResUNet-CMB it has dropout (the config's ``dropval``, when > 0) and batch normalization, so the states a
    checkpoint must restore (dropout random generators, moving averages) are there.

    Register it for a test with ``monkeypatch.setitem(training.resunet.MODELS, "tiny_model", tiny_model)`` and set the
    config's ``model`` key to ``"tiny_model"``; in a process of its own, run ``tests/tiny_main.py`` instead of
    ``training/main.py``.
    """
    import keras

    size = params.imagesize
    q, u = (keras.Input((size, size, 1), name=name) for name in ("qlen", "ulen"))
    x = keras.layers.Concatenate()([q, u])
    dropval = float(getattr(params, "dropval", 0.0) or 0.0)
    if dropval > 0:
        x = keras.layers.Dropout(dropval)(x)
    hidden = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    hidden = keras.layers.BatchNormalization()(hidden)
    outputs = [keras.layers.Conv2D(1, 1, name=name)(hidden) for name in ("kappa", "unle", "tau")]
    return keras.Model([q, u], outputs)
