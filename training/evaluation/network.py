"""A trained network folder: load it, and apply it to maps in physical units.

A network folder (a training run's ``output_dir``, or one shipped in ``trained_networks/``) holds the model
(``model_architecture.json`` with ``*.weights.h5``, or ``model.keras``), the standardization of its training data
(``map_means.npz``, ``map_stds.npz``) and usually ``summary.json``, whose config names the arrays the inputs and
outputs correspond to, and ``data_settings.json``, the training maps' geometry (:mod:`training.datasettings`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from training.config import TrainingError
from training.datasettings import read_data_settings
from training.evaluation.errors import EvaluationError

#: Model input → array when the network folder has no ``summary.json`` (the paper's names).
DEFAULT_INPUTS: dict[str, str] = {"qlen": "q_len", "ulen": "u_len"}
#: Model output → truth array when the network folder has no ``summary.json``.
DEFAULT_OUTPUTS: dict[str, str] = {"tau": "tru_tau", "kappa": "tru_kappa", "unle": "e_unl", "cbf": "tru_alpha"}


@dataclasses.dataclass
class Network:
    """A trained network with what is needed to apply it to maps in physical units.

    Attributes
    ----------
    model : keras.Model
        The network (uncompiled).
    standardization : training.data.standardization.Standardization
        Means and standard deviations of its training data, keyed by array name (physical units).
    inputs : dict of str to str
        Model input name → array name of the data (e.g. ``"qlen" → "q_len"``, μK).
    outputs : dict of str to str
        Model output name → truth array name (e.g. ``"kappa" → "tru_kappa"``).
    imagesize : int or None
        Map side the network takes, in pixels (None: any).
    folder : pathlib.Path
        The network folder.
    source : str
        Which files the network was built from.
    notes : list of str
        Remarks made while loading (e.g. default names assumed).
    data_settings : dict or None
        The training maps' settings from ``data_settings.json`` (pixel size, taper, beam, noise; see
        :mod:`training.datasettings`), None for folders written before runs recorded them.
    """

    model: Any
    standardization: Any
    inputs: dict[str, str]
    outputs: dict[str, str]
    imagesize: int | None
    folder: Path
    source: str
    notes: list[str] = dataclasses.field(default_factory=list)
    data_settings: dict[str, Any] | None = None


def _read_json_file(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"cannot read {path}: {exc}") from None


def _find_weights(folder: Path) -> Path | None:
    preferred = folder / "model.weights.h5"
    if preferred.is_file():
        return preferred
    found = sorted(folder.glob("*.weights.h5"))
    return found[0] if found else None


def check_network_folder(model_dir: str | Path) -> Path:
    """Check, without Keras, that a folder holds a loadable network; return it as a path.

    Parameters
    ----------
    model_dir : str or pathlib.Path
        Network folder: ``model_architecture.json`` + ``*.weights.h5`` (or ``model.keras``), ``map_means.npz``,
        ``map_stds.npz``.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    EvaluationError
        If the folder or one of the files is missing; the message lists what the folder has.
    """
    folder = Path(model_dir)
    if not folder.is_dir():
        raise EvaluationError(
            f"model folder {str(folder)!r} does not exist; pass --model-dir the output_dir of a training run "
            "or a network folder in trained_networks/"
        )
    has = sorted(p.name for p in folder.iterdir())
    has_text = ", ".join(has) or "nothing"
    model_files = (folder / "model_architecture.json").is_file() and _find_weights(folder) is not None
    if not model_files and not (folder / "model.keras").is_file():
        raise EvaluationError(
            f"model folder {str(folder)!r} has neither model_architecture.json with a *.weights.h5 file nor "
            f"model.keras; it has: {has_text}"
        )
    for name in ("map_means.npz", "map_stds.npz"):
        if not (folder / name).is_file():
            raise EvaluationError(
                f"model folder {str(folder)!r} lacks {name} (the training data's standardization); it has: {has_text}"
            )
    return folder


def _build_model(folder: Path) -> tuple[Any, str]:
    """The Keras model of a network folder and a description of the files used."""
    import keras

    arch = folder / "model_architecture.json"
    weights = _find_weights(folder)
    if arch.is_file() and weights is not None:
        config = _read_json_file(arch)
        if not isinstance(config, dict):
            raise EvaluationError(f"{arch} does not hold a Keras model description")
        # The training run saves the compiled model's JSON; evaluation needs no optimizer, loss or custom metrics.
        config.pop("compile_config", None)
        try:
            model = keras.models.model_from_json(json.dumps(config))
        except (TypeError, ValueError, KeyError) as exc:
            raise EvaluationError(f"cannot rebuild the network from {arch}: {exc}") from None
        try:
            model.load_weights(str(weights))
        except (OSError, ValueError, KeyError) as exc:
            raise EvaluationError(f"weights {weights} do not fit the architecture in {arch.name}: {exc}") from None
        return model, f"{arch.name} + {weights.name}"
    from training.resunet import load_model

    try:
        return load_model(folder / "model.keras", compile=False), "model.keras"
    except (OSError, TypeError, ValueError, KeyError) as exc:
        raise EvaluationError(f"cannot load {folder / 'model.keras'}: {exc}") from None


def _name_map(config: Mapping[str, Any] | None, key: str, default: dict[str, str]) -> dict[str, str] | None:
    if config and isinstance(config.get(key), Mapping):
        return {str(k): str(v) for k, v in config[key].items()}
    return None if config else dict(default)


def load_network(model_dir: str | Path) -> Network:
    """Load a trained network folder.

    The model comes from ``model_architecture.json`` and its weights (``model.weights.h5``, else any
    ``*.weights.h5``), or else from ``model.keras``; the standardization from ``map_means.npz`` / ``map_stds.npz``.
    Inputs and outputs are matched to arrays by the ``feat_used`` / ``target_used`` of ``summary.json``'s config
    when present, else by the paper's names (:data:`DEFAULT_INPUTS`, :data:`DEFAULT_OUTPUTS`).

    Parameters
    ----------
    model_dir : str or pathlib.Path
        The network folder.

    Returns
    -------
    Network

    Raises
    ------
    EvaluationError
        If a file is missing or unreadable, the weights do not fit, an input has no array name, or the means and
        standard deviations lack an array the network uses.
    """
    folder = check_network_folder(model_dir)
    from training.runtime import configure_gpu_memory

    configure_gpu_memory(True)  # before the first Keras import
    from training.data.standardization import Standardization

    model, source = _build_model(folder)
    summary = _read_json_file(folder / "summary.json") or {}
    config = summary.get("config") if isinstance(summary.get("config"), Mapping) else None
    notes = []
    if config is None:
        notes.append(f"{folder.name}: no summary.json config; assuming the paper's input/output array names")
    input_names = [t.name for t in model.inputs]
    output_names = list(model.output_names)
    inputs = _name_map(config, "feat_used", DEFAULT_INPUTS) or dict(DEFAULT_INPUTS)
    outputs = _name_map(config, "target_used", DEFAULT_OUTPUTS) or dict(DEFAULT_OUTPUTS)
    unknown = [name for name in input_names if name not in inputs]
    if unknown:
        raise EvaluationError(
            f"network inputs {unknown} have no data array name; add summary.json with a config whose feat_used "
            f"maps them (known: {inputs})"
        )
    inputs = {name: inputs[name] for name in input_names}
    for name in output_names:
        if name not in outputs:
            notes.append(f"network output {name!r} has no truth array name; it is not evaluated")
    outputs = {name: outputs[name] for name in output_names if name in outputs}

    try:
        std = Standardization.from_npz(folder / "map_means.npz", folder / "map_stds.npz")
    except (OSError, ValueError, KeyError) as exc:
        raise EvaluationError(f"cannot read map_means.npz / map_stds.npz in {folder}: {exc}") from None
    # Older network folders may key the statistics by model name (qlen) rather than array name (q_len).
    for name, array in [*inputs.items(), *outputs.items()]:
        for table in (std.means, std.stds):
            if array not in table and name in table:
                table[array] = table[name]
        if array not in std.means or array not in std.stds:
            raise EvaluationError(
                f"map_means.npz / map_stds.npz in {folder} lack {array!r} (needed for {name!r}); they have: "
                f"{', '.join(sorted(std.means))}"
            )
    shape = model.inputs[0].shape
    imagesize = int(shape[1]) if len(shape) >= 3 and shape[1] is not None else None
    try:
        data_settings = read_data_settings(folder)
    except TrainingError as exc:
        raise EvaluationError(str(exc)) from None
    return Network(model, std, inputs, outputs, imagesize, folder, source, notes, data_settings)


def predict(network: Network, arrays: Mapping[str, np.ndarray], batch_size: int = 16) -> dict[str, np.ndarray]:
    """Apply the network to maps in physical units and return its predictions in physical units.

    Parameters
    ----------
    network : Network
        From :func:`load_network`.
    arrays : mapping of str to ndarray
        At least the network's input arrays (e.g. ``q_len``, ``u_len`` in μK), each (nmaps, npix, npix).
    batch_size : int
        Maps per forward pass.

    Returns
    -------
    dict of str to ndarray
        Model output name → (nmaps, npix, npix) float32 prediction in the units of its truth array
        (τ and κ dimensionless, E in μK), for every output with a truth array name.

    Raises
    ------
    EvaluationError
        If an input array is missing.
    """
    missing = [a for a in network.inputs.values() if a not in arrays]
    if missing:
        raise EvaluationError(f"the network needs input array(s) {', '.join(missing)}, which the data lack")
    std = network.standardization
    x = {name: std.apply(array, arrays[array])[..., None] for name, array in network.inputs.items()}
    raw = network.model.predict(x, batch_size=batch_size, verbose=0)
    if not isinstance(raw, list | tuple):
        raw = [raw]
    out = {}
    for name, pred in zip(network.model.output_names, raw, strict=True):
        if name in network.outputs:
            out[name] = std.invert(network.outputs[name], np.asarray(pred)[..., 0])
    return out
