"""The files of a training run's checkpoint: writing them, checking them, and restoring a model from them.

Keras is imported only by the functions that need it, so the files can be checked before a backend loads.

After every epoch the run writes ``<output_dir>/checkpoint/``:

- ``weights.npz`` — the current weights (``w0``, ``w1``, … in the order of ``model.get_weights()``);
- ``rng_state.npz`` — the states of the model's random-number generators (dropout), so that a resumed run draws
  the dropout masks an uninterrupted one would;
- ``optimizer.npz`` — every optimizer variable (iteration count, learning rate, Adam moments, loss scale …);
- ``best_weights.npz`` — the weights of the best epoch so far, kept by early stopping (``w0``, ``w1``, …);
- ``state.json`` — epochs completed, learning rate, the early-stopping and learning-rate-schedule counters,
  the config and the cumulative wall time.

The folder is first written as ``checkpoint.partial/`` and then swapped in, so a kill at any moment leaves one
complete checkpoint; a failed write (a full disk) removes ``checkpoint.partial/`` and keeps the previous
checkpoint. All files are NumPy and JSON, written by Python (not by HDF5, which crashes on a full disk), and
backend-neutral: a run started under TensorFlow can be resumed under JAX. Checkpoints of earlier versions, with
``model.weights.h5`` instead of ``weights.npz`` and without ``rng_state.npz``, still resume.
"""

from __future__ import annotations

import dataclasses
import shutil
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training.artifacts import save_json, save_npz
from training.config import TrainingError

if TYPE_CHECKING:
    import keras

    from training.checkpoint import RunState

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
WEIGHTS_FILE = "weights.npz"
#: The weights file of checkpoints written by earlier versions (read when ``weights.npz`` is absent).
LEGACY_WEIGHTS_FILE = "model.weights.h5"
RNG_STATE_FILE = "rng_state.npz"
OPTIMIZER_FILE = "optimizer.npz"
BEST_WEIGHTS_FILE = "best_weights.npz"


def checkpoint_dir(output_dir: str | Path) -> Path:
    """The checkpoint folder of a run; falls back to a swapped-out copy left by a kill during the swap."""
    path = Path(output_dir) / CHECKPOINT_DIR
    old = path.with_name(CHECKPOINT_DIR + ".old")
    if not (path / STATE_FILE).is_file() and (old / STATE_FILE).is_file():
        return old
    return path


def has_checkpoint(output_dir: str | Path) -> bool:
    """Whether ``output_dir`` holds a complete checkpoint."""
    return (checkpoint_dir(output_dir) / STATE_FILE).is_file()


