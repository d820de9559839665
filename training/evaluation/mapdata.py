"""Reading a pipeline data file for evaluation: the arrays, the pixel size, the taper and its w2.

Spectra of tapered maps are divided by w2, the mean of the squared taper; it comes from ``window_info.npz`` beside
the data when that file belongs to it, else from the file's metadata, else it is 1 (with a note).
"""

from __future__ import annotations

import dataclasses
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datapipe.errors import PipelineError
from training.config import TrainingError
from training.evaluation.errors import EvaluationError
from training.evaluation.network import Network

#: Pixel size assumed for data without metadata (the paper's), in arcmin.
PAPER_PIXEL_ARCMIN = 2.34375
WINDOW_FILE = "window_info.npz"


@dataclasses.dataclass
class MapData:
    """Maps read from a pipeline data file, with the geometry needed for spectra.

    Attributes
    ----------
    path : pathlib.Path
        The data file.
    arrays : dict of str to ndarray
        Array name → (nmaps, npix, npix) float32 maps (CMB maps in μK, κ and τ dimensionless).
    npix : int
        Pixels per side.
    pixel_arcmin : float
        Pixel size in arcmin.
    w2 : float
        Mean of the squared taper (spectra of tapered maps are divided by it).
    w2_source : str
        Where w2 came from (``window_info.npz``, the file's metadata, or none).
    taper : ndarray or None
        (npix, npix) taper as applied to the saved maps.
    metadata : dict
        The file's run description (empty when it has none).
    missing : list of str
        Requested arrays the file does not have.
    notes : list of str
        Remarks made while reading.
    """

    path: Path
    arrays: dict[str, np.ndarray]
    npix: int
    pixel_arcmin: float
    w2: float
    w2_source: str
    taper: np.ndarray | None
    metadata: dict[str, Any]
    missing: list[str]
    notes: list[str]

    @property
    def nmaps(self) -> int:
        """Number of map sets read."""
        return len(next(iter(self.arrays.values()))) if self.arrays else 0


