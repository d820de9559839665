"""Training configuration: load a JSON file, check every key, fill in the paper's defaults.

The config is one flat JSON object (see ``config.json`` at the repository root). Keys that are left out take the
values of Guzman & Meyers (2021); unknown keys are an error, with the closest valid key suggested. Relative paths
(``data_path``, ``output_dir``) are resolved against the folder of the config file, so a run does not depend on
the working directory.

This module does not import Keras, so a config can be checked (and backend settings made) before any backend loads.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class TrainingError(Exception):
    """A problem with the user's input (config, data, options) to the training stage.

    The message names the bad value and how to fix it; ``training/main.py`` prints it as one line on stderr and
    exits with status 2.
    """


#: The paper's settings; every valid key of a config file (besides the aliases) is here.
DEFAULTS: dict[str, Any] = {
    "model": "ResUNet_CMB",
    "data_path": "datapipe/map_sets32.npz",
    "output_dir": "results/run_1/",
    "feat_used": {"qlen": "q_len", "ulen": "u_len"},
    "target_used": {"unle": "e_unl", "tau": "tru_tau", "kappa": "tru_kappa"},
    "trace_used": ["rec_kappa", "rec_tau"],
    "imagesize": 128,
    "optimizer": "Adam",
    "loss": "mse",
    "learning_rate": 0.25,
    "batch_size": 32,
    "epochs": 500,
    "haltpatience": 10,
    "lrpatience": 3,
    "lrfactordelta": 0.5,
    "dropval": 0.3,
    "training_split": 0.8,
    "val_split": 0.1,
    "test_split": 0.1,
    "allocate_vram_an": True,
    "tensboard_log": False,
    "seed": 43,
    "mixed_precision": None,
    "simulation": None,
    "data_workers": 1,
    "data_multiprocessing": False,
    "data_block_maps": 16,
    "distribution": None,
}

#: Older spellings accepted in config files, mapped to the current key.
ALIASES: dict[str, str] = {"model_name": "model"}

#: Allowed ranges (inclusive) of the integer keys. The seed seeds NumPy's legacy generator through
#: ``keras.utils.set_random_seed``, which takes 32 bits.
INT_RANGES: dict[str, tuple[int, int]] = {
    "imagesize": (4, 8192),
    "batch_size": (1, 65536),
    "epochs": (1, 10**6),
    "haltpatience": (0, 10**6),
    "lrpatience": (0, 10**6),
    "seed": (0, 2**32 - 1),
    "data_workers": (1, 1024),
    "data_block_maps": (1, 10**6),
}

MIXED_PRECISION_POLICIES = ("mixed_float16", "mixed_bfloat16")
#: Values of the ``distribution`` key besides null (see :mod:`training.distribution`).
DISTRIBUTIONS = ("data_parallel",)
SPLIT_KEYS = ("training_split", "val_split", "test_split")


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Validated settings of one training run (the keys of ``config.json``).

    Attributes
    ----------
    model : str
        Name of the model builder in :data:`training.resunet.MODELS`.
    data_path : str
        Data source as written in the config: a ``.npz`` (or ``.h5``) file of maps, relative to ``config_dir``.
    output_dir : pathlib.Path
        Absolute path of the folder that receives every output.
    feat_used : dict of str to str
        Model input name → array name in the data file (network inputs, e.g. lensed Q and U in μK).
    target_used : dict of str to str
        Model output name → array name (training targets, e.g. τ, unlensed E in μK, κ).
    trace_used : list of str
        Extra arrays carried along the split and written with the test set (e.g. quadratic-estimator maps).
    imagesize : int
        Map side in pixels.
    optimizer, loss : str
        Names of a ``keras.optimizers`` class and a ``keras.losses`` loss.
    learning_rate : float
        Initial learning rate.
    batch_size, epochs : int
        Maps per step; maximum number of epochs.
    haltpatience : int
        Epochs without val_loss improvement before early stopping.
    lrpatience : int
        Epochs without improvement before the learning rate is multiplied by ``lrfactordelta``.
    lrfactordelta : float
        Learning-rate reduction factor, in (0, 1).
    dropval : float
        Dropout rate, in [0, 1).
    training_split, val_split, test_split : float
        Fractions of the maps in each split; positive, summing to 1.
    allocate_vram_an : bool
        Allocate GPU memory as needed instead of all at once.
    tensboard_log : bool
        Also write TensorBoard logs (needs TensorFlow installed).
    seed : int
        Seed of the split permutation, the batch shuffling and the weight initialisation.
    mixed_precision : str or None
        ``None``, ``"mixed_float16"`` or ``"mixed_bfloat16"``.
    simulation : dict or None
        Settings of on-the-fly simulation when ``data_path`` is ``"simulate"`` (see :mod:`training.data.simsource`).
    data_workers : int
        Threads (or processes) preparing batches of map files ahead of the training loop; 1: in the loop's thread.
    data_multiprocessing : bool
        Prepare batches in processes instead of threads (each opens an HDF5 file itself).
    data_block_maps : int
        Consecutive maps per shuffled block when training batches stream from an HDF5 file (see
        :mod:`training.data.h5source`).
    distribution : str or None
        ``None`` (one device) or ``"data_parallel"``: every local accelerator (and every worker of a multi-node
        job) holds a replica; the global batch is ``batch_size`` × replicas (see :mod:`training.distribution`).
    config_dir : pathlib.Path
        Folder against which relative paths are resolved (that of the config file).
    """

    model: str
    data_path: str
    output_dir: Path
    feat_used: dict[str, str]
    target_used: dict[str, str]
    trace_used: list[str]
    imagesize: int
    optimizer: str
    loss: str
    learning_rate: float
    batch_size: int
    epochs: int
    haltpatience: int
    lrpatience: int
    lrfactordelta: float
    dropval: float
    training_split: float
    val_split: float
    test_split: float
    allocate_vram_an: bool
    tensboard_log: bool
    seed: int
    mixed_precision: str | None
    simulation: dict[str, Any] | None
    data_workers: int
    data_multiprocessing: bool
    data_block_maps: int
    distribution: str | None
    config_dir: Path

    def resolve(self, path: str | Path) -> Path:
        """Return ``path`` as an absolute path, relative paths taken from :attr:`config_dir`."""
        return (self.config_dir / Path(path).expanduser()).resolve()

    @property
    def splits(self) -> tuple[float, float, float]:
        """(training, validation, test) fractions."""
        return (self.training_split, self.val_split, self.test_split)

    @property
    def arrays(self) -> list[str]:
        """Names of every array the run reads: features, targets, then traces, without repeats."""
        names = [*self.feat_used.values(), *self.target_used.values(), *self.trace_used]
        return list(dict.fromkeys(names))

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict with the config-file keys (paths as strings)."""
        out = {key: copy.deepcopy(getattr(self, key)) for key in DEFAULTS}
        out["output_dir"] = str(self.output_dir)
        return out

    def replace(self, **changes: Any) -> TrainingConfig:
        """Return a copy with some keys changed, validated like a config file.

        Parameters
        ----------
        **changes
            Config keys and their new values; relative paths resolve against :attr:`config_dir`.

        Returns
        -------
        TrainingConfig
        """
        raw = self.to_dict()
        raw.update(changes)
        return validate_config(raw, self.config_dir)


def load_config(path: str | Path) -> TrainingConfig:
    """Read and validate a JSON config file.

    Parameters
    ----------
    path : str or pathlib.Path
        The config file. Relative paths inside it are resolved against its folder.

    Returns
    -------
    TrainingConfig

    Raises
    ------
    TrainingError
        If the file cannot be read, is not valid JSON, or holds an unknown key or a bad value.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TrainingError(f"config file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"cannot read config file {str(path)!r}: {exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TrainingError(
            f"config file {str(path)!r} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    if not isinstance(raw, dict):
        raise TrainingError(f"config file {str(path)!r} must hold one JSON object {{...}}, not {type(raw).__name__}")
    return validate_config(raw, path.resolve().parent)


def suggest_key(key: str) -> str:
    """Return a ``" (did you mean ...?)"`` hint for a misspelt config key, or a list of the valid keys."""
    valid = [*DEFAULTS, *ALIASES]
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f"; valid keys: {', '.join(DEFAULTS)}"


def validate_config(raw: Mapping[str, Any], config_dir: str | Path = ".") -> TrainingConfig:
    """Check a config mapping and fill in defaults.

    Parameters
    ----------
    raw : mapping
        Config keys (a parsed config file). Missing keys take :data:`DEFAULTS`.
    config_dir : str or pathlib.Path
        Folder against which relative paths are resolved.

    Returns
    -------
    TrainingConfig

    Raises
    ------
    TrainingError
        On an unknown key (with the closest valid one) or a value of the wrong type or range.
    """
    values = copy.deepcopy(DEFAULTS)
    seen: dict[str, str] = {}
    for key, value in raw.items():
        name = ALIASES.get(key, key)
        if name not in DEFAULTS:
            raise TrainingError(f"unknown config key {key!r}{suggest_key(key)}")
        if name in seen:
            raise TrainingError(f"config keys {seen[name]!r} and {key!r} both set {name!r}; keep one")
        seen[name] = key
        values[name] = copy.deepcopy(value)

    v = values
    _check_str(v, "model")
    _check_str(v, "data_path")
    _check_str(v, "output_dir")
    _check_str(v, "optimizer")
    _check_str(v, "loss")
    for key in ("feat_used", "target_used"):
        mapping = v[key]
        if (
            not isinstance(mapping, dict)
            or not mapping
            or not all(isinstance(k, str) and isinstance(a, str) and k and a for k, a in mapping.items())
        ):
            raise TrainingError(
                f"{key} must be a non-empty object of model name to array name, e.g. {DEFAULTS[key]}, got {mapping!r}"
            )
    trace = v["trace_used"]
    if not isinstance(trace, list) or not all(isinstance(a, str) and a for a in trace):
        raise TrainingError(f"trace_used must be a list of array names (may be empty), got {trace!r}")

    for key, (low, high) in INT_RANGES.items():
        _check_int(v, key, low, high)
    _check_float(v, "learning_rate", 0.0, math.inf, "a positive number")
    _check_float(v, "lrfactordelta", 0.0, 1.0, "a number between 0 and 1 (exclusive)")
    _check_float(v, "dropval", 0.0, 1.0, "a number in [0, 1)", low_inclusive=True)
    for key in SPLIT_KEYS:
        _check_float(v, key, 0.0, 1.0, "a positive fraction below 1")
    total = sum(v[key] for key in SPLIT_KEYS)
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise TrainingError(
            f"training_split + val_split + test_split must sum to 1, got "
            f"{v['training_split']} + {v['val_split']} + {v['test_split']} = {total:g}"
        )
    for key in ("allocate_vram_an", "tensboard_log", "data_multiprocessing"):
        if not isinstance(v[key], bool):
            raise TrainingError(f"{key} must be true or false, got {v[key]!r}")
    if v["mixed_precision"] is not None and v["mixed_precision"] not in MIXED_PRECISION_POLICIES:
        raise TrainingError(
            f'mixed_precision must be null, "mixed_float16" or "mixed_bfloat16", got {v["mixed_precision"]!r}'
        )

    if v["distribution"] is not None and v["distribution"] not in DISTRIBUTIONS:
        raise TrainingError(
            f'distribution must be null (one device) or "data_parallel", got {v["distribution"]!r}'
        )
    if v["simulation"] is not None and not isinstance(v["simulation"], dict):
        raise TrainingError(f"simulation must be an object of pipeline settings or null, got {v['simulation']!r}")

    config_dir = Path(config_dir).resolve()
    v["output_dir"] = (config_dir / Path(v["output_dir"]).expanduser()).resolve()
    return TrainingConfig(**v, config_dir=config_dir)


def _check_str(values: dict[str, Any], key: str) -> None:
    if not isinstance(values[key], str) or not values[key]:
        raise TrainingError(f"{key} must be a non-empty string, got {values[key]!r}")


def _check_int(values: dict[str, Any], key: str, minimum: int, maximum: int) -> None:
    value = values[key]
    if isinstance(value, float) and value.is_integer():
        value = values[key] = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise TrainingError(f"{key} must be {what} no larger than {maximum}, got {values[key]!r}")


def _check_float(
    values: dict[str, Any], key: str, low: float, high: float, what: str, low_inclusive: bool = False
) -> None:
    value = values[key]
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low <= value if low_inclusive else low < value) and value < high
    if not ok:
        raise TrainingError(f"{key} must be {what}, got {value!r}")
    values[key] = float(value)
