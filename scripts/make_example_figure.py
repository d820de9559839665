#!/usr/bin/env python
"""`make images`: redraw the tracked figure ``images/example_map_set.png``.

It is the figure that ``make demo`` draws to ``results/demo/example_map_set.png``: map set 1 of a data set simulated
with the paper's settings and seed 2021. Map set ``i`` depends only on (seed, ``i``), so the first two map sets,
simulated into a temporary folder, give the same picture as the demo's 300 without touching ``results/``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # demo.py, beside this file (it puts the root on the path)

import demo  # noqa: E402

TRACKED_FIGURE = demo.ROOT / "images" / "example_map_set.png"


def make_example_figure(output: Path, workdir: Path, **settings) -> Path:
    """Simulate the demo's first map sets into ``workdir`` and draw its example map set to ``output``.

    Parameters
    ----------
    output : pathlib.Path
        PNG to write.
    workdir : pathlib.Path
        Folder for the small data set (``map_sets32.npz`` and ``window_info.npz``).
    **settings
        Overrides of the paper's simulation settings (e.g. ``npix=32`` in the tests); none for the tracked figure.

    Returns
    -------
    pathlib.Path
        ``output``.
    """
    data = demo.simulate_example_data(Path(workdir) / "map_sets32.npz", demo.EXAMPLE_INDEX + 1, workers=1,
                                      progress=False, **settings)
    return demo.draw_example(data, Path(output), pdf=False)  # the README shows the PNG only


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python scripts/make_example_figure.py [--output PNG]``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="make_example_figure.py",
        description="Redraw images/example_map_set.png, the example figure of `make demo`: map set "
                    f"{demo.EXAMPLE_INDEX} of the paper's settings with seed {demo.EXAMPLE_SEED}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--output", type=Path, default=TRACKED_FIGURE, help="PNG to write")
    args = parser.parse_args(argv)
    if not args.output.parent.is_dir():
        print(f"make_example_figure.py: error: folder {args.output.parent} does not exist; create it or choose "
              "another --output", file=sys.stderr)
        return 2
    print(f"simulating map sets 0-{demo.EXAMPLE_INDEX} (paper settings, seed {demo.EXAMPLE_SEED}) in a temporary "
          "folder", flush=True)
    with tempfile.TemporaryDirectory(prefix="resunet-example-") as tmp:
        figure = make_example_figure(args.output, Path(tmp))
    print(f"wrote {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
