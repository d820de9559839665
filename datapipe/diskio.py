"""Safe writing on disk: temporary files renamed when complete, checks of the output folder and its free space,
reproducible zip members, and a file object that keeps HDF5 alive when the disk fills up.
"""

from __future__ import annotations

import errno
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
#: Time stamp of every zip member written here (the earliest a zip file can hold), so that files are reproducible.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
#: Room kept free beyond the planned size of an output: this fraction of it plus :data:`FREE_SPACE_MARGIN_BYTES`.
FREE_SPACE_MARGIN = 0.01
FREE_SPACE_MARGIN_BYTES = 16 * 2**20


def describe_os_error(exc: OSError, option: str = "--output") -> str:
    """One line for an ``OSError`` met on a file: the reason, the file, and on a full disk the fix.

    Parameters
    ----------
    exc : OSError
        The error.
    option : str
        The command-line option that chooses where outputs go, named in the fix for a full disk.

    Returns
    -------
    str
        E.g. ``"No space left on device (out/table.txt); free some space or choose another --output"``.
    """
    where = f" ({exc.filename})" if exc.filename else ""
    hint = f"; free some space or choose another {option}" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return f"{exc.strerror or exc}{where}{hint}"


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
        Unknown suffix, existing file without ``overwrite``, or a folder that is missing, is a file, or cannot be
        written.
    """
    path = Path(path)
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise PipelineError(f"output {path} must end in .npz or .h5 (got {path.suffix or 'no suffix'!r})")
    if path.is_dir():
        raise PipelineError(f"output {path} is a folder; give a file name such as {path / 'map_sets32.npz'}")
    folder = path.parent if str(path.parent) else Path(".")
    check_folder(folder, "output folder", "--output")
    if path.exists() and not overwrite:
        raise PipelineError(f"output {path} already exists; pass --overwrite to replace it or choose another --output")
    return path


def check_folder(folder: Path, what: str, option: str) -> Path:
    """Check that an existing ``folder`` can receive files (a test file is created and removed).

    Parameters
    ----------
    folder : Path
        The folder.
    what : str
        How the message names it, e.g. ``"output folder"``.
    option : str
        The option that sets it, named in the fix.

    Raises
    ------
    PipelineError
        The folder, or the first existing folder above it, is a file; the folder does not exist; or it cannot be
        written.
    """
    folder = Path(folder)
    if not folder.is_dir():
        existing = next((p for p in (folder, *folder.parents) if os.path.lexists(p)), None)
        if existing == folder:
            raise PipelineError(f"{what} {folder} is not a folder; choose another {option}")
        if existing is not None and not existing.is_dir():
            raise PipelineError(f"{what} {folder} cannot be made: {existing} is not a folder; choose another {option}")
        raise PipelineError(f"{what} {folder} does not exist; create it first or choose another {option}")
    probe = None
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(fd)
    except OSError as exc:
        raise PipelineError(f"cannot write to {what} {folder} ({exc.strerror}); choose another {option}") from exc
    finally:
        if probe is not None:
            os.remove(probe)
    return folder


def check_creatable_folder(folder: Path, what: str, option: str) -> Path:
    """Check, without creating anything, that ``folder`` exists and can be written, or can be created.

    For a missing folder, the nearest existing folder above it must be writable (a test file is created and
    removed there).

    Raises
    ------
    PipelineError
        The folder or a folder above it is a file, or the nearest existing one cannot be written.
    """
    folder = Path(os.path.abspath(folder))
    existing = next(p for p in (folder, *folder.parents) if os.path.lexists(p))
    if not existing.is_dir():
        where = "is not a folder" if existing == folder else f"cannot be made: {existing} is not a folder"
        raise PipelineError(f"{what} {folder} {where}; choose another {option}")
    try:
        check_folder(existing, what, option)
    except PipelineError:
        if existing == folder:
            raise
        raise PipelineError(f"{what} {folder} cannot be made: {existing} cannot be written; choose another "
                            f"{option}") from None
    return folder


def check_free_space(folder: Path, needed_bytes: int, option: str = "--output") -> None:
    """Refuse to start a write of about ``needed_bytes`` that would not fit in ``folder``'s file system.

    A margin of :data:`FREE_SPACE_MARGIN` × ``needed_bytes`` + :data:`FREE_SPACE_MARGIN_BYTES` is kept free.

    Raises
    ------
    PipelineError
        With the free and the needed space in GB.
    """
    folder = Path(os.path.abspath(folder))
    free = shutil.disk_usage(folder).free
    margin = int(FREE_SPACE_MARGIN * needed_bytes) + FREE_SPACE_MARGIN_BYTES
    if needed_bytes + margin > free:
        raise PipelineError(
            f"not enough free space in {folder}: the output needs {needed_bytes / 1e9:.2f} GB (+ {margin / 1e9:.2f} GB "
            f"margin) but {free / 1e9:.2f} GB are free; free some space, choose another {option} or write fewer maps"
        )


def zip_member(name: str, size: int | None = None) -> zipfile.ZipInfo:
    """A stored (uncompressed) zip member with the fixed time stamp :data:`ZIP_TIME` and mode 0644."""
    info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o100644 << 16
    if size is not None:
        info.file_size = size
    return info


def write_npz_member(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    """Add ``array`` to an open zip file as the ``.npy`` member ``name`` (reproducible bytes)."""
    with zf.open(zip_member(name), "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


class GuardedFile:
    """A file for h5py whose writes never fail inside HDF5.

    HDF5 cannot close a file after one of its writes failed (it crashes the process). Through this object, the
    first ``OSError`` of a write (e.g. ``ENOSPC``, a full disk) is kept and the later writes are dropped, so HDF5
    always closes the file cleanly; :meth:`raise_error` then raises the kept error and the caller removes the
    file. h5py uses it as a Python file object (``h5py.File(GuardedFile(path), "w")``).

    Parameters
    ----------
    path : Path
        File to create (truncated if it exists), mode 0600.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.error: OSError | None = None
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._pos = 0

    def readinto(self, buffer: Any) -> int:
        data = os.pread(self._fd, len(buffer), self._pos)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = max(0, os.fstat(self._fd).st_size - self._pos)
        data = os.pread(self._fd, size, self._pos)
        self._pos += len(data)
        return data

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):
                    done += os.pwrite(self._fd, view[done:], self._pos + done)
            except OSError as exc:
                self.error = exc
        self._pos += len(view)
        return len(view)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            self._pos = offset
        elif whence == os.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = os.fstat(self._fd).st_size + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self._fd, size)
            except OSError as exc:
                self.error = exc
        return size

    def flush(self) -> None:
        pass

    def raise_error(self) -> None:
        """Raise the first write error, if there was one."""
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Close the file descriptor (writes are unbuffered: nothing is lost)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