def inspect_data(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Array names and shapes (nsims, npix, npix) of a ``.npz`` / ``.h5`` data file, from headers only.

    Raises
    ------
    EvaluationError
        If the file is missing or unreadable, or holds no map arrays.
    """
    from training.data.mapfile import inspect_map_file

    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"data file {str(path)!r} does not exist; pass --data a file written by the pipeline")
    try:
        shapes = inspect_map_file(path)
    except TrainingError as exc:
        raise EvaluationError(str(exc)) from None
    shapes = {k: (v[:3] if len(v) == 4 and v[-1] == 1 else v) for k, v in shapes.items()}
    shapes = {k: v for k, v in shapes.items() if len(v) == 3 and v[1] == v[2]}
    if not shapes:
        raise EvaluationError(f"data file {str(path)!r} holds no (nsims, npix, npix) map arrays")
    return shapes


def read_arrays(path: str | Path, names: Sequence[str], max_maps: int | None = None) -> dict[str, np.ndarray]:
    """Read named arrays (or their first ``max_maps`` maps) from a ``.npz`` / ``.h5`` data file as float32.

    Parameters
    ----------
    path : str or pathlib.Path
        The data file.
    names : sequence of str
        Arrays to read; each must exist (see :func:`inspect_data`).
    max_maps : int, optional
        Read at most this many map sets (the first ones).

    Returns
    -------
    dict of str to ndarray
        (nmaps, npix, npix) float32 arrays.

    Raises
    ------
    EvaluationError
        If the file cannot be read, or a map holds NaN or inf (array and map index named).
    """
    path = Path(path)
    out = {}
    try:
        if path.suffix.lower() in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                out = {n: np.asarray(f[n][:max_maps]) for n in names}
        else:
            from datapipe.io import MapFile

            stored = MapFile(path)  # .npz members are streamed: only the first max_maps maps are read
            out = {n: stored.read_block(n, 0, stored.shapes[n][0] if max_maps is None else max_maps) for n in names}
    except PipelineError as exc:
        raise EvaluationError(str(exc)) from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise EvaluationError(f"cannot read data file {str(path)!r}: {exc}") from None
    for name, arr in out.items():
        if arr.ndim == 4:
            arr = arr[..., 0]
        arr = out[name] = np.ascontiguousarray(arr, dtype=np.float32)
        bad = np.flatnonzero(~np.isfinite(arr).reshape(arr.shape[0], -1).all(axis=1))
        if bad.size:
            raise EvaluationError(f"array {name!r} in {str(path)!r} has NaN or inf values in map index {bad[0]}")
    return out


def _metadata(path: Path) -> dict[str, Any]:
    from datapipe.writer import read_metadata

    try:
        meta = read_metadata(path)
    except (OSError, KeyError, ValueError, TypeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def data_settings(metadata: Mapping[str, Any], npix: int | None = None) -> Any:
    """The :class:`datapipe.settings.SimulationSettings` a data file was made with (from its metadata).

    Parameters
    ----------
    metadata : mapping
        The file's metadata (``datapipe.writer.read_metadata``); without ``settings``, the paper's defaults.
    npix : int, optional
        Map side to use when the metadata does not give one.

    Returns
    -------
    datapipe.settings.SimulationSettings
    """
    from datapipe.settings import SimulationSettings

    known = {f.name for f in dataclasses.fields(SimulationSettings)}
    given = metadata.get("settings") if isinstance(metadata.get("settings"), Mapping) else {}
    kwargs = {k: v for k, v in given.items() if k in known}
    if "maps" in kwargs:
        kwargs["maps"] = tuple(kwargs["maps"])
    if npix is not None and "npix" not in kwargs:
        kwargs["npix"] = npix
    return SimulationSettings(**kwargs)


def taper_and_w2(
    path: Path, npix: int, metadata: Mapping[str, Any], pixel_arcmin: float
) -> tuple[np.ndarray | None, float, str, list[str]]:
    """The taper of a data file and w2, the mean of its square.

    Read from ``window_info.npz`` beside the data when it fits (same map size, and the same w2 as the file's
    metadata when both give one); else rebuilt from the metadata's settings with :mod:`datapipe.taper`; else no
    taper (w2 = 1), with a note.

    Returns
    -------
    taper : ndarray or None
        (npix, npix) taper, flipped like the maps.
    w2 : float
        Mean of the squared taper.
    source : str
        ``"window_info.npz"``, ``"metadata"`` or ``"none"``.
    notes : list of str
        Remarks (why a source was not used).
    """
    from datapipe.taper import cosine_taper, w2_factor

    notes = []
    window = path.parent / WINDOW_FILE
    meta_w2 = metadata.get("w2")
    if window.is_file():
        try:
            with np.load(window) as f:
                taper = np.asarray(f["taper"], dtype=np.float64)
                w2 = float(f["w2"])
        except (OSError, KeyError, ValueError) as exc:
            notes.append(f"cannot read {window} ({exc}); rebuilding the taper")
        else:
            if taper.shape != (npix, npix):
                notes.append(f"{window} is for {taper.shape[0]}x{taper.shape[-1]} maps, not {npix}x{npix}; ignored")
            elif meta_w2 is not None and abs(float(meta_w2) - w2) > 1e-6 * w2:
                notes.append(f"{window} (w2 {w2:.6g}) belongs to another data set (w2 {float(meta_w2):.6g}); ignored")
            else:
                return taper, w2, WINDOW_FILE, notes
    if isinstance(metadata.get("settings"), Mapping):
        settings = data_settings(metadata, npix)
        taper = cosine_taper(npix, int(settings.taper_deg * 60.0 / pixel_arcmin))[::-1]
        return np.ascontiguousarray(taper), w2_factor(taper), "metadata", notes
    notes.append(f"no {WINDOW_FILE} beside {path.name} and no metadata: spectra are not corrected for a taper (w2 = 1)")
    return None, 1.0, "none", notes


def load_map_data(
    path: str | Path,
    names: Sequence[str] | None = None,
    max_maps: int | None = None,
    pixel_arcmin: float | None = None,
) -> MapData:
    """Read a pipeline data file: the wanted arrays that exist, the pixel size and the taper's w2.

    Parameters
    ----------
    path : str or pathlib.Path
        ``.npz`` or ``.h5`` file from ``datapipe/datapipeline.py``.
    names : sequence of str, optional
        Arrays to read (default: all map arrays). Names the file lacks are listed in ``missing``.
    max_maps : int, optional
        Read only the first ``max_maps`` map sets.
    pixel_arcmin : float, optional
        Pixel size in arcmin (default: from the file's metadata, else the paper's 2.34375 with a note).

    Returns
    -------
    MapData

    Raises
    ------
    EvaluationError
        If the file is missing or unreadable, maps hold NaN or inf, or ``max_maps`` < 1.
    """
    path = Path(path)
    shapes = inspect_data(path)
    if max_maps is not None and max_maps < 1:
        raise EvaluationError(f"--max-maps must be at least 1 (got {max_maps})")
    wanted = list(shapes) if names is None else list(dict.fromkeys(names))
    present = [n for n in wanted if n in shapes]
    missing = [n for n in wanted if n not in shapes]
    npix = shapes[present[0]][1] if present else next(iter(shapes.values()))[1]
    odd = [n for n in present if shapes[n][1:] != (npix, npix)]
    if odd:
        raise EvaluationError(f"arrays of {str(path)!r} have different map sizes: {odd[0]!r} {shapes[odd[0]]}")
    metadata = _metadata(path)
    notes = []
    settings = metadata.get("settings") if isinstance(metadata.get("settings"), Mapping) else {}
    if pixel_arcmin is None:
        pixel_arcmin = settings.get("pixel_arcmin")
        if pixel_arcmin is None:
            pixel_arcmin = PAPER_PIXEL_ARCMIN
            notes.append(f"{path.name} has no metadata: assuming {PAPER_PIXEL_ARCMIN}' pixels (set --pixel-arcmin)")
    if not (isinstance(pixel_arcmin, int | float) and 0 < pixel_arcmin <= 60):
        raise EvaluationError(f"pixel size must be a number in (0, 60] arcmin (got {pixel_arcmin!r}); e.g. "
                              "--pixel-arcmin 2.34375")
    taper, w2, w2_source, taper_notes = taper_and_w2(path, npix, metadata, float(pixel_arcmin))
    arrays = read_arrays(path, present, max_maps)
    return MapData(path, arrays, npix, float(pixel_arcmin), w2, w2_source, taper, metadata, missing,
                   notes + taper_notes)


def check_compatible(network: Network, shapes: Mapping[str, tuple[int, ...]], path: str | Path) -> None:
    """Check a network against a data file's arrays: input arrays present, map size equal to the network's.

    Raises
    ------
    EvaluationError
        Naming the missing arrays or both map sizes.
    """
    missing = [a for a in network.inputs.values() if a not in shapes]
    if missing:
        raise EvaluationError(
            f"data file {str(path)!r} lacks the network's input array(s) {', '.join(missing)}; it has: "
            f"{', '.join(shapes)}"
        )
    npix = shapes[next(iter(network.inputs.values()))][1]
    if network.imagesize is not None and npix != network.imagesize:
        raise EvaluationError(
            f"the network takes {network.imagesize}x{network.imagesize} maps but {str(path)!r} holds {npix}x{npix} "
            f"maps; evaluate on data simulated with --npix {network.imagesize}"
        )
