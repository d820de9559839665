"""One training run: data, model, ``model.fit`` with checkpoints and schedules, then every output of the run.

:func:`train` is what ``training/main.py`` runs once the config checked out. It loads the data source
(:mod:`training.data.sources`), builds and compiles the model (:mod:`training.build`), fits it with early stopping,
the learning-rate schedule, per-epoch checkpoints (:mod:`training.checkpoint`) and an optional wall-clock limit, and
writes the trained model, the standardization, the test-set predictions (:mod:`training.predictions`) and
``summary.json`` into ``output_dir`` (file names in :mod:`training.artifacts`).
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import math
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from training.build import build_model, check_loss, make_optimizer, write_model_diagram
from training.config import TrainingConfig, TrainingError
from training.datasettings import write_data_settings


def train(cfg: TrainingConfig, resume: bool = False, time_limit_s: float | None = None,
          overwrite: bool = False) -> dict[str, Any]:
    """Run (or resume) one training run and write all its outputs.

    Parameters
    ----------
    cfg : TrainingConfig
        The validated config.
    resume : bool
        Continue from the checkpoint in ``cfg.output_dir``.
    time_limit_s : float, optional
        Wall-clock budget of this session in seconds: training stops after the last epoch expected to end in time
        (an epoch is assumed to last as long as the longest so far), then the outputs are written.
    overwrite : bool
        Start a new run in an ``output_dir`` that holds another run's files: they are removed once the new run's
        data are loaded and its model is built, just before its first file is written (without it, such a folder
        is refused).

    Returns
    -------
    dict
        The content of ``summary.json``.

    Raises
    ------
    TrainingError
        On bad input (data, names, nothing to resume, …).
    training.interrupts.TrainingInterrupted
        After SIGINT / SIGTERM, once the checkpoint is saved.
    """
    start = time.monotonic()
    # Keras is imported here, after configure_gpu_memory(), and never TensorFlow itself (except by a TensorFlow
    # distribution strategy under the TensorFlow backend).
    import keras

    from training.distribution import setup_distribution

    # First of all: JAX's multi-process start and TensorFlow's device set-up precede any tensor.
    dist = setup_distribution(cfg.distribution, keras.backend.backend())
    if not dist.is_chief:  # other workers of a multi-node job: identical files, out of the chief's way
        cfg = dataclasses.replace(cfg, output_dir=cfg.output_dir / ".workers" / str(dist.worker_index))
    with dist.scope():
        summary = _train(cfg, resume, time_limit_s, start, dist, overwrite)
    from training.curves import write_training_curves

    write_training_curves(cfg.output_dir)  # training_curves.png/.pdf from training.log, also after --resume
    return summary


def load_distributed_data(cfg: TrainingConfig, dist: Any) -> Any:
    """The run's :class:`~training.data.bundle.DataBundle`, with global batches when training is data parallel.

    With R replicas the source builds batches of ``batch_size`` × R maps, resized to multiples of R
    (:class:`training.data.batches.ReplicaBatches`: training and validation batches trimmed, test batches padded).

    Parameters
    ----------
    cfg : TrainingConfig
        The run's config (``batch_size`` per replica).
    dist : training.distribution.Distribution
        The distribution set up for the run.

    Returns
    -------
    training.data.bundle.DataBundle
    """
    from training.data.sources import load_data

    if dist.replicas == 1:
        return load_data(cfg)
    try:
        bundle = load_data(dataclasses.replace(cfg, batch_size=cfg.batch_size * dist.replicas))
    except TrainingError as exc:
        raise TrainingError(
            f"{exc} (data_parallel: the global batch is batch_size {cfg.batch_size} x {dist.replicas} replicas)"
        ) from None
    from training.data.batches import ReplicaBatches

    share = (dist.worker_index, dist.worker_count) if dist.feeds_share else (0, 1)
    bundle.train = ReplicaBatches(bundle.train, dist.replicas, share=share)
    bundle.val = ReplicaBatches(bundle.val, dist.replicas, share=share)
    bundle.test = ReplicaBatches(bundle.test, dist.replicas, pad=True, share=share)
    return bundle


def _train(cfg: TrainingConfig, resume: bool, time_limit_s: float | None, start: float, dist: Any,
           overwrite: bool = False) -> dict[str, Any]:
    """The body of :func:`train`, run inside the distribution's scope."""
    import keras

    from training import artifacts as art
    from training.checkpoint import Checkpointer, RunState, check_resume_config, read_state
    from training.checkpoint_files import check_checkpoint_files, load_checkpoint
    from training.distribution import set_batch_norm_sync
    from training.interrupts import InterruptHandler, TrainingInterrupted
    from training.metrics import RSquared
    from training.resunet import get_model_builder
    from training.runtime import set_seed

    out = cfg.output_dir
    set_seed(cfg.seed)
    keras.mixed_precision.set_dtype_policy(cfg.mixed_precision or "float32")
    get_model_builder(cfg.model)
    optimizer = make_optimizer(cfg.optimizer, cfg.learning_rate)
    loss = check_loss(cfg.loss)
    if cfg.tensboard_log and not all(importlib.util.find_spec(m) for m in ("tensorflow", "tensorboard")):
        raise TrainingError(
            "tensboard_log needs TensorFlow and TensorBoard installed (pip install tensorflow tensorboard); "
            "or set it to false"
        )

    art.check_run_folder(out, resume, overwrite)
    state = RunState(learning_rate=cfg.learning_rate, config=cfg.to_dict())
    if resume:
        state = read_state(out)
        check_resume_config(state, cfg.to_dict())
        check_checkpoint_files(out)
        if state.finished and (state.stopped_early or state.epoch >= cfg.epochs):
            print(f"run in {out} already finished after {state.epoch} epochs; nothing to resume")
            return _read_json(out / art.SUMMARY_FILE)
        state.config = cfg.to_dict()
        state.finished = False

    bundle = load_distributed_data(cfg, dist)
    print(f"data: {bundle.source}; maps per split {bundle.sizes}")
    if dist.kind is not None:
        print(f"distribution: {dist.engine}, {dist.replicas} replicas ({', '.join(dist.devices)}); global batch "
              f"{cfg.batch_size * dist.replicas} = batch_size {cfg.batch_size} x {dist.replicas}")
    model = build_model(cfg)
    model.compile(optimizer=optimizer, loss=loss, metrics={name: [RSquared(name="r2")] for name in model.output_names})

    out.mkdir(parents=True, exist_ok=True)
    if overwrite and not resume:
        # The new run has its data and its model: only now does the old run go (--overwrite).
        removed = art.remove_run_files(out)
        if removed:
            print(f"note: --overwrite: removed the previous run's files from {out} ({', '.join(removed)})")
    means, stds = bundle.standardization.to_npz_dicts()
    art.save_npz(out / art.MEANS_FILE, means)
    art.save_npz(out / art.STDS_FILE, stds)
    write_data_settings(out, cfg)  # the training maps' pixel size, taper, beam, noise (for training/predict.py)
    if bundle.split_indices is not None:
        art.save_npz(out / art.SPLIT_FILE, bundle.split_indices)
    art.save_text(out / art.ARCHITECTURE_FILE, art.architecture_json(model))
    model.summary()
    write_model_diagram(model, out / art.DIAGRAM_FILE)

    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=cfg.haltpatience, restore_best_weights=True, verbose=1
    )
    reduce_lr = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=cfg.lrfactordelta, patience=cfg.lrpatience, verbose=1
    )
    in_main_thread = threading.current_thread() is threading.main_thread()
    interrupt = InterruptHandler() if in_main_thread else None
    checkpointer = Checkpointer(out, early_stopping, reduce_lr, state, interrupt, session_start=start)
    if resume:
        best_weights = load_checkpoint(out, model)
        checkpointer.restore_callback_state(best_weights)
        _truncate_log(out / art.LOG_FILE, state.epoch)
        if hasattr(bundle.train, "set_epoch"):
            bundle.train.set_epoch(state.epoch)
        print(f"resuming after epoch {state.epoch} at learning rate {state.learning_rate:g}")
    callbacks = [
        StopOnDivergence(cfg.learning_rate),  # first: a diverged epoch is neither checkpointed nor logged
        early_stopping,
        reduce_lr,
        checkpointer,
        keras.callbacks.CSVLogger(str(out / art.LOG_FILE), append=resume),
    ]
    if cfg.tensboard_log:
        logdir = out / "logs" / "fit" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(logdir), histogram_freq=1))
    if time_limit_s is not None:
        callbacks.append(WallClockLimit(start + time_limit_s))

    initial_epoch = state.epoch
    if state.stopped_early:
        print(f"early stopping ended this run after epoch {state.epoch}; writing its outputs")
    elif initial_epoch < cfg.epochs:
        # Batch-norm statistics of the global batch while training on several replicas (TensorFlow); off again
        # before anything is saved, so that the saved model loads under every backend.
        set_batch_norm_sync(model, dist.sync_batch_norm)
        try:
            with interrupt or nullcontext():
                model.fit(
                    bundle.train,
                    validation_data=bundle.val,
                    epochs=cfg.epochs,
                    initial_epoch=initial_epoch,
                    callbacks=callbacks,
                    shuffle=False,  # the PyDataset shuffles itself, from the seed
                    verbose=1 if sys.stdout.isatty() else 2,  # a progress bar only on a terminal
                )
        finally:
            set_batch_norm_sync(model, False)
        if hasattr(bundle.train, "close"):
            bundle.train.close()  # stop the workers of an on-the-fly stream
        if interrupt is not None and interrupt.signum is not None:
            raise TrainingInterrupted(interrupt.signum, state.epoch)
    if early_stopping.best_weights is not None:
        # Also when the epoch limit, not early stopping, ended the run: keep the best epoch's weights.
        model.set_weights(early_stopping.best_weights)

    session_time = time.monotonic() - start
    summary = _write_final_outputs(
        cfg, model, bundle, state, early_stopping, session_time, checkpointer.wall_before, dist
    )
    if bundle.close is not None:
        bundle.close()
    checkpointer.mark_finished()
    print(f"outputs written to {out}")
    return summary


