"""Reading the user's Q and U maps, and writing the network's outputs as FITS enmaps.

Inputs are read as pixell enmaps in pixell's own orientation:

- a FITS map (``enmap.read_map``): a single (ny, nx) map; a (2, ny, nx) map is read as Q, U and a (3, ny, nx) map as
  T, Q, U, so that one IQU file can be given to both ``--q`` and ``--u``;
- a pipeline ``.npz`` / ``.h5`` file: one map set (``index``) of the array the network takes (``q_len``, ``u_len``),
  in μK, put back on the pipeline's CAR geometry (pixel size from the file's metadata) and un-flipped.

Outputs are written all at once: every file first under a temporary name, then renamed, so a failure leaves no
partial set and an earlier output is replaced only with ``overwrite``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from training.apply.errors import ApplyError

PIPELINE_SUFFIXES = (".npz", ".h5", ".hdf5")
#: Component of Q and U in multi-component FITS maps, by number of components.
STOKES_INDEX = {2: {"q": 0, "u": 1}, 3: {"q": 1, "u": 2}}
INFO_FILE = "predict_info.json"
PARTIAL_PREFIX = ".partial-"


def _read_npz_map(path: Path, name: str, index: int) -> np.ndarray:
    """Map ``index`` of one array of an ``.npz`` file, read alone from the archive member."""
    with zipfile.ZipFile(path) as zf, zf.open(f"{name}.npy") as member:
        version = np.lib.format.read_magic(member)
        header = np.lib.format.read_array_header_2_0 if version == (2, 0) else np.lib.format.read_array_header_1_0
        shape, fortran, dtype = header(member)
        if fortran or dtype.hasobject:
            raise ApplyError(f"array {name!r} in {str(path)!r} is not stored like the pipeline's arrays")
        per_map = math.prod(shape[1:]) * dtype.itemsize
        member.seek(index * per_map, os.SEEK_CUR)
        return np.frombuffer(member.read(per_map), dtype=dtype).reshape(shape[1:])


def read_pipeline_map(path: str | Path, array: str, index: int, pixel_arcmin: float) -> tuple[Any, list[str]]:
    """One map of a pipeline data file, as an enmap on the pipeline's geometry.

    Parameters
    ----------
    path : str or pathlib.Path
        ``.npz`` or ``.h5`` file written by ``datapipe/datapipeline.py``.
    array : str
        The array (e.g. ``"q_len"``, μK).
    index : int
        The map set.
    pixel_arcmin : float
        Pixel size assumed when the file has no metadata (the network's).

    Returns
    -------
    imap : pixell.enmap.ndmap
        (npix, npix) float32 map, rows in pixell's order (the pipeline's up–down flip undone).
    notes : list of str

    Raises
    ------
    ApplyError
        If the array is missing, the index is outside the file, or the file cannot be read.
    """
    from pixell import enmap

    from datapipe.fourier import FlatSkyGrid
    from datapipe.writer import read_settings
    from training.evaluation.mapdata import inspect_data

    path = Path(path)
    shapes = inspect_data(path)
    if array not in shapes:
        raise ApplyError(f"{str(path)!r} has no array {array!r} (the network's input); it has: {', '.join(shapes)}")
    nmaps, npix = shapes[array][0], shapes[array][1]
    if not 0 <= index < nmaps:
        raise ApplyError(f"--index {index} is outside {str(path)!r}, which holds map sets 0 to {nmaps - 1}")
    try:
        if path.suffix.lower() == ".npz":
            arr = _read_npz_map(path, array, index)
        else:
            import h5py

            with h5py.File(path, "r") as f:
                arr = np.asarray(f[array][index])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ApplyError(f"cannot read {array!r} from {str(path)!r}: {exc}") from None
    arr = arr[..., 0] if arr.ndim == 3 else arr
    notes = []
    settings = read_settings(path)
    if settings.get("pixel_arcmin") is None:
        notes.append(f"{path.name} has no metadata: assuming the network's {pixel_arcmin:g}' pixels")
    else:
        pixel_arcmin = float(settings["pixel_arcmin"])
    wcs = FlatSkyGrid(int(npix), pixel_arcmin).wcs
    return enmap.enmap(np.ascontiguousarray(arr[::-1], dtype=np.float32), wcs), notes


def read_fits_map(path: str | Path, stokes: str) -> Any:
    """The Q or U map of a FITS enmap: the map itself if 2-D, else its Q or U component (see the module docstring).

    Raises
    ------
    ApplyError
        If the file cannot be read or holds no single, (Q, U) or (T, Q, U) map.
    """
    from pixell import enmap

    with warnings.catch_warnings(record=True) as caught:  # astropy's warnings, e.g. of a truncated file
        warnings.simplefilter("always")
        try:
            imap = enmap.read_map(str(path))
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            told = "; ".join(dict.fromkeys(str(w.message) for w in caught))
            raise ApplyError(f"cannot read {str(path)!r} as a FITS map: {exc}" + (f" ({told})" if told else "")) \
                from None
    for w in caught:  # a map that could be read: pass the warnings on as they were
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if imap.ndim == 3 and imap.shape[0] == 1:
        imap = imap[0]
    elif imap.ndim == 3 and imap.shape[0] in STOKES_INDEX:
        imap = imap[STOKES_INDEX[imap.shape[0]][stokes]]
    if imap.ndim != 2:
        raise ApplyError(f"{str(path)!r} holds a map of shape {imap.shape}; give a (ny, nx) map, or (2, ny, nx) Q, U "
                         "or (3, ny, nx) T, Q, U")
    return enmap.enmap(np.asarray(imap, dtype=np.float32), imap.wcs)


def read_input(path: str | Path, stokes: str, array: str, index: int, pixel_arcmin: float) -> tuple[Any, list[str]]:
    """The Q (``stokes="q"``) or U map from a FITS file or a pipeline file (see the module docstring).

    Parameters
    ----------
    path : str or pathlib.Path
        FITS map, or pipeline ``.npz`` / ``.h5`` file.
    stokes : {"q", "u"}
        Which map (names the option in messages and picks the component of multi-component FITS maps).
    array : str
        The pipeline array to read from a pipeline file (the network's input array name).
    index : int
        Map set of a pipeline file.
    pixel_arcmin : float
        Pixel size assumed for a pipeline file without metadata.

    Returns
    -------
    imap : pixell.enmap.ndmap
        (ny, nx) float32 map in μK.
    notes : list of str
    """
    path = Path(path)
    if not path.is_file():
        problem = "is a folder" if path.is_dir() else "does not exist"
        raise ApplyError(f"{stokes.upper()} map {str(path)!r} {problem}; pass --{stokes} a FITS map or a "
                         "pipeline .npz/.h5 file")
    if path.suffix.lower() in PIPELINE_SUFFIXES:
        return read_pipeline_map(path, array, index, pixel_arcmin)
    return read_fits_map(path, stokes), []


def output_names(fields: list[str]) -> list[str]:
    """The files :func:`write_outputs` writes for these fields (plus the coverage map and the description)."""
    return [f"{name}.fits" for name in [*fields, "coverage"]] + [INFO_FILE]


def check_output_folder(folder: str | Path, fields: list[str], overwrite: bool) -> None:
    """Refuse an output folder that already holds one of the output files, unless ``overwrite``.

    Raises
    ------
    ApplyError
        If ``folder`` is a file, or holds outputs and ``overwrite`` is False.
    datapipe.errors.PipelineError
        If ``folder`` cannot be made (a file above it) or written.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ApplyError(f"--output {str(folder)!r} is a file; give a folder")
    from datapipe.diskio import check_creatable_folder

    check_creatable_folder(folder, "output folder", "--output")  # a file above it, or a read-only place
    present = [name for name in output_names(fields) if (folder / name).exists()]
    if present and not overwrite:
        raise ApplyError(f"{str(folder)!r} already holds {', '.join(present)}; pass --overwrite to replace them or "
                         "choose another --output")


def write_outputs(
    folder: str | Path, maps: Mapping[str, Any], units: Mapping[str, str], info: Mapping[str, Any], overwrite: bool
) -> list[Path]:
    """Write each map as ``<name>.fits`` (its WCS, ``BUNIT`` when it has a unit) and ``predict_info.json``.

    Parameters
    ----------
    folder : str or pathlib.Path
        Output folder (created when missing; removed again if writing fails).
    maps : mapping of str to pixell.enmap.ndmap
        Field name (file stem) → map; ``"coverage"`` among them.
    units : mapping of str to str
        Field name → FITS unit (``"uK"``, ``"rad"``); dimensionless fields are left out.
    info : mapping
        JSON-ready description of the prediction.
    overwrite : bool
        Replace existing outputs.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    from pixell import enmap

    folder = Path(folder)
    check_output_folder(folder, [n for n in maps if n != "coverage"], overwrite)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    partial: list[tuple[Path, Path]] = []
    try:
        for name, imap in maps.items():
            final = folder / f"{name}.fits"
            tmp = folder / f"{PARTIAL_PREFIX}{final.name}"
            extra = {"BUNIT": units[name]} if units.get(name) else {}
            partial.append((tmp, final))
            enmap.write_map(str(tmp), imap, extra=extra, allow_modify=True)
        final = folder / INFO_FILE
        tmp = folder / f"{PARTIAL_PREFIX}{final.name}"
        partial.append((tmp, final))
        tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    except BaseException:
        for tmp, _ in partial:
            tmp.unlink(missing_ok=True)
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    for tmp, final in partial:
        os.replace(tmp, final)
    return [final for _, final in partial]
