#!/usr/bin/env python3
"""Evaluate a trained network against the quadratic estimator (QE): the command line.

``python training/evaluate.py --model-dir DIR --data FILE [--output DIR] [--bias-test]`` (or ``resunet-evaluate``)

Loads a network folder (written by ``training/main.py``, or a shipped one in ``trained_networks/``), standardizes the
observed maps of a pipeline data file with the network's own means and standard deviations, predicts τ, κ and the
primordial E map (and the rotation α for ``ResUNet_CMB_4out``), rescales the predictions to physical units and
compares them with the truth in multipole bins — auto- and cross-spectra, the cross-correlation coefficient
:math:`r_L = C_L^{pt} / \\sqrt{C_L^{pp} C_L^{tt}}`, the residual power and the effective reconstruction noise — next
to the same statistics of the QE maps in the file (``rec_kappa``, ``rec_tau``, ``rec_alpha`` and their
Wiener-filtered versions ``wf_rec_*``). It writes ``metrics.json``, ``table.txt`` and PNG figures into ``--output``,
and prints the table. ``--bias-test`` adds the lensing-bias
demonstration (:mod:`training.evaluation.bias`).

The work is done by the package :mod:`training.evaluation` (also the notebook's API); this module is only the CLI.

Exit status: 0 done (metrics that lacked a truth array are skipped with a note), 2 bad input or nothing that can be
evaluated (one ``error: …`` line on stderr), 1 a file could not be read or written, e.g. on a full disk (one line),
130 / 143 stopped by Ctrl-C / SIGTERM (one line; every file already written is complete).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (`python training/evaluate.py`): import the package from the repository root, not this folder.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from datapipe.interrupts import quiet_start  # noqa: E402

if __name__ == "__main__":
    quiet_start("training/evaluate.py")  # Ctrl-C during the imports below: one line, no traceback

from datapipe.commandline import run_command  # noqa: E402
from training.config import TrainingError  # noqa: E402
from training.evaluation.comparison import DEFAULT_DELTA_L, DEFAULT_LMAX, DEFAULT_LMIN, make_edges  # noqa: E402
from training.evaluation.errors import EvaluationError  # noqa: E402
from training.evaluation.run import run_evaluation  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (every option is documented in ``docs/evaluation.md``)."""
    p = argparse.ArgumentParser(
        prog="training/evaluate.py",
        description="Evaluate a trained ResUNet-CMB network against the quadratic estimator: binned spectra, "
        "cross-correlation r_L, residual and noise power of tau, kappa, E (and alpha); figures; lensing-bias test.",
        epilog="Exit status: 0 done, 1 a file could not be written (e.g. a full disk), 2 bad input or nothing that "
        "can be evaluated, 130 / 143 stopped by Ctrl-C / SIGTERM.",
    )
    p.add_argument("--model-dir", required=True, help="network folder (training output_dir or trained_networks/<name>)")
    p.add_argument("--data", required=True, help="pipeline data file (.npz or .h5) with the network's input maps")
    p.add_argument("--output", help="output folder (default: results/evaluation/<model folder name>)")
    p.add_argument("--max-maps", type=int, help="use only the first N map sets of the data")
    p.add_argument("--batch-size", type=int, default=16, help="maps per forward pass (default 16)")
    p.add_argument("--lmin", type=float, default=DEFAULT_LMIN, help="lowest bin edge in L (default 20)")
    p.add_argument("--lmax", type=float, default=DEFAULT_LMAX,
                   help="upper end of the binned range (default 3500: 35 bins of width 99.4 from 20)")
    p.add_argument("--delta-l", type=float, default=DEFAULT_DELTA_L, help="bin width in L (default 100)")
    p.add_argument("--map-index", type=int, help="map set drawn in the map figure (default: first non-null one)")
    p.add_argument("--map-figure", help="also write the map figure here, e.g. images/ResUNet-CMB_map_results.png")
    p.add_argument("--pixel-arcmin", type=float, help="pixel size in arcmin for data without metadata")
    p.add_argument("--bias-test", action="store_true", help="run the lensing-bias test (tau = 0, lensing on)")
    p.add_argument("--bias-data", help="read the bias test's maps from this file (made with --no-tau) instead")
    p.add_argument("--bias-nsims", type=int, default=64,
                   help="map sets simulated (or read from --bias-data) for the bias test (default 64)")
    p.add_argument("--bias-seed", type=int, help="seed of the bias-test simulation (default: the data's seed + 1)")
    p.add_argument("--save-predictions", action="store_true", help="also write predictions.npz (physical units)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of an earlier evaluation in --output (and --map-figure)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see ``--help``)."""
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    from datapipe.errors import PipelineError

    args = parse_args(argv)
    output = args.output or str(Path("results") / "evaluation" / Path(args.model_dir).resolve().name)

    def evaluate() -> None:
        if args.bias_data is not None and not args.bias_test:
            raise EvaluationError("--bias-data needs --bias-test")
        run_evaluation(
            args.model_dir,
            args.data,
            output,
            max_maps=args.max_maps,
            batch_size=args.batch_size,
            edges=make_edges(args.lmin, args.lmax, args.delta_l),
            map_index=args.map_index,
            map_figure=args.map_figure,
            pixel_arcmin=args.pixel_arcmin,
            bias_test=args.bias_test,
            bias_data=args.bias_data,
            bias_nsims=args.bias_nsims,
            bias_seed=args.bias_seed,
            save_predictions=args.save_predictions,
            overwrite=args.overwrite,
        )

    return run_command(evaluate, bad_input=(TrainingError, PipelineError),
                       stopped="{signal} received: stopped; each file written so far is complete, the rest were not "
                               "written")

if __name__ == "__main__":
    sys.exit(main())