def StopOnDivergence(learning_rate: float) -> Any:  # noqa: N802 - a Keras callback built lazily, like WallClockLimit
    """A callback that ends the run with a :class:`TrainingError` once an epoch's training loss is NaN or infinite
    (too high a learning rate, above all); the diverged epoch is not checkpointed and no final output is written."""
    import keras

    class _StopOnDivergence(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            loss = float((logs or {}).get("loss", 0.0))
            if not math.isfinite(loss):
                raise TrainingError(
                    f"training diverged: the loss is {loss} after epoch {epoch + 1}; lower learning_rate (now "
                    f"{learning_rate:g}) and start the run again with --overwrite"
                )

    return _StopOnDivergence()


def WallClockLimit(deadline: float) -> Any:  # noqa: N802 - builds a Keras callback lazily (Keras is imported late)
    """A callback that stops training after the last epoch expected to end before ``deadline`` (monotonic s)."""
    import keras

    class _WallClockLimit(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.longest = 0.0
            self.epoch_start = time.monotonic()

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch_start = time.monotonic()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            now = time.monotonic()
            self.longest = max(self.longest, now - self.epoch_start)
            if now + self.longest > deadline:
                print(f"time limit: stopping after epoch {epoch + 1} (another would end past the limit)")
                self.model.stop_training = True

    return _WallClockLimit()


def _write_final_outputs(
    cfg: TrainingConfig,
    model: Any,
    bundle: Any,
    state: Any,
    early_stopping: Any,
    session_time: float,
    wall_before: float,
    dist: Any,
) -> dict[str, Any]:
    import keras

    from training import artifacts as art
    from training.predictions import write_test_outputs
    from training.runtime import describe_device

    out = cfg.output_dir
    with art.atomic_path(out / art.MODEL_FILE) as tmp:
        model.save(str(tmp))
    art.save_weights_from_archive(out / art.MODEL_FILE, out / art.WEIGHTS_FILE)

    # Chunk by chunk: a test split streamed from a file larger than the RAM is never held whole.
    test_r2 = write_test_outputs(model, bundle, cfg.target_used, out)

    best = early_stopping.best
    summary = {
        "model": cfg.model,
        "parameters": int(model.count_params()),
        "backend": keras.backend.backend(),
        "device": describe_device(),
        "keras_version": keras.__version__,
        "mixed_precision": cfg.mixed_precision,
        "data_source": bundle.source,
        "maps": bundle.sizes,
        "distribution": dist.describe(),
        "global_batch_size": cfg.batch_size * dist.replicas,
        "epochs_run": int(state.epoch),
        "stopped_early": bool(state.stopped_early),
        "best_epoch": int(early_stopping.best_epoch) + 1 if best is not None else None,
        "best_val_loss": None if best is None else float(best),
        "final_learning_rate": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
        "test_r2": test_r2,
        "wall_time_s": round(session_time, 3),
        "total_wall_time_s": round(wall_before + session_time, 3),
        "config": cfg.to_dict(),
    }
    art.save_json(out / art.SUMMARY_FILE, summary)
    r2 = ", ".join(f"{k} {v:.4f}" for k, v in summary["test_r2"].items())
    print(f"best val_loss {summary['best_val_loss']} at epoch {summary['best_epoch']}; test R²: {r2}")
    return summary


def _truncate_log(path: Path, epochs: int) -> None:
    """Keep the header and the rows of the first ``epochs`` epochs of a CSVLogger file (drop rows after them)."""
    from training.artifacts import save_text

    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = lines[:1] + [
        line for line in lines[1:] if line.split(",", 1)[0].strip().isdigit() and int(line.split(",", 1)[0]) < epochs
    ]
    save_text(path, "".join(kept))


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
