"""Streamed, atomic writers for simulated map sets (``.npz`` or ``.h5``) and the window file.

Memory does not grow with the number of map sets: chunks go straight to disk. Each output is written
under a temporary name in the target folder and renamed at the very end, so an interrupted or failed
run never leaves something that looks like a finished file. A failed write (a full disk: ``OSError``
``ENOSPC``) removes the temporary files and raises the ``OSError``.

Outputs depend only on their content: zip members carry a fixed time stamp and HDF5 objects none, so the same
arrays and metadata give byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from datapipe.diskio import GuardedFile, atomic_output, write_npz_member, zip_member


class MapSetWriter:
    """Base class: ``write(start, arrays)`` for consecutive chunks, then ``close()`` or ``abort()``.

    Parameters
    ----------
    path : Path
        Final output path.
    names : sequence of str
        Array names, each (nsims, npix, npix) float32.
    nsims, npix : int
        Output shape.
    metadata : dict or None
        JSON-serializable run description stored with the data.
    """

    def __init__(self, path: Path, names: list[str], nsims: int, npix: int, metadata: dict | None):
        self.path = Path(path)
        self.names = list(names)
        self.nsims = nsims
        self.npix = npix
        self.metadata = metadata
        self.written = 0

    def __enter__(self) -> MapSetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, start: int, arrays: dict[str, np.ndarray]) -> None:
        if start != self.written:
            raise RuntimeError(f"chunks must arrive in order: expected index {self.written}, got {start}")
        count = None
        for name in self.names:
            chunk = np.ascontiguousarray(arrays[name], dtype=np.float32)
            count = chunk.shape[0]
            self._write_chunk(name, start, chunk)
        self.written += count or 0

    def _check_complete(self) -> None:
        if self.written != self.nsims:
            raise RuntimeError(f"only {self.written} of {self.nsims} map sets were written")

    def _write_chunk(self, name: str, start: int, chunk: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def abort(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class NpzWriter(MapSetWriter):
    """Streams each array into its own ``.npy`` file, then packs them (uncompressed) into the ``.npz``.

    The metadata is stored as the 0-d string array ``metadata`` (a JSON document); with ``metadata=None`` the file
    holds the arrays only.
    """

    def __init__(self, path: Path, names: list[str], nsims: int, npix: int, metadata: dict | None):
        super().__init__(path, names, nsims, npix, metadata)
        self._files = {}
        self._tmpdir = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.parts-"))
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                  "shape": (nsims, npix, npix)}
        try:
            for name in self.names:
                fp = open(self._tmpdir / f"{name}.npy", "wb")  # noqa: SIM115 - closed in close()/abort()
                self._files[name] = fp
                np.lib.format.write_array_header_2_0(fp, header)
        except BaseException:  # a full disk, or Ctrl-C / SIGTERM before the caller holds the writer
            self.abort()
            raise

    def _write_chunk(self, name: str, start: int, chunk: np.ndarray) -> None:
        self._files[name].write(chunk.tobytes())

    def close(self) -> None:
        try:
            self._check_complete()
            for fp in self._files.values():
                fp.close()
            tmp_zip = self._tmpdir / "packed.npz"
            with zipfile.ZipFile(tmp_zip, "w", allowZip64=True) as zf:
                for name in self.names:
                    part = self._tmpdir / f"{name}.npy"
                    with open(part, "rb") as src, zf.open(zip_member(f"{name}.npy", part.stat().st_size), "w") as dst:
                        shutil.copyfileobj(src, dst, 16 * 2**20)
                    os.remove(part)  # the disk holds the packed arrays plus at most one part
                if self.metadata is not None:
                    write_npz_member(zf, "metadata.npy", np.array(json.dumps(self.metadata)))
            os.chmod(tmp_zip, 0o644)
            os.replace(tmp_zip, self.path)
        except BaseException:
            self.abort()
            raise
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    def abort(self) -> None:
        for fp in self._files.values():
            try:
                fp.close()  # may fail again on a full disk (buffered bytes)
            except OSError:
                pass
        shutil.rmtree(self._tmpdir, ignore_errors=True)


class H5Writer(MapSetWriter):
    """Writes chunks into HDF5 datasets (one per array); metadata in the file's attributes."""

    def __init__(self, path: Path, names: list[str], nsims: int, npix: int, metadata: dict):
        import h5py

        super().__init__(path, names, nsims, npix, metadata)
        self._h5 = None
        self._raw = None
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".part")
        self._tmp = Path(tmp)
        try:  # from here on a full disk, Ctrl-C or SIGTERM leaves no temporary file behind
            os.close(fd)
            self._raw = GuardedFile(self._tmp)
            self._h5 = h5py.File(self._raw, "w")
            chunk_maps = max(1, min(nsims, 16))
            for name in self.names:
                self._h5.create_dataset(name, shape=(nsims, npix, npix), dtype="f4", chunks=(chunk_maps, npix, npix))
            write_h5_metadata(self._h5, metadata)
            self._raw.raise_error()
        except BaseException:
            self.abort()
            raise

    def _write_chunk(self, name: str, start: int, chunk: np.ndarray) -> None:
        self._h5[name][start : start + chunk.shape[0]] = chunk
        self._raw.raise_error()

    def close(self) -> None:
        try:
            self._check_complete()
            self._h5.close()
            self._raw.raise_error()
            self._raw.close()
            os.chmod(self._tmp, 0o644)
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        try:
            if self._h5 is not None:
                self._h5.close()  # never fails on a write: the GuardedFile drops them after an error
        finally:
            if self._raw is not None:
                self._raw.close()
            self._tmp.unlink(missing_ok=True)


