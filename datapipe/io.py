"""The pipeline's map files as pixell sky maps: ``enmap.ndmap`` arrays with the flat-sky WCS they were made on.

The ``.npz`` / ``.h5`` files store bare float32 arrays (nsims, npix, npix), flipped up–down like the paper's data
(row 0 = the top of the sky image), with the geometry only in the metadata. Handed to pixell as they are, with a
geometry that does not describe that layout, a Q/U pair is read as mirrored and E leaks into B at order one.
:func:`read_maps` attaches the WCS and, by default, puts the pixels in pixell's usual order:

- rows run south to north (declination increases with the row index),
- columns run east to west (right ascension decreases with the column index, so a display with ``origin="lower"``
  shows RA increasing to the left, as on the sky).

That is the layout of the FITS files of :mod:`datapipe.export`. Either layout gives the same E/B through
``enmap.map2harm(..., iau=False)`` as the pipeline's ``e_len``/``b_len``, since pixell takes the pixel directions
from the WCS.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pixell import enmap

from datapipe.errors import PipelineError
from datapipe.fourier import FlatSkyGrid
from datapipe.settings import SimulationSettings

MAP_SUFFIXES = (".npz", ".h5", ".hdf5")
#: Entries of a map file that are not maps.
NON_MAP_ENTRIES = frozenset({"metadata"})


def sky_geometry(npix: int, pixel_arcmin: float) -> tuple[tuple[int, int], Any]:
    """Geometry of a map in sky order: the pipeline's CAR patch with RA decreasing along the columns.

    Parameters
    ----------
    npix : int
        Pixels per side.
    pixel_arcmin : float
        Pixel size in arcmin.

    Returns
    -------
    shape : tuple of int
        ``(npix, npix)``.
    wcs : astropy.wcs.WCS
        CAR WCS centred on (RA, Dec) = (0, 0), ``cdelt = (-pixel, +pixel)`` in degrees.
    """
    shape, wcs = FlatSkyGrid(int(npix), float(pixel_arcmin)).geometry
    return enmap.slice_geometry(shape, wcs, (slice(None), slice(None, None, -1)))


def stored_geometry(npix: int, pixel_arcmin: float) -> tuple[tuple[int, int], Any]:
    """Geometry that describes the arrays exactly as stored (row 0 = north, RA increasing along the columns).

    Parameters
    ----------
    npix : int
        Pixels per side.
    pixel_arcmin : float
        Pixel size in arcmin.

    Returns
    -------
    shape, wcs
        As :func:`sky_geometry`, with ``cdelt = (+pixel, -pixel)``.
    """
    shape, wcs = FlatSkyGrid(int(npix), float(pixel_arcmin)).geometry
    return enmap.slice_geometry(shape, wcs, (slice(None, None, -1), slice(None)))


def geometry(settings: SimulationSettings) -> tuple[tuple[int, int], Any]:
    """Sky-order geometry (:func:`sky_geometry`) of the maps simulated with ``settings``."""
    return sky_geometry(settings.npix, settings.pixel_arcmin)


def to_sky_order(stored: np.ndarray) -> np.ndarray:
    """Pixels of stored maps (..., npix, npix) rearranged into sky order: both axes reversed, a contiguous copy."""
    return np.ascontiguousarray(np.asarray(stored)[..., ::-1, ::-1])


def array_unit(name: str) -> str | None:
    """FITS unit of a pipeline array: ``uK`` for CMB maps, ``rad2`` for φ, ``""`` for κ and τ, None if unknown."""
    if name.startswith(("tru_", "rec_", "wf_rec_")):
        return {"phi": "rad2", "kappa": "", "tau": ""}.get(name.rsplit("_", 1)[-1])
    return "uK" if name[:2] in ("t_", "q_", "u_", "e_", "b_") else None


class MapFile:
    """A map file of the pipeline, opened for reading its headers, metadata and blocks of maps.

    Parameters
    ----------
    path : str or Path
        ``.npz`` or ``.h5`` / ``.hdf5`` file written by ``datapipe/datapipeline.py``.

    Attributes
    ----------
    shapes : dict
        Array name → shape, in file order (``metadata`` left out).
    metadata : dict or None
        The run description, or None if the file has none.

    Raises
    ------
    PipelineError
        The file is missing, has another suffix, or cannot be read.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.suffix.lower() not in MAP_SUFFIXES:
            raise PipelineError(f"{self.path} is not a map file of the pipeline (.npz or .h5)")
        if not self.path.is_file():
            raise PipelineError(f"map file {self.path} does not exist")
        self.is_h5 = self.path.suffix.lower() != ".npz"
        try:
            self.shapes, self.metadata = self._read_h5_headers() if self.is_h5 else self._read_npz_headers()
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise PipelineError(f"cannot read map file {self.path}: {exc}") from None
        if self.metadata is not None and not isinstance(self.metadata, dict):
            raise PipelineError(f"cannot read map file {self.path}: its metadata is a JSON "
                                f"{type(self.metadata).__name__}, not an object; is it a pipeline output?")

    def _read_npz_headers(self) -> tuple[dict[str, tuple[int, ...]], dict | None]:
        shapes, metadata = {}, None
        with zipfile.ZipFile(self.path) as zf:
            for info in zf.infolist():
                name = info.filename.removesuffix(".npy")
                with zf.open(info) as member:
                    if name in NON_MAP_ENTRIES:
                        if name == "metadata":
                            metadata = json.loads(str(np.lib.format.read_array(member, allow_pickle=False)))
                        continue
                    shapes[name] = _npy_header(member)[0]
        return shapes, metadata

    def _read_h5_headers(self) -> tuple[dict[str, tuple[int, ...]], dict | None]:
        import h5py

        with h5py.File(self.path, "r") as f:
            shapes = {k: tuple(f[k].shape) for k in f if isinstance(f[k], h5py.Dataset) and k not in NON_MAP_ENTRIES}
            metadata = json.loads(f.attrs["metadata"]) if "metadata" in f.attrs else None
        return shapes, metadata

    @property
    def flipped(self) -> bool:
        """Whether the maps are stored flipped up–down (the pipeline's convention; assumed without metadata)."""
        return bool((self.metadata or {}).get("flipped_up_down", True))

    def check_names(self, names: Sequence[str]) -> None:
        """Raise :class:`PipelineError` unless every name is a (nsims, npix, npix) array of the file."""
        missing = [name for name in names if name not in self.shapes]
        if missing:
            raise PipelineError(f"{self.path} has no array {', '.join(missing)}; it has: {', '.join(self.shapes)}")
        for name in names:
            shape = self.shapes[name]
            if len(shape) != 3 or shape[1] != shape[2]:
                raise PipelineError(f"array {name} of {self.path} has shape {shape}, not (nsims, npix, npix)")

    def pixel_arcmin(self, override: float | None = None) -> float:
        """Pixel size in arcmin from the metadata, or ``override`` for a file without metadata."""
        settings = (self.metadata or {}).get("settings")
        stored = settings.get("pixel_arcmin") if isinstance(settings, dict) else None
        if stored is not None and (isinstance(stored, bool) or not isinstance(stored, (int, float))
                                   or not 0 < stored < float("inf")):
            raise PipelineError(f"the pixel size recorded in {self.path} is {stored!r}, not a positive number; "
                                "is it a pipeline output?")
        if stored is None and override is None:
            raise PipelineError(f"{self.path} has no metadata giving the pixel size: is it a file written by "
                                "datapipe/datapipeline.py? (From Python, pass pixel_arcmin=; the pipeline's default "
                                "is 2.34375.)")
        if stored is not None and override is not None and not np.isclose(stored, override):
            raise PipelineError(f"pixel_arcmin={override} contradicts the {stored} arcmin recorded in {self.path}; "
                                "leave pixel_arcmin out")
        return float(stored if stored is not None else override)

    def read_block(self, name: str, start: int, stop: int) -> np.ndarray:
        """Maps ``start .. stop - 1`` of one array, as stored (float32, no reordering).

        Only those maps are read from disk (``.npz`` members are streamed, ``.h5`` datasets sliced).
        """
        if self.is_h5:
            import h5py

            with h5py.File(self.path, "r") as f:
                return np.asarray(f[name][start:stop], dtype=np.float32)
        with zipfile.ZipFile(self.path) as zf, zf.open(f"{name}.npy") as member:
            shape, fortran_order, dtype = _npy_header(member)
            if fortran_order:
                return np.asarray(np.lib.format.read_array(member, allow_pickle=False)[start:stop], dtype=np.float32)
            per_map = int(np.prod(shape[1:])) * dtype.itemsize
            _skip(member, start * per_map)
            return _read_maps(member, max(0, min(stop, shape[0]) - start), shape, dtype)

    def iter_blocks(self, name: str, stop: int, block_maps: int) -> Iterator[np.ndarray]:
        """Maps ``0 .. stop - 1`` of one array in consecutive blocks of ``block_maps``, as stored (float32).

        The file is opened once and read front to back, so memory holds one block and nothing is read twice.
        """
        stop = min(stop, self.shapes[name][0])
        if self.is_h5:
            import h5py

            with h5py.File(self.path, "r") as f:
                for start in range(0, stop, block_maps):
                    yield np.asarray(f[name][start : min(start + block_maps, stop)], dtype=np.float32)
            return
        with zipfile.ZipFile(self.path) as zf, zf.open(f"{name}.npy") as member:
            shape, fortran_order, dtype = _npy_header(member)
            if fortran_order:
                data = np.lib.format.read_array(member, allow_pickle=False)
                for start in range(0, stop, block_maps):
                    yield np.asarray(data[start : min(start + block_maps, stop)], dtype=np.float32)
                return
            for start in range(0, stop, block_maps):
                yield _read_maps(member, min(block_maps, stop - start), shape, dtype)


