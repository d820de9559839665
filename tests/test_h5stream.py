"""Training from HDF5 without loading it (training/data/: h5source.py, h5file.py, order.py, H5MapDataset;
training/predictions.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from training_helpers import synthetic_maps, write_config

from training.config import TrainingError, validate_config
from training.data import filesource, mapfile, sources
from training.data.batches import MapDataset
from training.data.h5file import H5Column, H5MapFile, read_rows
from training.data.order import epoch_batches
from training.data.sources import load_data
from training.data.splits import split_indices
from training.data.standardization import Standardization, streaming_standardization
from training.metrics import r2_score
from training.predictions import R2Accumulator

ROOT = Path(__file__).resolve().parent.parent
USED = ["q_len", "u_len", "e_unl", "tru_tau", "tru_kappa"]


def write_h5(path: Path, nsims: int = 60, npix: int = 16, seed: int = 0, **replace: np.ndarray) -> Path:
    """An HDF5 map file laid out like the pipeline's (chunks of 16 maps, metadata attribute)."""
    maps = synthetic_maps(nsims, npix, seed)
    maps.update(replace)
    with h5py.File(path, "w") as f:
        for name, arr in maps.items():
            f.create_dataset(name, data=arr, chunks=(min(16, nsims), npix, npix))
        f.attrs["metadata"] = json.dumps({"nsims": nsims, "synthetic": True})
    return path


class CountingDataset:
    """Wraps an array and counts the reads (``__getitem__`` calls) made on it."""

    def __init__(self, arr: np.ndarray) -> None:
        self.arr, self.shape, self.dtype, self.reads = arr, arr.shape, arr.dtype, 0

    def __getitem__(self, key):
        self.reads += 1
        return self.arr[key]


def runs(sorted_positions: np.ndarray) -> int:
    """Number of runs of consecutive integers."""
    return 1 + int(np.count_nonzero(np.diff(sorted_positions) != 1))


def test_read_rows_merges_nearby_rows_into_slices():
    arr = np.arange(100 * 4, dtype=np.float32).reshape(100, 2, 2)
    rows = np.array([53, 10, 11, 12, 14, 90, 52])  # any order
    counting = CountingDataset(arr)
    np.testing.assert_array_equal(read_rows(counting, rows, max_gap=4), arr[rows])
    assert counting.reads == 3  # 10..14, 52..53, 90
    assert read_rows(arr, np.array([], dtype=int)).shape == (0, 2, 2)


def test_streaming_statistics_equal_the_two_pass_in_memory_ones(tmp_path):
    # A large mean against a small spread is where a naive sum-of-squares pass would lose digits.
    n = 70
    rng = np.random.default_rng(3)
    offset = (1e4 + rng.normal(0, 1, (n, 16, 16))).astype(np.float32)
    path = write_h5(tmp_path / "m.h5", nsims=n, e_unl=offset)
    file = H5MapFile(path)
    columns = {name: H5Column(file, name) for name in USED}
    train = split_indices(n, (0.8, 0.1, 0.1), 4)["train"]
    with h5py.File(path) as f:
        reference = Standardization.fit({name: f[name][...] for name in USED}, train)
    for chunk in (7, 16, 256):  # chunks that do and do not divide the file
        streamed = streaming_standardization(columns, train, chunk=chunk)
        for name in USED:
            assert streamed.means[name] == pytest.approx(reference.means[name], rel=1e-12, abs=1e-15)
            assert streamed.stds[name] == pytest.approx(reference.stds[name], rel=1e-9)
    file.close()


def test_statistics_pass_rejects_nan_and_constant_arrays(tmp_path):
    bad = synthetic_maps(40, 16)["tru_tau"]
    bad[33, 2, 5] = np.nan
    file = H5MapFile(write_h5(tmp_path / "nan.h5", nsims=40, tru_tau=bad))
    with pytest.raises(TrainingError, match="array 'tru_tau' has NaN or inf values in map index 33"):
        streaming_standardization({"tru_tau": H5Column(file, "tru_tau")}, np.arange(0, 30), chunk=16)
    file = H5MapFile(write_h5(tmp_path / "flat.h5", nsims=40, e_unl=np.ones((40, 16, 16), np.float32)))
    with pytest.raises(TrainingError, match="array 'e_unl' is constant over the training split"):
        streaming_standardization({"e_unl": H5Column(file, "e_unl")}, np.arange(40))


