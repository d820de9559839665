"""Check a simulated data set: ``python -m datapipe.check FILE [--output PNG]``.

Prints, per array, the mean ratio of the measured binned spectrum to the expected one and a χ² per bin, with the
null fraction and the taper's w2, and draws the data-check figure (PNG, and a vector PDF beside it) — by default
``<FILE stem>_check.png`` beside the data. This module is only the command line: the check is
:func:`datapipe.datacheck.check_data_file`, the figure :func:`datapipe.check_figure.plot_data_check`.

Exit status: 0 done, 1 a figure could not be written (e.g. a full disk), 2 bad input (one line on stderr),
130 / 143 stopped by Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from datapipe.commandline import run_command
from datapipe.diskio import check_folder
from datapipe.errors import PipelineError


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (every option is documented in ``docs/datapipe.md``)."""
    parser = argparse.ArgumentParser(
        prog="python -m datapipe.check",
        description="Binned spectra of a pipeline output's arrays against theory (taper accounted for), the null "
        "fraction and w2: a printed table and a figure.",
    )
    parser.add_argument("data", help="data file written by datapipe/datapipeline.py (.npz or .h5)")
    parser.add_argument("--output", help="figure to write (.png; a .pdf goes beside it); default: "
                        "<data stem>_check.png beside the data")
    parser.add_argument("--max-maps", type=int, default=256, help="use the first N map sets (default: 256)")
    parser.add_argument("--delta-l", type=float, default=150.0, help="multipole bin width (default: 150)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing figure")
    return parser


def default_output(data: Path) -> Path:
    """``<stem>_check.png`` beside the data file."""
    return data.with_name(f"{data.stem}_check.png")


def run(args: argparse.Namespace) -> int:
    """Check the data file, print the table and write the figure (raises :class:`PipelineError` on bad input)."""
    from datapipe.check_figure import plot_data_check
    from datapipe.datacheck import check_data_file
    from datapipe.plotting import save_figure

    data = Path(args.data)
    output = Path(args.output) if args.output else default_output(data)
    if output.suffix.lower() != ".png":
        raise PipelineError(f"--output must name a .png file (got {str(output)!r}); a .pdf is written beside it")
    taken = [p for p in (output, output.with_suffix(".pdf")) if p.exists()]
    if taken and not args.overwrite:
        raise PipelineError(f"{taken[0]} exists; pass --overwrite to replace it or choose another --output")
    if not output.parent.is_dir():
        check_folder(output.parent, "folder of --output", "--output")  # names a file above it
        raise PipelineError(f"folder {str(output.parent)!r} of --output does not exist")
    check_folder(output.parent, "folder of --output", "--output")  # a read-only place
    if not 0 < args.delta_l < math.inf:
        raise PipelineError(f"--delta-l must be a positive number (got {args.delta_l}); e.g. --delta-l 150")
    check = check_data_file(data, args.max_maps, delta_l=args.delta_l)
    print(check.table())
    for note in check.notes:
        print(f"note: {note}")
    written = save_figure(plot_data_check(check), output)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    # The figures are written atomically: a full disk or a signal leaves no partial figure.
    return run_command(lambda: run(args), bad_input=(PipelineError,),
                       write_failed="; a figure not completed was removed",
                       stopped="{signal} received: stopped; a figure not completed was removed")

if __name__ == "__main__":
    sys.exit(main())
