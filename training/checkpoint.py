"""Per-epoch checkpoints of a training run, and resuming from them.

After every epoch the run writes ``<output_dir>/checkpoint/`` (the files: :mod:`training.checkpoint_files`), so
that ``--resume`` continues it.

Ctrl-C or SIGTERM does not kill the process: :class:`training.interrupts.InterruptHandler` records the signal,
and :class:`Checkpointer` saves the current state at the end of the running batch and raises
:class:`training.interrupts.TrainingInterrupted` (at the end of an epoch it lets the epoch's other callbacks finish
first and stops the fit). The saved counters are those of the last completed epoch, so ``--resume`` reruns the
interrupted epoch, starting from the weights reached when the signal came.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from training.artifacts import save_json
from training.checkpoint_files import STATE_FILE, checkpoint_dir, save_checkpoint
from training.config import TrainingError
from training.interrupts import InterruptHandler, TrainingInterrupted

#: Config keys that must not change between a checkpoint and ``--resume`` (they change the model, the optimizer
#: state or the data split); the others (epochs, patience, batch size, …) may.
RESUME_FIXED_KEYS = (
    "model",
    "data_path",
    "feat_used",
    "target_used",
    "imagesize",
    "optimizer",
    "seed",
    "training_split",
    "val_split",
    "test_split",
    "mixed_precision",
)


@dataclasses.dataclass
class RunState:
    """Progress of a run, stored as ``state.json`` in the checkpoint.

    Attributes
    ----------
    epoch : int
        Epochs completed (the next epoch to run, 0-based).
    learning_rate : float
        Current learning rate.
    early_stopping : dict
        ``wait``, ``best``, ``best_epoch``, ``stopped_epoch`` of ``keras.callbacks.EarlyStopping``.
    reduce_lr : dict
        ``wait``, ``best``, ``cooldown_counter`` of ``keras.callbacks.ReduceLROnPlateau``.
    finished : bool
        Training ended (early stop or epoch limit) and the final outputs were written.
    wall_time_s : float
        Wall time of all sessions of the run so far, in seconds.
    config : dict
        The run's config (``TrainingConfig.to_dict()``).
    backend : str
        Keras backend that wrote the checkpoint.
    """

    epoch: int = 0
    learning_rate: float = 0.0
    early_stopping: dict[str, Any] = dataclasses.field(default_factory=dict)
    reduce_lr: dict[str, Any] = dataclasses.field(default_factory=dict)
    finished: bool = False
    wall_time_s: float = 0.0
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    backend: str = ""

    @property
    def stopped_early(self) -> bool:
        """Whether early stopping ended the run."""
        return int(self.early_stopping.get("stopped_epoch", 0) or 0) > 0


def read_state(output_dir: str | Path) -> RunState:
    """Read ``state.json`` of the checkpoint in ``output_dir``.

    Raises
    ------
    TrainingError
        If there is no checkpoint or it cannot be read.
    """
    path = checkpoint_dir(output_dir) / STATE_FILE
    if not path.is_file():
        raise TrainingError(
            f"nothing to resume: no checkpoint in {str(Path(output_dir))!r} (run without --resume to start)"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        state = RunState(**raw)
    except (OSError, ValueError, TypeError) as exc:
        raise TrainingError(f"cannot read checkpoint state {str(path)!r}: {exc}") from None
    problem = _state_problem(state)
    if problem:
        raise TrainingError(f"checkpoint state {str(path)!r} is damaged: {problem}; restore it, or start the run "
                            "again with --overwrite")
    return state


def _state_problem(state: RunState) -> str | None:
    """What is wrong with the values of a state read from ``state.json`` (None: nothing)."""
    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    checks = [
        ("epoch", isinstance(state.epoch, int) and not isinstance(state.epoch, bool) and state.epoch >= 0,
         "an integer >= 0"),
        ("learning_rate", number(state.learning_rate) and 0 < state.learning_rate < math.inf, "a positive number"),
        ("finished", isinstance(state.finished, bool), "true or false"),
        ("wall_time_s", number(state.wall_time_s) and 0 <= state.wall_time_s < math.inf, "a number >= 0"),
        ("backend", isinstance(state.backend, str), "a string"),
        ("config", isinstance(state.config, dict), "an object"),
    ]
    for key in ("early_stopping", "reduce_lr"):
        value = getattr(state, key)
        checks.append((key, isinstance(value, dict) and all(v is None or number(v) for v in value.values()),
                       "an object of numbers"))
    for key, ok, what in checks:
        if not ok:
            return f"{key!r} is {getattr(state, key)!r}, not {what}"
    return None


def check_resume_config(state: RunState, config: dict[str, Any]) -> None:
    """Refuse to resume with a config whose fixed keys (:data:`RESUME_FIXED_KEYS`) differ from the checkpoint's.

    Raises
    ------
    TrainingError
        Naming the first differing key, its saved and its new value.
    """
    for key in RESUME_FIXED_KEYS:
        if key in state.config and state.config[key] != config[key]:
            raise TrainingError(
                f"cannot resume: config key {key!r} is {config[key]!r} but the checkpoint was made with "
                f"{state.config[key]!r}; use the original value or a new output_dir"
            )


class Checkpointer(keras.callbacks.Callback):
    """Save a checkpoint after every epoch; save and stop cleanly on SIGINT / SIGTERM.

    Place it after the ``EarlyStopping`` and ``ReduceLROnPlateau`` callbacks it records (Keras calls callbacks in
    list order), so that its ``on_epoch_end`` sees their updated counters and its ``on_train_begin`` can put back
    the counters of a resumed run after they reset themselves.

    Parameters
    ----------
    output_dir : str or pathlib.Path
        The run's output folder.
    early_stopping : keras.callbacks.EarlyStopping
    reduce_lr : keras.callbacks.ReduceLROnPlateau
    state : RunState
        Initial state (from the checkpoint when resuming); updated in place.
    interrupt : InterruptHandler, optional
        Signal flag to watch.
    session_start : float, optional
        ``time.monotonic()`` at the start of this session (default: now), for the cumulative wall time.
    """

    def __init__(
        self,
        output_dir: str | Path,
        early_stopping: keras.callbacks.EarlyStopping,
        reduce_lr: keras.callbacks.ReduceLROnPlateau,
        state: RunState,
        interrupt: InterruptHandler | None = None,
        session_start: float | None = None,
    ) -> None:
        super().__init__()
        self.output_dir = Path(output_dir)
        self.early_stopping = early_stopping
        self.reduce_lr = reduce_lr
        self.state = state
        self.interrupt = interrupt
        self.resumed_best_weights: list[np.ndarray] | None = None
        self._session_start = time.monotonic() if session_start is None else session_start
        self.wall_before = state.wall_time_s

    def restore_callback_state(self, best_weights: list[np.ndarray] | None) -> None:
        """Put the saved early-stopping and learning-rate-schedule counters back into their callbacks."""
        es, rlr = self.early_stopping, self.reduce_lr
        for key, value in self.state.early_stopping.items():
            setattr(es, key, value)
        for key, value in self.state.reduce_lr.items():
            setattr(rlr, key, value)
        if best_weights is not None:
            es.best_weights = best_weights
        self.resumed_best_weights = best_weights

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.state.epoch > 0:
            self.restore_callback_state(self.resumed_best_weights)

    def _record(self, epoch: int) -> None:
        es, rlr = self.early_stopping, self.reduce_lr
        self.state.epoch = epoch
        self.state.learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.state.early_stopping = {
            "wait": int(es.wait),
            "best": None if es.best is None else float(es.best),
            "best_epoch": int(es.best_epoch),
            "stopped_epoch": int(es.stopped_epoch),
        }
        self.state.reduce_lr = {
            "wait": int(rlr.wait),
            "best": None if rlr.best is None else float(rlr.best),
            "cooldown_counter": int(rlr.cooldown_counter),
        }

    def save(self) -> Path:
        """Write the checkpoint now, with the current weights and the recorded counters."""
        self.state.wall_time_s = self.wall_before + time.monotonic() - self._session_start
        self.state.backend = keras.backend.backend()
        return save_checkpoint(self.output_dir, self.model, self.state, self.early_stopping.best_weights)

    def mark_finished(self) -> None:
        """Flag the run as finished in ``state.json``.

        The checkpoint keeps the weights of the last epoch (not the best ones restored for the saved model), so
        that ``--resume`` with a larger ``--epochs`` continues exactly where training stopped.
        """
        self.state.finished = True
        self.state.wall_time_s = self.wall_before + time.monotonic() - self._session_start
        save_json(checkpoint_dir(self.output_dir) / STATE_FILE, dataclasses.asdict(self.state))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._record(epoch + 1)
        self.save()
        if self.interrupt is not None and self.interrupt.signum is not None:
            # Stop after this epoch's remaining callbacks (the CSV row) ran; the loop raises TrainingInterrupted.
            self.model.stop_training = True

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.interrupt is not None and self.interrupt.signum is not None:
            # The JAX trainer keeps the newest variables outside the model until asked to write them back.
            sync = getattr(self.model, "jax_state_sync", None)
            if sync is not None:
                sync()
            self.save()
            self._stop_if_interrupted()

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # During validation the weights are those of the finished training batches: same as above.
        self.on_train_batch_end(batch, logs)

    def _stop_if_interrupted(self) -> None:
        if self.interrupt is not None and self.interrupt.signum is not None:
            raise TrainingInterrupted(self.interrupt.signum, self.state.epoch)