@pytest.mark.parametrize(("batch_size", "block"), [(8, 16), (8, 8), (5, 3), (4, 64)])
def test_epoch_batches_cover_the_split_in_contiguous_blocks(batch_size, block):
    indices = np.sort(np.random.default_rng(0).choice(500, size=203, replace=False))
    first = epoch_batches(indices, batch_size, block, seed=7, epoch=0)
    assert [len(b) for b in first] == [batch_size] * (203 // batch_size) + ([203 % batch_size] if 203 % batch_size
                                                                            else [])
    np.testing.assert_array_equal(np.sort(np.concatenate(first)), indices)  # each map once per epoch
    position = {int(v): i for i, v in enumerate(indices)}
    for batch in first:  # a batch is made of whole runs of consecutive training maps: a few contiguous reads
        assert runs(np.array([position[int(v)] for v in batch])) <= -(-batch_size // block) + 2
    again = epoch_batches(indices, batch_size, block, seed=7, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))  # reproducible from (seed, epoch)
    second = epoch_batches(indices, batch_size, block, seed=7, epoch=1)
    assert not all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))  # reshuffled every epoch
    # The batch contents change too, not only their order (the blocks start at a random phase).
    assert {tuple(b) for b in first} != {tuple(b) for b in second}


@pytest.fixture
def h5_config(tmp_path):
    path = write_h5(tmp_path / "maps.h5", nsims=60)
    return validate_config({"data_path": str(path), "imagesize": 16, "batch_size": 4, "seed": 5,
                            "data_block_maps": 4}, tmp_path)


def test_h5_source_streams_without_reading_the_file_whole(h5_config, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the HDF5 source must not load whole arrays")

    monkeypatch.setattr(filesource, "read_maps", forbidden)
    monkeypatch.setattr(mapfile, "read_maps", forbidden)
    monkeypatch.setattr(mapfile, "_read_arrays", forbidden)
    sources.check_data(h5_config)
    bundle = load_data(h5_config)
    monkeypatch.undo()
    reference = filesource.map_file_source(h5_config)  # the in-memory source reads the same file into RAM
    assert bundle.sizes == reference.sizes
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(bundle.split_indices[split], reference.split_indices[split])
    for name in USED:
        assert bundle.standardization.means[name] == pytest.approx(reference.standardization.means[name], rel=1e-9)
        assert bundle.standardization.stds[name] == pytest.approx(reference.standardization.stds[name], rel=1e-9)
    for split in ("val", "test"):  # fixed order: the same batches as in memory
        ds, ref = getattr(bundle, split), getattr(reference, split)
        assert len(ds) == len(ref)
        for i in range(len(ds)):
            (x, y), (rx, ry) = ds[i], ref[i]
            for key in rx:
                np.testing.assert_allclose(x[key], rx[key], rtol=1e-5, atol=1e-6)
            for key in ry:
                np.testing.assert_allclose(y[key], ry[key], rtol=1e-5, atol=1e-6)
    for name, view in bundle.test_arrays.items():
        np.testing.assert_array_equal(view[2:5], reference.test_arrays[name][2:5])
        assert view.shape == reference.test_arrays[name].shape
    bundle.close()


def test_training_batches_follow_the_block_order_and_resume_at_an_epoch(h5_config):
    bundle = load_data(h5_config)
    train = bundle.train
    with h5py.File(h5_config.data_path) as f:
        q = f["q_len"][...]
    std = bundle.standardization
    for epoch in (0, 3):
        train.set_epoch(epoch)
        expected = epoch_batches(bundle.split_indices["train"], 4, 4, seed=5, epoch=epoch)
        assert len(train) == len(expected)
        for i in (0, len(train) - 1):
            np.testing.assert_array_equal(train.batch_indices(i), expected[i])
            x, _ = train[i]
            np.testing.assert_allclose(x["qlen"][..., 0], std.apply("q_len", q[expected[i]]), rtol=1e-6, atol=1e-6)
    train.on_epoch_end()
    assert not np.array_equal(train.batch_indices(0), epoch_batches(bundle.split_indices["train"], 4, 4, 5, 3)[0])
    assert isinstance(bundle.val, MapDataset)
    bundle.close()


def test_r2_accumulator_equals_r2_score_over_chunks():
    rng = np.random.default_rng(2)
    truth = 50.0 + rng.normal(0, 1, (30, 8, 8))
    pred = truth + rng.normal(0, 0.3, truth.shape)
    acc = R2Accumulator()
    for a, b in ((0, 7), (7, 8), (8, 30)):
        acc.update(truth[a:b], pred[a:b])
    assert acc.value() == pytest.approx(r2_score(truth, pred), rel=1e-10)


@pytest.fixture(scope="module")
def h5_run(tmp_path_factory):
    """A tiny training run from an .h5 file through the CLI, batches prepared by two worker processes."""
    folder = tmp_path_factory.mktemp("h5run")
    write_h5(folder / "maps.h5", nsims=40)
    cfg = write_config(folder / "h5.json", "maps.h5", output_dir="h5", epochs=2, data_workers=2,
                       data_multiprocessing=True, model="tiny_model")
    # training/main.py as a script, with the small stand-in network registered (the data path is what is tested).
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "tiny_main.py"), str(cfg)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return folder, result


