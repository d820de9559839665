"""The pieces of a run that come from the config by name: the optimizer, the loss and the model."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

from training.config import TrainingConfig, TrainingError

# Optimizer classes of keras.optimizers that cannot be built from a learning rate alone.
_NOT_PLAIN_OPTIMIZERS = {"Optimizer", "LossScaleOptimizer", "MultiOptimizer"}


def make_optimizer(name: str, learning_rate: float) -> Any:
    """Instantiate ``keras.optimizers.<name>(learning_rate=...)``; the name is matched case-insensitively.

    Raises
    ------
    TrainingError
        If ``keras.optimizers`` has no such optimizer; the message lists the valid names.
    """
    import keras

    valid = {
        n: cls
        for n in dir(keras.optimizers)
        if isinstance(cls := getattr(keras.optimizers, n), type)
        and issubclass(cls, keras.optimizers.Optimizer)
        and n not in _NOT_PLAIN_OPTIMIZERS
    }
    match = valid.get(name) or next((cls for n, cls in valid.items() if n.lower() == name.lower()), None)
    if match is None:
        raise TrainingError(f"unknown optimizer {name!r}; valid: {', '.join(sorted(valid))}")
    return match(learning_rate=learning_rate)


def check_loss(name: str) -> str:
    """Check that ``name`` is a Keras loss (``keras.losses.get``) and return it.

    Raises
    ------
    TrainingError
        If it is not; the message lists the built-in loss functions.
    """
    import keras

    try:
        if keras.losses.get(name) is not None:
            return name
    except (ValueError, TypeError):
        pass
    valid = sorted(
        n
        for n in dir(keras.losses)
        if n.islower() and not n.startswith("_") and n not in {"get", "serialize", "deserialize"}
    )
    raise TrainingError(f"unknown loss {name!r}; valid: {', '.join(valid)}")


def build_model(cfg: TrainingConfig) -> Any:
    """Build the config's model and check its input / output names against ``feat_used`` / ``target_used``."""
    from training.resunet import get_model_builder

    model = get_model_builder(cfg.model)(cfg)
    inputs = [t.name for t in model.inputs]
    for key, names in (("feat_used", inputs), ("target_used", list(model.output_names))):
        given = getattr(cfg, key)
        if sorted(given) != sorted(names):
            raise TrainingError(
                f"{key} names {sorted(given)} do not match the {cfg.model} model's "
                f"{'inputs' if key == 'feat_used' else 'outputs'} {sorted(names)}"
            )
    return model


def write_model_diagram(model: Any, path: Path) -> bool:
    """Draw the model as a PNG if pydot and Graphviz are installed; print a note and return False otherwise."""
    import keras

    from training.artifacts import atomic_path

    if importlib.util.find_spec("pydot") is None or shutil.which("dot") is None:
        print(f"note: {path.name} skipped (install pydot and Graphviz to draw the model)")
        return False
    with atomic_path(path) as tmp:
        keras.utils.plot_model(model, to_file=str(tmp), show_shapes=True, show_layer_names=True)
    return True
