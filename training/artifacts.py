"""Atomic writing of output files: write under a temporary name in the same folder, then rename.

A run that is killed while saving leaves either the previous file or the new one, never half a file. Temporary
names keep the final name's ending (``.npz``, ``.keras``, ``.weights.h5``, ``.png``) because the writers pick the
format from it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

PARTIAL_PREFIX = ".partial-"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds.

    Parameters
    ----------
    path : str or pathlib.Path
        Final location of the file.

    Yields
    ------
    pathlib.Path
        Where to write. It is removed if the block raises.
    """
    path = Path(path)
    tmp = path.with_name(PARTIAL_PREFIX + path.name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_npz(path: str | Path, arrays: Mapping[str, Any]) -> Path:
    """Write ``arrays`` to an uncompressed ``.npz`` file atomically and return its path."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{key: np.asarray(value) for key, value in arrays.items()})
    return path


def save_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically and return the path."""
    return save_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically and return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


# Names of the files a training run writes into its output_dir (training/main.py), for readers such as evaluate.py.
LOG_FILE = "training.log"
MEANS_FILE = "map_means.npz"
STDS_FILE = "map_stds.npz"
SPLIT_FILE = "split_indices.npz"
MODEL_FILE = "model.keras"
WEIGHTS_FILE = "model.weights.h5"
ARCHITECTURE_FILE = "model_architecture.json"
DIAGRAM_FILE = "model_architecture.png"
PREDICTIONS_FILE = "predictions.npz"
TEST_DATA_FILE = "test_data.npz"
SUMMARY_FILE = "summary.json"


def architecture_json(model: Any) -> str:
    """``model.to_json()`` without the compile settings, so that ``keras.models.model_from_json`` rebuilds the
    network with Keras alone (the compile settings name the project's R² metric, which needs
    :mod:`training.metrics`)."""
    config = json.loads(model.to_json())
    config.pop("compile_config", None)
    return json.dumps(config)