def _read_maps(member: Any, count: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The next ``count`` maps of a C-ordered ``.npy`` stream of the given shape and dtype, as float32."""
    per_map = int(np.prod(shape[1:])) * dtype.itemsize
    data = np.frombuffer(member.read(count * per_map), dtype=dtype)
    return data.reshape((count,) + tuple(shape[1:])).astype(np.float32)


def _npy_header(member: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the ``.npy`` stream ``member``, leaving it at the start of the data."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return tuple(shape), bool(fortran_order), np.dtype(dtype)


def _skip(member: Any, nbytes: int, block: int = 1 << 24) -> None:
    """Advance a (possibly non-seekable) zip member stream by ``nbytes``."""
    while nbytes > 0:
        got = len(member.read(min(block, nbytes)))
        if got == 0:
            break
        nbytes -= got


def read_maps(path: str | Path, names: str | Sequence[str] | None = None, sky_order: bool = True,
              max_maps: int | None = None, pixel_arcmin: float | None = None) -> dict[str, enmap.ndmap]:
    """Read arrays of a pipeline map file as pixell ``ndmap``s with their flat-sky CAR WCS.

    Parameters
    ----------
    path : str or Path
        ``.npz`` or ``.h5`` output of ``datapipe/datapipeline.py``.
    names : str or sequence of str, optional
        Arrays to read (default: all of them, e.g. ``q_len``, ``u_len``, ``tru_kappa``).
    sky_order : bool
        True: pixels in pixell's usual order (rows south → north, RA decreasing along the columns), the
        orientation of the FITS export. False: the arrays exactly as stored (row 0 = north, as the network sees
        them), with a WCS that describes that layout. Both are correct sky maps for pixell.
    max_maps : int, optional
        Read only the first ``max_maps`` maps of each array.
    pixel_arcmin : float, optional
        Pixel size in arcmin, needed only for a file without metadata.

    Returns
    -------
    dict of str to pixell.enmap.ndmap
        Name → float32 map stack (nmaps, npix, npix): μK for CMB maps, dimensionless κ and τ, φ in radians².

    Raises
    ------
    PipelineError
        Missing or unreadable file, unknown array name (the message lists the file's arrays), no pixel size.

    Examples
    --------
    >>> from datapipe.io import read_maps
    >>> q = read_maps("map_sets32.npz", ["q_len"])["q_len"]       # doctest: +SKIP
    """
    source = MapFile(path)
    wanted = [names] if isinstance(names, str) else list(names) if names is not None else list(source.shapes)
    source.check_names(wanted)
    if max_maps is not None and max_maps <= 0:
        raise PipelineError(f"max_maps must be a positive number of maps (got {max_maps})")
    out = {}
    for name in wanted:
        nsims, npix = source.shapes[name][0], source.shapes[name][1]
        stop = nsims if max_maps is None else min(nsims, max_maps)
        shape, wcs = (sky_geometry if sky_order else stored_geometry)(npix, source.pixel_arcmin(pixel_arcmin))
        stored = source.read_block(name, 0, stop)
        if not source.flipped:  # a file in the simulation's own layout: bring it to the stored one first
            stored = stored[:, ::-1]
        data = to_sky_order(stored) if sky_order else np.ascontiguousarray(stored)
        out[name] = enmap.ndmap(data, wcs)
    return out
