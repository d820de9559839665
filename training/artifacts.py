"""Atomic writing of output files: write under a temporary name in the same folder, then rename.

A run that is killed while saving leaves either the previous file or the new one, never half a file. Temporary
names keep the final name's ending (``.npz``, ``.keras``, ``.weights.h5``, ``.png``) because the writers pick the
format from it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from training.config import TrainingError

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


def save_weights_from_archive(keras_file: str | Path, path: str | Path) -> Path:
    """Write ``model.weights.h5`` as the copy of the weights file inside a saved ``.keras`` archive, atomically.

    The archive's member is exactly what ``model.save_weights`` writes, but Keras builds it in memory, so the disk
    only sees Python's writes: a full disk raises ``OSError`` instead of crashing HDF5 (which cannot close a file
    whose writes failed).
    """
    import zipfile

    path = Path(path)
    with zipfile.ZipFile(keras_file) as zf, atomic_path(path) as tmp, zf.open("model.weights.h5") as src:
        with open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 16 * 2**20)
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
#: Every file of a training run in its output_dir (a later run must not mix its files with them).
RUN_FILES = (LOG_FILE, MEANS_FILE, STDS_FILE, SPLIT_FILE, MODEL_FILE, WEIGHTS_FILE, ARCHITECTURE_FILE, DIAGRAM_FILE,
             PREDICTIONS_FILE, TEST_DATA_FILE, SUMMARY_FILE)
#: Folders of a run: the checkpoint (and its copies during a swap) and TensorBoard's logs.
RUN_FOLDERS = ("checkpoint", "checkpoint.old", "checkpoint.partial", "logs")


def run_files(output_dir: str | Path) -> list[str]:
    """Names of a training run's files and folders present in ``output_dir`` (:data:`RUN_FILES`, :data:`RUN_FOLDERS`,
    and temporary ``.partial-*`` files)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    names = [name for name in (*RUN_FILES, *RUN_FOLDERS) if os.path.lexists(folder / name)]
    return names + sorted(p.name for p in folder.glob(PARTIAL_PREFIX + "*"))


def check_run_folder(output_dir: str | Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run in a folder holding another run's files, unless ``overwrite``.

    Raises
    ------
    TrainingError
        ``output_dir`` holds run files and neither ``resume`` nor ``overwrite`` is set, or both are set.
    """
    if resume and overwrite:
        raise TrainingError("--resume continues the run in output_dir and --overwrite replaces it; give only one")
    present = run_files(output_dir)
    if present and not resume and not overwrite:
        shown = ", ".join(present[:4]) + (", ..." if len(present) > 4 else "")
        raise TrainingError(f"output_dir {str(output_dir)!r} holds another training run ({shown}); continue it with "
                            "--resume, replace it with --overwrite, or choose another --output-dir")


def remove_run_files(output_dir: str | Path) -> list[str]:
    """Delete a previous run's files and folders from ``output_dir`` (nothing else in it); return their names."""
    folder = Path(output_dir)
    removed = run_files(folder)
    for name in removed:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return removed


def check_output_folder(folder: str | Path, option: str) -> None:
    """Check that an output folder exists and is writable, or can be created, before any work is done.

    Raises
    ------
    TrainingError
        Naming the folder, why it cannot be used, and ``option`` to choose another.
    """
    from datapipe.diskio import check_creatable_folder
    from datapipe.errors import PipelineError

    try:
        check_creatable_folder(Path(folder), "output folder", option)
    except PipelineError as exc:
        raise TrainingError(str(exc)) from None


def architecture_json(model: Any) -> str:
    """``model.to_json()`` without the compile settings, so that ``keras.models.model_from_json`` rebuilds the
    network with Keras alone (the compile settings name the project's R² metric, which needs
    :mod:`training.metrics`)."""
    config = json.loads(model.to_json())
    config.pop("compile_config", None)
    return json.dumps(config)
