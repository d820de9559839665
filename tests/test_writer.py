"""The streamed writers and the disk helpers: failed writes clean up, HDF5 survives a full disk, reproducible bytes."""

import errno
import os
import shutil
import zipfile

import h5py
import numpy as np
import pytest

from datapipe import diskio
from datapipe.diskio import GuardedFile, check_free_space
from datapipe.errors import PipelineError
from datapipe.writer import H5Writer, NpzWriter, write_window_file

NAMES = ["a", "b"]


def chunks(nsims: int = 12, npix: int = 8, size: int = 4):
    rng = np.random.default_rng(1)
    for start in range(0, nsims, size):
        n = min(size, nsims - start)
        yield start, {name: rng.normal(size=(n, npix, npix)).astype(np.float32) for name in NAMES}


def fill_disk_after(monkeypatch, writes: int) -> None:
    """Make ``os.pwrite`` (GuardedFile's only way to the disk) fail with ENOSPC after ``writes`` calls."""
    real = os.pwrite
    calls = {"n": 0}

    def pwrite(fd, data, offset):
        calls["n"] += 1
        if calls["n"] > writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)


def test_hdf5_through_the_guarded_file_reads_like_a_plain_hdf5_file(tmp_path):
    for target in (tmp_path / "plain.h5", GuardedFile(tmp_path / "guarded.h5")):
        with h5py.File(target, "w") as h5:
            h5.create_dataset("x", data=np.arange(1000, dtype="f4").reshape(10, 10, 10), chunks=(4, 10, 10))
            h5.attrs["note"] = "the same"
        if isinstance(target, GuardedFile):
            target.close()
    with h5py.File(tmp_path / "guarded.h5") as g, h5py.File(tmp_path / "plain.h5") as p:
        np.testing.assert_array_equal(g["x"][...], p["x"][...])
        assert g["x"].chunks == p["x"].chunks and g.attrs["note"] == p.attrs["note"]


@pytest.mark.parametrize("writes", [0, 3, 10])
def test_h5_writer_on_a_full_disk_raises_enospc_and_leaves_nothing(tmp_path, monkeypatch, writes):
    """HDF5 used to crash the process when it closed a file whose writes had failed."""
    fill_disk_after(monkeypatch, writes)
    with pytest.raises(OSError) as info:
        with H5Writer(tmp_path / "m.h5", NAMES, 12, 8, {"nsims": 12}) as writer:
            for start, arrays in chunks():
                writer.write(start, arrays)
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_h5_writer_still_writes_normally(tmp_path):
    expected = {}
    with H5Writer(tmp_path / "m.h5", NAMES, 12, 8, {"nsims": 12}) as writer:
        for start, arrays in chunks():
            writer.write(start, arrays)
            for k, v in arrays.items():
                expected.setdefault(k, []).append(v)
    with h5py.File(tmp_path / "m.h5") as h5:
        for name in NAMES:
            np.testing.assert_array_equal(h5[name][...], np.concatenate(expected[name]))
    assert [p.name for p in tmp_path.iterdir()] == ["m.h5"]


def test_npz_writer_failing_while_packing_leaves_nothing(tmp_path, monkeypatch):
    real = shutil.copyfileobj
    calls = {"n": 0}

    def copy(src, dst, length=0):
        calls["n"] += 1
        if calls["n"] == 2:  # the second array: the archive is half written
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(src, dst, length)

    monkeypatch.setattr(shutil, "copyfileobj", copy)
    with pytest.raises(OSError, match="No space left"):
        with NpzWriter(tmp_path / "m.npz", NAMES, 12, 8, {"nsims": 12}) as writer:
            for start, arrays in chunks():
                writer.write(start, arrays)
    assert list(tmp_path.iterdir()) == []


def test_npz_abort_survives_a_failing_flush(tmp_path, monkeypatch):
    """On a full disk, closing the part files fails again (their buffers cannot be flushed): the parts still go."""
    writer = NpzWriter(tmp_path / "m.npz", NAMES, 12, 8, None)
    for fp in writer._files.values():
        fp.write(b"x" * 10)
        monkeypatch.setattr(fp, "close", lambda: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_npz_and_window_files_are_reproducible(tmp_path, monkeypatch):
    """Zip members carry a fixed time stamp, so the same arrays give the same bytes, whenever they are written."""
    import time

    for folder in ("one", "two"):
        if folder == "two":  # years later, as far as the clock can tell
            monkeypatch.setattr(time, "time", lambda: 2.0e9)
        (tmp_path / folder).mkdir()
        with NpzWriter(tmp_path / folder / "m.npz", NAMES, 12, 8, {"nsims": 12}) as writer:
            for start, arrays in chunks():
                writer.write(start, arrays)
        write_window_file(tmp_path / folder / "window_info.npz", np.ones((8, 8)), 1.0, 0.0, 2.34375)
        os.utime(tmp_path / folder / "m.npz", (0, 0))
    for name in ("m.npz", "window_info.npz"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
        with zipfile.ZipFile(tmp_path / "one" / name) as zf:
            assert {info.date_time for info in zf.infolist()} == {diskio.ZIP_TIME}
    with np.load(tmp_path / "one" / "window_info.npz") as f:
        assert float(f["taper_deg"]) == 0.0 and float(f["pixel_arcmin"]) == 2.34375 and float(f["w2"]) == 1.0


def test_free_space_check_keeps_a_margin(tmp_path, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=10**9))
    check_free_space(tmp_path, 900_000_000)  # 0.9 GB + 1% + 16 MiB fits in 1 GB
    with pytest.raises(PipelineError, match=r"not enough free space in .*: the output needs 0.99 GB"):
        check_free_space(tmp_path, 990_000_000)