def save_checkpoint(
    output_dir: str | Path,
    model: keras.Model,
    state: RunState,
    best_weights: list[np.ndarray] | None,
) -> Path:
    """Write a complete checkpoint of ``model`` (weights and optimizer state) and ``state``.

    Parameters
    ----------
    output_dir : str or pathlib.Path
        The run's output folder.
    model : keras.Model
        A compiled model.
    state : RunState
        Counters to store.
    best_weights : list of numpy.ndarray, optional
        Early stopping's best weights.

    Returns
    -------
    pathlib.Path
        The checkpoint folder.
    """
    import keras

    final = Path(output_dir) / CHECKPOINT_DIR
    partial = final.with_name(CHECKPOINT_DIR + ".partial")
    old = final.with_name(CHECKPOINT_DIR + ".old")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
        save_npz(partial / WEIGHTS_FILE, {f"w{i}": w for i, w in enumerate(model.get_weights())})
        rng = {f"s{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(rng_states(model))}
        save_npz(partial / RNG_STATE_FILE, rng)
        variables = model.optimizer.variables
        save_npz(
            partial / OPTIMIZER_FILE,
            {
                **{f"v{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(variables)},
                "paths": np.array([v.path for v in variables], dtype=str),
            },
        )
        if best_weights is not None:
            save_npz(partial / BEST_WEIGHTS_FILE, {f"w{i}": w for i, w in enumerate(best_weights)})
        save_json(partial / STATE_FILE, dataclasses.asdict(state))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # the previous checkpoint stays complete
        raise
    # Swap: a kill between the renames leaves checkpoint.old, which checkpoint_dir() falls back to.
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    partial.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def rng_states(model: keras.Model) -> list[Any]:
    """The model's random-generator state variables (one per dropout layer): its variables that are not weights."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def checkpoint_files(output_dir: str | Path) -> dict[str, Path]:
    """The files of the checkpoint in ``output_dir`` that resuming reads, by role (present or not).

    Returns
    -------
    dict of str to pathlib.Path
        ``state``, ``weights`` (``weights.npz``, or ``model.weights.h5`` of an older checkpoint), ``optimizer``
        and, when present, ``best_weights`` and ``rng_state``.
    """
    folder = checkpoint_dir(output_dir)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file() and (folder / LEGACY_WEIGHTS_FILE).is_file():
        weights = folder / LEGACY_WEIGHTS_FILE
    files = {"state": folder / STATE_FILE, "weights": weights, "optimizer": folder / OPTIMIZER_FILE}
    for role, name in (("best_weights", BEST_WEIGHTS_FILE), ("rng_state", RNG_STATE_FILE)):
        if (folder / name).exists():
            files[role] = folder / name
    return files


def check_checkpoint_files(output_dir: str | Path) -> None:
    """Check, before any data is loaded, that every file of the checkpoint exists and can be read.

    Raises
    ------
    TrainingError
        Naming the first missing or unreadable file.
    """
    if not has_checkpoint(output_dir):
        raise TrainingError(
            f"nothing to resume: no checkpoint in {str(Path(output_dir))!r} (run without --resume to start)"
        )
    for path in checkpoint_files(output_dir).values():
        if not path.is_file():
            raise TrainingError(f"checkpoint file {str(path)!r} is missing: the checkpoint cannot be resumed; restore "
                                "the file, or start the run again with --overwrite")
        if path.suffix == ".npz":
            _read_npz(path)
        elif path.suffix == ".h5":
            import h5py

            try:
                with h5py.File(path, "r"):
                    pass
            except OSError as exc:
                raise TrainingError(f"checkpoint file {str(path)!r} cannot be read ({exc}); restore it, or start "
                                    "the run again with --overwrite") from None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of a checkpoint ``.npz`` file (raises :class:`TrainingError` naming a missing or corrupt file)."""
    try:
        if not zipfile.is_zipfile(path):
            raise zipfile.BadZipFile("not an .npz archive")
        with np.load(path, allow_pickle=False) as f:
            return {key: f[key] for key in f.files}
    except FileNotFoundError:
        raise TrainingError(f"checkpoint file {str(path)!r} is missing: the checkpoint cannot be resumed; restore "
                            "the file, or start the run again with --overwrite") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise TrainingError(f"checkpoint file {str(path)!r} is damaged ({exc}); restore it, or start the run again "
                            "with --overwrite") from None


def load_checkpoint(output_dir: str | Path, model: keras.Model) -> list[np.ndarray] | None:
    """Restore weights and optimizer state of a compiled ``model`` from the checkpoint in ``output_dir``.

    Parameters
    ----------
    output_dir : str or pathlib.Path
        The run's output folder.
    model : keras.Model
        The same architecture, compiled with the same optimizer class and mixed-precision policy.

    Returns
    -------
    list of numpy.ndarray or None
        Early stopping's best weights, if the checkpoint holds them.

    Raises
    ------
    TrainingError
        If the checkpoint does not match the model or optimizer.
    """
    files = checkpoint_files(output_dir)
    folder = files["state"].parent
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    try:
        if files["weights"].suffix == ".npz":
            arrays = _read_npz(files["weights"])
            model.set_weights([arrays[f"w{i}"] for i in range(len(arrays))])
        else:
            model.load_weights(str(files["weights"]))
    except (ValueError, OSError, KeyError) as exc:
        raise TrainingError(f"checkpoint weights in {str(folder)!r} do not fit this model: {exc}") from None
    arrays = _read_npz(files["optimizer"])
    saved = [arrays[f"v{i}"] for i in range(len(arrays) - 1)]
    variables = optimizer.variables
    if len(saved) != len(variables) or any(tuple(v.shape) != a.shape for v, a in zip(variables, saved, strict=False)):
        raise TrainingError(
            f"checkpoint optimizer state in {str(folder)!r} ({len(saved)} variables) does not fit this optimizer "
            f"({len(variables)} variables); resume with the original optimizer and mixed_precision settings"
        )
    for var, value in zip(variables, saved, strict=True):
        var.assign(value)
    if "rng_state" in files:
        arrays = _read_npz(files["rng_state"])
        states = rng_states(model)
        if len(arrays) == len(states):
            for i, var in enumerate(states):
                var.assign(arrays[f"s{i}"])
    if "best_weights" not in files:
        return None
    arrays = _read_npz(files["best_weights"])
    return [arrays[f"w{i}"] for i in range(len(arrays))]
