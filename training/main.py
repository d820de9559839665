#!/usr/bin/env python3
"""Train ResUNet-CMB from a JSON config: ``python training/main.py config.json`` (or ``resunet-train config.json``).

Reads the maps named in the config, splits and standardizes them, trains the model with early stopping and a
learning-rate schedule, checkpoints every epoch, and writes the trained model, test-set predictions (physical
units) and a summary into ``output_dir``. Any Keras 3 backend works (``KERAS_BACKEND=tensorflow|jax|torch``).
This module is only the command line; the run itself is :func:`training.loop.train`.

Exit status: 0 on success, 2 on bad input (one line on stderr), 1 when writing (or reading) a file failed, e.g. on
a full disk (one line; the last complete checkpoint is kept), 128 + signal number after a Ctrl-C / SIGTERM that
saved a checkpoint (continue with ``--resume``).
"""

from __future__ import annotations

import argparse
import errno
import math
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script (`python training/main.py`, or `python main.py` inside training/): import the package from
    # the repository root instead of this folder, whose module names (config, data, …) would shadow others.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from datapipe.interrupts import quiet_start  # noqa: E402

if __name__ == "__main__":
    quiet_start("training/main.py")  # Ctrl-C during the imports below: one line, no traceback

from datapipe.commandline import run_command  # noqa: E402
from training.artifacts import check_output_folder, check_run_folder  # noqa: E402
from training.config import TrainingError, load_config  # noqa: E402
from training.runtime import configure_gpu_memory, load_keras  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (every option is documented in ``docs/training.md``)."""
    parser = argparse.ArgumentParser(
        prog="training/main.py",
        description="Train ResUNet-CMB (or another registered model) on simulated CMB maps.",
        epilog="Exit status: 0 done, 1 a file could not be written (e.g. a full disk), 2 bad input, 130/143 "
        "interrupted by Ctrl-C/SIGTERM (checkpoint saved).",
    )
    parser.add_argument("config", help="JSON config file (relative paths inside resolve against its folder)")
    parser.add_argument("--epochs", type=int, help="override the config's epochs (the total, also with --resume)")
    parser.add_argument("--output-dir", help="override the config's output_dir (relative to the current folder)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run checkpointed in output_dir from its last epoch"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run in an output_dir that holds another run's files; they are removed once the new run "
        "has loaded its data and built its model",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        metavar="MINUTES",
        help="stop after the last epoch that fits in this wall time (counted from the start, data loading "
        "included), then write every output; --resume continues such a run",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see ``--help``)."""
    return build_parser().parse_args(argv)


def describe_os_error(exc: OSError, output_dir: Path | None = None) -> str:
    """One line for a failed read or write during a run (a full disk above all).

    Parameters
    ----------
    exc : OSError
        The error.
    output_dir : pathlib.Path, optional
        The run's folder, once known: a full disk then says whether a checkpoint is there to ``--resume`` from.
    """
    where = f" ({exc.filename})" if exc.filename else ""
    text = f"{exc.strerror or exc}{where}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        from training.checkpoint_files import has_checkpoint

        if output_dir is None or has_checkpoint(output_dir):
            text += ("; the checkpoint of the last complete epoch is kept: free some space, then continue with "
                     "--resume")
        else:
            text += "; no epoch was checkpointed yet: free some space, then start again with --overwrite"
    return text


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = parse_args(argv)
    # SIGTERM too outside the training loop, whose own handler saves a checkpoint (and _run reports it).
    return run_command(lambda: _run(args), bad_input=(TrainingError,), describe=describe_os_error,
                       stopped="interrupted ({signal}) before a checkpoint could be saved")


def _run(args: argparse.Namespace) -> int:
    """The run behind :func:`main`: check the input, then train (errors are reported by main)."""
    cfg = load_config(args.config)
    changes: dict[str, Any] = {}
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.output_dir is not None:
        changes["output_dir"] = str(Path(args.output_dir).resolve())
    if changes:
        cfg = cfg.replace(**changes)
    if args.time_limit is not None and not 0 < args.time_limit < math.inf:
        raise TrainingError(f"--time-limit must be a positive number of minutes, got {args.time_limit}")
    # Where the run writes, before anything is read: a folder that cannot be written, or that holds another
    # run, fails now rather than after the data load.
    check_output_folder(cfg.output_dir, "--output-dir (or output_dir)")
    check_run_folder(cfg.output_dir, resume=args.resume, overwrite=args.overwrite)
    if args.resume:
        from training.checkpoint_files import check_checkpoint_files

        check_checkpoint_files(cfg.output_dir)  # every file there and readable
    # Before the first Keras import: the backends read these settings when they start.
    configure_gpu_memory(cfg.allocate_vram_an)
    # Cheap data checks (file, arrays, map size, split sizes) before the backend loads: bad input fails fast,
    # with nothing but the error line on stderr.
    from training.data.sources import check_data

    check_data(cfg)
    load_keras()  # without TensorFlow's start-up messages
    from training.interrupts import TrainingInterrupted
    from training.loop import train

    try:
        train(cfg, resume=args.resume, time_limit_s=None if args.time_limit is None else 60 * args.time_limit,
              overwrite=args.overwrite)
    except OSError as exc:
        print(f"error: {describe_os_error(exc, cfg.output_dir)}", file=sys.stderr)
        return 1
    except TrainingInterrupted as exc:
        print(
            f"interrupted: {exc}; checkpoint saved in {cfg.output_dir}; continue with --resume",
            file=sys.stderr,
        )
        return 128 + exc.signum
    return 0


if __name__ == "__main__":
    sys.exit(main())