def test_h5_run_writes_the_usual_outputs(h5_run):
    folder, result = h5_run
    # The worker processes leave SIGTERM to the training process: no interrupt notice when Keras stops them.
    assert "SIGTERM received" not in result.stdout + result.stderr
    out = folder / "h5"
    with np.load(out / "predictions.npz") as p, np.load(out / "test_data.npz") as t:
        assert sorted(p.files) == ["kappa_pred", "tau_pred", "unle_pred"]
        assert sorted(t.files) == sorted(f"{a}_test" for a in [*USED, "rec_kappa", "rec_tau"])
        for arr in (*(p[k] for k in p.files), *(t[k] for k in t.files)):
            assert arr.shape == (4, 16, 16) and arr.dtype == np.float32
        with np.load(out / "split_indices.npz") as s:
            test_idx = s["test"]
        maps = synthetic_maps(40, 16, 0)
        for name in USED:
            np.testing.assert_array_equal(t[f"{name}_test"], maps[name][test_idx])
        summary = json.loads((out / "summary.json").read_text())
        for output, target in (("tau", "tru_tau"), ("unle", "e_unl"), ("kappa", "tru_kappa")):
            assert summary["test_r2"][output] == pytest.approx(r2_score(t[f"{target}_test"], p[f"{output}_pred"]),
                                                               rel=1e-6)
    assert "streamed from HDF5" in summary["data_source"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_missing_shard_of_a_virtual_file_is_a_one_line_error(tmp_path):
    shard = write_h5(tmp_path / "part.h5", nsims=40)
    with h5py.File(tmp_path / "virtual.h5", "w") as f:
        for name in USED + ["rec_kappa", "rec_tau"]:
            layout = h5py.VirtualLayout(shape=(40, 16, 16), dtype="f4")
            layout[:] = h5py.VirtualSource("part.h5", name, shape=(40, 16, 16))
            f.create_virtual_dataset(name, layout)
    cfg = write_config(tmp_path / "c.json", "virtual.h5")
    shard.unlink()
    result = subprocess.run([sys.executable, str(ROOT / "training" / "main.py"), str(cfg)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "virtual dataset whose shard part.h5 is missing" in result.stderr
    assert not (tmp_path / "out").exists()
