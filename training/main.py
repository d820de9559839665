#!/usr/bin/env python3
"""Train ResUNet-CMB from a JSON config: ``python training/main.py config.json``.

Reads the maps named in the config, splits and standardizes them, trains the model with early stopping and a
learning-rate schedule, checkpoints every epoch, and writes the trained model, test-set predictions (physical
units) and a summary into ``output_dir``. Any Keras 3 backend works (``KERAS_BACKEND=tensorflow|jax|torch``).

Exit status: 0 on success, 2 on bad input (one line on stderr), 128 + signal number after a Ctrl-C / SIGTERM that
saved a checkpoint (continue with ``--resume``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import shutil
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script (`python training/main.py`, or `python main.py` inside training/): import the package from
    # the repository root instead of this folder, whose module names (config, data, …) would shadow others.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from training.config import TrainingConfig, TrainingError, load_config  # noqa: E402
from training.runtime import configure_gpu_memory  # noqa: E402

# Optimizer classes of keras.optimizers that cannot be built from a learning rate alone.
_NOT_PLAIN_OPTIMIZERS = {"Optimizer", "LossScaleOptimizer", "MultiOptimizer"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="training/main.py",
        description="Train ResUNet-CMB (or another registered model) on simulated CMB maps.",
        epilog="Exit status: 0 done, 2 bad input, 130/143 interrupted by Ctrl-C/SIGTERM (checkpoint saved).",
    )
    parser.add_argument("config", help="JSON config file (relative paths inside resolve against its folder)")
    parser.add_argument("--epochs", type=int, help="override the config's epochs (the total, also with --resume)")
    parser.add_argument("--output-dir", help="override the config's output_dir (relative to the current folder)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run checkpointed in output_dir from its last epoch"
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        metavar="MINUTES",
        help="stop after the last epoch that fits in this wall time (counted from the start, data loading "
        "included), then write every output; --resume continues such a run",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = parse_args(argv)
    try:
        cfg = load_config(args.config)
        changes: dict[str, Any] = {}
        if args.epochs is not None:
            changes["epochs"] = args.epochs
        if args.output_dir is not None:
            changes["output_dir"] = str(Path(args.output_dir).resolve())
        if changes:
            cfg = cfg.replace(**changes)
        if args.time_limit is not None and not args.time_limit > 0:
            raise TrainingError(f"--time-limit must be a positive number of minutes, got {args.time_limit}")
        # Before the first Keras import: the backends read these settings when they start.
        configure_gpu_memory(cfg.allocate_vram_an)
        # Cheap data checks (file, arrays, map size, split sizes) before the backend loads: bad input fails fast,
        # with nothing but the error line on stderr.
        from training.data import check_data

        check_data(cfg)
        from training.checkpoint import TrainingInterrupted

        try:
            train(cfg, resume=args.resume, time_limit_s=None if args.time_limit is None else 60 * args.time_limit)
        except TrainingInterrupted as exc:
            print(
                f"interrupted: {exc}; checkpoint saved in {cfg.output_dir}; continue with --resume",
                file=sys.stderr,
            )
            return 128 + exc.signum
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted before a checkpoint could be saved", file=sys.stderr)
        return 130
    return 0


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


def train(cfg: TrainingConfig, resume: bool = False, time_limit_s: float | None = None) -> dict[str, Any]:
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

    Returns
    -------
    dict
        The content of ``summary.json``.

    Raises
    ------
    TrainingError
        On bad input (data, names, nothing to resume, …).
    training.checkpoint.TrainingInterrupted
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
        return _train(cfg, resume, time_limit_s, start, dist)


def load_distributed_data(cfg: TrainingConfig, dist: Any) -> Any:
    """The run's :class:`~training.data.DataBundle`, with global batches when training is data parallel.

    With R replicas the source builds batches of ``batch_size`` × R maps, resized to multiples of R
    (:class:`training.batches.ReplicaBatches`: training and validation batches trimmed, test batches padded).

    Parameters
    ----------
    cfg : TrainingConfig
        The run's config (``batch_size`` per replica).
    dist : training.distribution.Distribution
        The distribution set up for the run.

    Returns
    -------
    training.data.DataBundle
    """
    from training.data import load_data

    if dist.replicas == 1:
        return load_data(cfg)
    try:
        bundle = load_data(dataclasses.replace(cfg, batch_size=cfg.batch_size * dist.replicas))
    except TrainingError as exc:
        raise TrainingError(
            f"{exc} (data_parallel: the global batch is batch_size {cfg.batch_size} x {dist.replicas} replicas)"
        ) from None
    from training.batches import ReplicaBatches

    share = (dist.worker_index, dist.worker_count) if dist.feeds_share else (0, 1)
    bundle.train = ReplicaBatches(bundle.train, dist.replicas, share=share)
    bundle.val = ReplicaBatches(bundle.val, dist.replicas, share=share)
    bundle.test = ReplicaBatches(bundle.test, dist.replicas, pad=True, share=share)
    return bundle


def _train(cfg: TrainingConfig, resume: bool, time_limit_s: float | None, start: float, dist: Any) -> dict[str, Any]:
    """The body of :func:`train`, run inside the distribution's scope."""
    import keras

    from training import artifacts as art
    from training.checkpoint import (
        Checkpointer,
        InterruptHandler,
        RunState,
        TrainingInterrupted,
        check_resume_config,
        has_checkpoint,
        load_checkpoint,
        read_state,
    )
    from training.distribution import set_batch_norm_sync
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

    state = RunState(learning_rate=cfg.learning_rate, config=cfg.to_dict())
    if resume:
        state = read_state(out)
        check_resume_config(state, cfg.to_dict())
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
    if not resume and has_checkpoint(out):
        print(f"note: starting a new run in {out}; its old checkpoint is discarded (use --resume to continue it)")
        shutil.rmtree(out / "checkpoint", ignore_errors=True)
    means, stds = bundle.standardization.to_npz_dicts()
    art.save_npz(out / art.MEANS_FILE, means)
    art.save_npz(out / art.STDS_FILE, stds)
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
    with art.atomic_path(out / art.WEIGHTS_FILE) as tmp:
        model.save_weights(str(tmp))

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


if __name__ == "__main__":
    sys.exit(main())
