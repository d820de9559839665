"""Where the pipeline writes by default: the file that the repository's ``config.json`` reads."""

from __future__ import annotations

from pathlib import Path

#: File name of the pipeline's default output (``data_path`` of the repository's ``config.json`` names it too).
DEFAULT_OUTPUT_NAME = "map_sets32.npz"


def default_output_path() -> Path:
    """Absolute path of the file that ``datapipeline.py`` writes when ``--output`` is not given.

    In a source checkout (the folder above the ``datapipe`` package holds ``config.json`` and ``training/``), it is
    ``<repository root>/datapipe/map_sets32.npz``, the ``data_path`` of that ``config.json``, whatever the working
    directory. In an installed package, it is ``map_sets32.npz`` in the working directory.

    Returns
    -------
    pathlib.Path
        Absolute path of the default output file.
    """
    package = Path(__file__).resolve().parent
    root = package.parent
    if (root / "config.json").is_file() and (root / "training").is_dir():
        return package / DEFAULT_OUTPUT_NAME
    return Path.cwd().resolve() / DEFAULT_OUTPUT_NAME
