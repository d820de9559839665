#!/usr/bin/env python3
"""Apply a trained network to your own Q/U maps of any size: the command line.

``python training/predict.py --model-dir DIR --q Q.fits --u U.fits --output OUT/`` (or ``resunet-predict``)

Reads the observed Stokes Q and U maps (FITS enmaps, or one map set of a pipeline ``.npz`` / ``.h5`` file), checks
that their pixels are the network's training pixels, predicts κ, τ and the primordial E map — tile by tile for maps
larger than the network's input, stitched with the weights that undo the training taper — and writes each output as
a FITS enmap with the input's WCS into ``--output``: ``kappa.fits``, ``tau.fits`` (dimensionless), ``e_unl.fits``
(μK), ``coverage.fits`` (each map is coverage × the field) and ``predict_info.json``.

The work is done by the package :mod:`training.apply`; this module is only the CLI.

Exit status: 0 done, 2 bad input (one ``error: …`` line on stderr, no output written), 1 a file could not be read or
written, e.g. on a full disk, 130 / 143 stopped by Ctrl-C / SIGTERM (one line each; no output written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (`python training/predict.py`): import the package from the repository root, not this folder.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from datapipe.interrupts import quiet_start  # noqa: E402

if __name__ == "__main__":
    quiet_start("training/predict.py")  # Ctrl-C during the imports below: one line, no traceback

from datapipe.commandline import run_command  # noqa: E402
from training.apply.tiling import DEFAULT_MIN_WEIGHT  # noqa: E402
from training.config import TrainingError  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (every option is documented in ``docs/predict.md``)."""
    p = argparse.ArgumentParser(
        prog="training/predict.py",
        description="Apply a trained ResUNet-CMB network to observed Q/U maps of any size (FITS enmaps or a "
        "pipeline file) and write its kappa, tau and E maps as FITS enmaps with the input's WCS.",
        epilog="Exit status: 0 done, 1 a file could not be read or written (e.g. a full disk), 2 bad input, "
        "130 / 143 stopped by Ctrl-C / SIGTERM.",
    )
    p.add_argument("--model-dir", required=True, help="network folder (training output_dir or trained_networks/<name>)")
    p.add_argument("--q", required=True, help="Q map in uK: FITS (2-D, or Q of a (2|3, ny, nx) QU/TQU map) or .npz/.h5")
    p.add_argument("--u", required=True, help="U map in uK: FITS (2-D, or U of a (2|3, ny, nx) QU/TQU map) or .npz/.h5")
    p.add_argument("--output", required=True, help="output folder (created)")
    p.add_argument("--index", type=int, default=0, help="map set read from a pipeline .npz/.h5 file (default 0)")
    p.add_argument("--batch-size", type=int, default=16, help="tiles per forward pass (default 16)")
    p.add_argument("--stride", type=int, help="pixels between neighbouring tiles (default: half a tile)")
    p.add_argument("--min-weight", type=float, default=DEFAULT_MIN_WEIGHT,
                   help="coverage threshold c: maps are sum(w p) / max(sum(w^2), c) (default 0.5)")
    p.add_argument("--pixel-arcmin", type=float,
                   help="training pixel size for network folders without data_settings.json (default 2.34375)")
    p.add_argument("--taper-deg", type=float,
                   help="training taper width for network folders without data_settings.json (default 1.5)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs already in --output")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary line (notes are still printed)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see ``--help``)."""
    return build_parser().parse_args(argv)


def run(args: argparse.Namespace) -> list[Path]:
    """Load, check, predict and write; return the files written (raises TrainingError on bad input)."""
    from training.apply.errors import ApplyError
    from training.apply.geometry import training_geometry
    from training.apply.mapio import check_output_folder, read_input, write_outputs
    from training.apply.predict import STOKES_ARRAYS, field_name, predict_with_info
    from training.evaluation.network import check_network_folder

    if args.batch_size < 1:
        raise ApplyError(f"--batch-size must be at least 1 (got {args.batch_size})")
    if args.index < 0:
        raise ApplyError(f"--index must be >= 0 (got {args.index})")
    check_network_folder(args.model_dir)
    for stokes in ("q", "u"):
        if not Path(getattr(args, stokes)).is_file():
            raise ApplyError(f"{stokes.upper()} map {getattr(args, stokes)!r} does not exist; pass --{stokes} a FITS "
                             "map or a pipeline .npz/.h5 file")
    from training.evaluation.network import load_network
    from training.runtime import load_keras

    load_keras()  # after the cheap checks, and without TensorFlow's start-up messages before an error line
    network = load_network(args.model_dir)
    fields = [field_name(array) for array in network.outputs.values()]
    check_output_folder(args.output, fields, args.overwrite)
    geometry = training_geometry(network, args.pixel_arcmin, args.taper_deg)
    notes = list(network.notes)
    maps = {}
    for stokes in ("q", "u"):
        maps[stokes], read_notes = read_input(getattr(args, stokes), stokes, STOKES_ARRAYS[stokes], args.index,
                                              geometry.pixel_arcmin)
        notes += read_notes
    result = predict_with_info(network, maps["q"], maps["u"], batch_size=args.batch_size, stride=args.stride,
                               min_weight=args.min_weight, pixel_arcmin=args.pixel_arcmin, taper_deg=args.taper_deg,
                               progress=not args.quiet)
    notes += result.notes
    info = {"model_dir": str(Path(args.model_dir).resolve()), "q": str(Path(args.q).resolve()),
            "u": str(Path(args.u).resolve()), "index": args.index, **result.info(), "notes": notes}
    written = write_outputs(args.output, result.maps, result.units, info, args.overwrite)
    for note in notes:
        print(f"note: {note}")
    if not args.quiet:
        n = geometry.npix
        path = f"{result.tiles} tiles of {n}x{n}, stride {result.stride}" if result.stride else "one network-sized map"
        recovered = float((result.maps["coverage"] >= 1).mean())
        print(f"predicted {', '.join(fields)} on {maps['q'].shape[0]}x{maps['q'].shape[1]} maps ({path}); coverage 1 "
              f"on {100 * recovered:.1f}% of the pixels; wrote {len(written)} files to {args.output}")
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    from datapipe.errors import PipelineError

    args = parse_args(argv)
    return run_command(lambda: run(args), bad_input=(TrainingError, PipelineError), write_failed="; no output written",
                       stopped="{signal} received: stopped; no output written")

if __name__ == "__main__":
    sys.exit(main())