def write_h5_metadata(h5: Any, metadata: dict) -> None:
    """Store a run description as HDF5 file attributes: one per top-level key, plus ``metadata`` (all as JSON).

    Parameters
    ----------
    h5 : h5py.File
        File open for writing.
    metadata : dict
        JSON-serializable run description; dicts and lists become JSON strings.
    """
    for key, value in metadata.items():
        h5.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
    h5.attrs["metadata"] = json.dumps(metadata)


def write_virtual_h5(path: Path, names: list[str], nsims: int, npix: int, shards: list[tuple[str, int, int]],
                     metadata: dict) -> Path:
    """Write an HDF5 file whose arrays are virtual datasets over shard files, atomically.

    The result reads like a file from :class:`H5Writer` (arrays ``(nsims, npix, npix)`` float32 at the root,
    metadata in the attributes) but holds no map data: each array maps the index range ``start .. stop`` onto the
    same-named dataset of a shard. Maps no shard covers read as NaN.

    Parameters
    ----------
    path : Path
        Final output path (``.h5`` / ``.hdf5``).
    names : list of str
        Array names, present in every shard with shape ``(stop - start, npix, npix)``.
    nsims, npix : int
        Shape of the assembled arrays.
    shards : list of (str, int, int)
        ``(file, start, stop)`` per shard. A relative ``file`` is resolved by HDF5 against the folder of ``path``,
        so the output and its shard folder can be moved together.
    metadata : dict
        JSON-serializable run description stored as attributes.

    Returns
    -------
    Path
        The output path.
    """
    import h5py

    path = Path(path)
    with atomic_output(path) as tmp:
        raw = GuardedFile(tmp)
        try:
            with h5py.File(raw, "w") as h5:
                for name in names:
                    layout = h5py.VirtualLayout(shape=(nsims, npix, npix), dtype="f4")
                    for file, start, stop in shards:
                        layout[start:stop] = h5py.VirtualSource(file, name, shape=(stop - start, npix, npix))
                    h5.create_virtual_dataset(name, layout, fillvalue=np.float32(np.nan))
                write_h5_metadata(h5, metadata)
            raw.raise_error()
        finally:
            raw.close()
    return path


def open_writer(path: Path, names: list[str], nsims: int, npix: int, metadata: dict) -> MapSetWriter:
    """The writer for ``path``'s format (``.npz`` or ``.h5``/``.hdf5``)."""
    if Path(path).suffix.lower() == ".npz":
        return NpzWriter(path, names, nsims, npix, metadata)
    return H5Writer(path, names, nsims, npix, metadata)


def write_window_file(path: Path, taper: np.ndarray, w2: float, taper_deg: float | None = None,
                      pixel_arcmin: float | None = None) -> Path:
    """Write ``window_info.npz`` (``taper`` and ``w2``, and the taper's settings when given) atomically.

    The taper is stored flipped up–down like the maps, so it multiplies the saved maps directly. The file is
    reproducible: the same taper gives the same bytes.

    Parameters
    ----------
    path : Path
        The window file.
    taper : ndarray
        (npix, npix) taper as simulated (not flipped).
    w2 : float
        Mean of its square.
    taper_deg, pixel_arcmin : float, optional
        The settings that made it, stored as ``taper_deg`` and ``pixel_arcmin`` (degrees, arcmin).
    """
    path = Path(path)
    arrays = {"taper": np.ascontiguousarray(taper[::-1]), "w2": np.float64(w2)}
    if taper_deg is not None and pixel_arcmin is not None:
        arrays.update(taper_deg=np.float64(taper_deg), pixel_arcmin=np.float64(pixel_arcmin))
    with atomic_output(path, suffix=".npz") as tmp, zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
        for key, value in arrays.items():
            write_npz_member(zf, f"{key}.npy", value)
    return path


def read_settings(path: Path) -> Mapping[str, Any]:
    """The simulation settings recorded in a map file's metadata; empty when it has none or cannot be read.

    Parameters
    ----------
    path : pathlib.Path
        ``.npz`` or ``.h5`` map file.

    Returns
    -------
    Mapping
        ``metadata["settings"]`` (``npix``, ``pixel_arcmin`` in arcmin, …), or an empty mapping.
    """
    try:
        meta = read_metadata(path)
    except (OSError, KeyError, ValueError, TypeError):
        return {}
    settings = meta.get("settings") if isinstance(meta, Mapping) else None
    return settings if isinstance(settings, Mapping) else {}


def read_metadata(path: Path) -> dict:
    """The run description stored in an output file of either format."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        with np.load(path) as f:
            return json.loads(str(f["metadata"]))
    import h5py

    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["metadata"])
