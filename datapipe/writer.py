"""Streamed, atomic writers for simulated map sets (``.npz`` or ``.h5``) and the window file.

Memory does not grow with the number of map sets: chunks go straight to disk. Each output is written
under a temporary name in the target folder and renamed at the very end, so an interrupted or failed
run never leaves something that looks like a finished file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from datapipe.errors import PipelineError

SUPPORTED_SUFFIXES = (".npz", ".h5", ".hdf5")


@contextmanager
def atomic_output(path: Path, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is made readable (0644) and renamed to ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_output_path(path: Path, overwrite: bool) -> Path:
    """Validate an output path before any work is done.

    Raises
    ------
    PipelineError
        Unknown suffix, existing file without ``overwrite``, or a folder that cannot be written.
    """
    path = Path(path)
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise PipelineError(f"output {path} must end in .npz or .h5 (got {path.suffix or 'no suffix'!r})")
    if path.is_dir():
        raise PipelineError(f"output {path} is a folder; give a file name such as {path / 'map_sets32.npz'}")
    if path.exists() and not overwrite:
        raise PipelineError(f"output {path} already exists; pass --overwrite to replace it or choose another --output")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise PipelineError(f"output folder {folder} does not exist; create it first or choose another --output")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise PipelineError(f"cannot write to output folder {folder} ({exc.strerror}); choose another "
                            "--output") from exc
    return path


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
        self._tmpdir = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.parts-"))
        self._files = {}
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                  "shape": (nsims, npix, npix)}
        for name in self.names:
            fp = open(self._tmpdir / f"{name}.npy", "wb")  # noqa: SIM115 - closed in close()/abort()
            np.lib.format.write_array_header_2_0(fp, header)
            self._files[name] = fp

    def _write_chunk(self, name: str, start: int, chunk: np.ndarray) -> None:
        self._files[name].write(chunk.tobytes())

    def close(self) -> None:
        self._check_complete()
        for fp in self._files.values():
            fp.close()
        tmp_zip = self._tmpdir / "packed.npz"
        with zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name in self.names:
                zf.write(self._tmpdir / f"{name}.npy", arcname=f"{name}.npy")
                os.remove(self._tmpdir / f"{name}.npy")
            if self.metadata is not None:
                with zf.open("metadata.npy", "w") as member:
                    np.lib.format.write_array(member, np.array(json.dumps(self.metadata)))
        os.chmod(tmp_zip, 0o644)
        os.replace(tmp_zip, self.path)
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    def abort(self) -> None:
        for fp in self._files.values():
            fp.close()
        shutil.rmtree(self._tmpdir, ignore_errors=True)


class H5Writer(MapSetWriter):
    """Writes chunks into HDF5 datasets (one per array); metadata in the file's attributes."""

    def __init__(self, path: Path, names: list[str], nsims: int, npix: int, metadata: dict):
        import h5py

        super().__init__(path, names, nsims, npix, metadata)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".part")
        os.close(fd)
        self._tmp = Path(tmp)
        self._h5 = h5py.File(self._tmp, "w")
        chunk_maps = max(1, min(nsims, 16))
        for name in self.names:
            self._h5.create_dataset(name, shape=(nsims, npix, npix), dtype="f4", chunks=(chunk_maps, npix, npix))
        write_h5_metadata(self._h5, metadata)

    def _write_chunk(self, name: str, start: int, chunk: np.ndarray) -> None:
        self._h5[name][start : start + chunk.shape[0]] = chunk

    def close(self) -> None:
        self._check_complete()
        self._h5.close()
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        try:
            self._h5.close()
        finally:
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
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as h5:
        for name in names:
            layout = h5py.VirtualLayout(shape=(nsims, npix, npix), dtype="f4")
            for file, start, stop in shards:
                layout[start:stop] = h5py.VirtualSource(file, name, shape=(stop - start, npix, npix))
            h5.create_virtual_dataset(name, layout, fillvalue=np.float32(np.nan))
        write_h5_metadata(h5, metadata)
    return path


def open_writer(path: Path, names: list[str], nsims: int, npix: int, metadata: dict) -> MapSetWriter:
    """The writer for ``path``'s format (``.npz`` or ``.h5``/``.hdf5``)."""
    if Path(path).suffix.lower() == ".npz":
        return NpzWriter(path, names, nsims, npix, metadata)
    return H5Writer(path, names, nsims, npix, metadata)


def write_window_file(path: Path, taper: np.ndarray, w2: float) -> Path:
    """Write ``window_info.npz`` (``taper`` and ``w2``) atomically.

    The taper is stored flipped up–down like the maps, so it multiplies the saved maps directly.
    """
    path = Path(path)
    with atomic_output(path, suffix=".npz") as tmp:
        np.savez(tmp, taper=np.ascontiguousarray(taper[::-1]), w2=np.float64(w2))
    return path


def read_metadata(path: Path) -> dict:
    """The run description stored in an output file of either format."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        with np.load(path) as f:
            return json.loads(str(f["metadata"]))
    import h5py

    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["metadata"])
