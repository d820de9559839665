"""Tests of training/data.py: reading map files, the seeded split, standardization and batching."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from training_helpers import synthetic_maps, write_config, write_map_file

from training.config import TrainingError, load_config, validate_config
from training.data import filesource, sources
from training.data.batches import MapDataset
from training.data.bundle import DataSource
from training.data.mapfile import inspect_map_file, list_map_file, read_maps
from training.data.sources import check_data, get_data_source, load_data
from training.data.splits import split_counts, split_indices
from training.data.standardization import Standardization


@pytest.fixture()
def map_file(tmp_path):
    return write_map_file(tmp_path / "maps.npz", nsims=40, npix=16, seed=1)


def test_read_maps_returns_only_the_requested_arrays(map_file):
    arrays = read_maps(map_file, ["q_len", "tru_kappa"], 16)
    assert list(arrays) == ["q_len", "tru_kappa"]
    expected = synthetic_maps(40, 16, seed=1)
    np.testing.assert_array_equal(arrays["q_len"], expected["q_len"])
    assert arrays["q_len"].dtype == np.float32
    assert "metadata" not in list_map_file(map_file)


def test_h5_files_read_like_npz(map_file, tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "maps.h5"
    with h5py.File(path, "w") as f:
        for name, arr in synthetic_maps(40, 16, seed=1).items():
            f.create_dataset(name, data=arr)
        f.attrs["metadata"] = "{}"
    from_h5 = read_maps(path, ["u_len", "e_unl"], 16)
    from_npz = read_maps(map_file, ["u_len", "e_unl"], 16)
    for name in from_npz:
        np.testing.assert_array_equal(from_h5[name], from_npz[name])


def test_read_maps_errors(map_file, tmp_path):
    with pytest.raises(TrainingError, match="does not exist"):
        read_maps(tmp_path / "none.npz", ["q_len"], 16)
    with pytest.raises(TrainingError, match=r"lacks array\(s\) b_len, tru_phi; it has: q_len, u_len, t_len"):
        read_maps(map_file, ["q_len", "b_len", "tru_phi"], 16)
    with pytest.raises(TrainingError, match="holds 16x16 maps but imagesize is 32"):
        read_maps(map_file, ["q_len"], 32)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(TrainingError, match="cannot read data file"):
        read_maps(tmp_path / "junk.npz", ["q_len"], 16)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_name_the_array_and_map(tmp_path, bad):
    q = synthetic_maps(12, 16)["q_len"]
    q[5, 3, 4] = bad
    q[9, 0, 0] = bad
    path = write_map_file(tmp_path / "bad.npz", nsims=12, npix=16, q_len=q)
    with pytest.raises(TrainingError, match=r"array 'q_len' has NaN or inf values in map index 5 \(and 1 more maps\)"):
        read_maps(path, ["u_len", "q_len"], 16)


def test_arrays_must_hold_the_same_number_of_maps(tmp_path):
    path = write_map_file(tmp_path / "m.npz", nsims=12, npix=16, u_len=np.zeros((10, 16, 16), np.float32))
    with pytest.raises(TrainingError, match="different numbers of maps"):
        read_maps(path, ["q_len", "u_len"], 16)


def test_split_is_deterministic_disjoint_and_complete():
    a = split_indices(103, (0.8, 0.1, 0.1), seed=5)
    b = split_indices(103, (0.8, 0.1, 0.1), seed=5)
    c = split_indices(103, (0.8, 0.1, 0.1), seed=6)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["test"], c["test"])
    assert [a[k].size for k in ("train", "val", "test")] == list(split_counts(103, (0.8, 0.1, 0.1))) == [83, 10, 10]
    everything = np.concatenate([a["train"], a["val"], a["test"]])
    assert np.array_equal(np.sort(everything), np.arange(103))  # disjoint and complete
    assert not np.array_equal(a["test"], np.arange(93, 103))  # shuffled, not the last maps


def test_standardization_uses_the_training_split_and_round_trips(map_file):
    arrays = read_maps(map_file, ["q_len", "e_unl"], 16)
    split = split_indices(40, (0.8, 0.1, 0.1), seed=0)
    std = Standardization.fit(arrays, split["train"])
    train_q = std.apply("q_len", arrays["q_len"][split["train"]])
    assert abs(train_q.mean()) < 1e-6 and abs(train_q.std() - 1) < 1e-5
    # Only training maps enter the statistics.
    changed = dict(arrays, q_len=arrays["q_len"].copy())
    changed["q_len"][split["test"]] += 100.0
    assert Standardization.fit(changed, split["train"]).means["q_len"] == std.means["q_len"]
    # e_unl = 2 q + 1 in the synthetic maps: its statistics follow.
    assert std.means["e_unl"] == pytest.approx(2 * std.means["q_len"] + 1, abs=1e-5)
    assert std.stds["e_unl"] == pytest.approx(2 * std.stds["q_len"], rel=1e-6)
    back = std.invert("e_unl", std.apply("e_unl", arrays["e_unl"]))
    np.testing.assert_allclose(back, arrays["e_unl"], rtol=1e-6, atol=1e-5)


def test_standardization_files_round_trip(map_file, tmp_path):
    std = Standardization.fit(read_maps(map_file, ["q_len", "tru_tau"], 16))
    means, stds = std.to_npz_dicts()
    assert set(means) == {"q_len_mean", "tru_tau_mean"} and set(stds) == {"q_len_std", "tru_tau_std"}
    np.savez(tmp_path / "m.npz", **means)
    np.savez(tmp_path / "s.npz", **stds)
    assert Standardization.from_npz(tmp_path / "m.npz", tmp_path / "s.npz") == std


def test_constant_array_cannot_be_standardized():
    with pytest.raises(TrainingError, match="'flat' is constant"):
        Standardization.fit({"flat": np.ones((4, 8, 8), np.float32)})


def make_dataset(shuffle=True, batch_size=6, seed=3):
    arrays = synthetic_maps(20, 16, seed=2)
    idx = np.arange(3, 20)
    std = Standardization.fit(arrays, idx)
    ds = MapDataset(arrays, idx, {"qlen": "q_len"}, {"unle": "e_unl"}, std, batch_size, shuffle=shuffle, seed=seed)
    return ds, arrays, std


def test_batches_are_aligned_standardized_dicts():
    ds, arrays, std = make_dataset()
    assert len(ds) == 3  # 17 maps in batches of 6
    x, y = ds[0]
    assert set(x) == {"qlen"} and set(y) == {"unle"}
    assert x["qlen"].shape == (6, 16, 16, 1) and x["qlen"].dtype == np.float32
    assert ds[2][0]["qlen"].shape == (5, 16, 16, 1)
    # Inputs and targets come from the same maps: e_unl = 2 q + 1 in physical units.
    q = std.invert("q_len", x["qlen"][..., 0])
    e = std.invert("e_unl", y["unle"][..., 0])
    np.testing.assert_allclose(e, 2 * q + 1, rtol=1e-4, atol=1e-4)


def test_shuffling_is_seeded_per_epoch_and_covers_every_map_once():
    ds, _, _ = make_dataset()
    epoch0 = [ds.batch_indices(i) for i in range(len(ds))]
    assert sorted(np.concatenate(epoch0)) == list(range(3, 20))
    ds.on_epoch_end()
    epoch1 = [ds.batch_indices(i) for i in range(len(ds))]
    assert sorted(np.concatenate(epoch1)) == list(range(3, 20))
    assert any(not np.array_equal(a, b) for a, b in zip(epoch0, epoch1, strict=True))
    again, _, _ = make_dataset()
    again.set_epoch(1)  # a resumed run sees the same order
    for i, batch in enumerate(epoch1):
        np.testing.assert_array_equal(again.batch_indices(i), batch)
    other, _, _ = make_dataset(seed=4)
    assert any(not np.array_equal(other.batch_indices(i), b) for i, b in enumerate(epoch0))
    fixed, _, _ = make_dataset(shuffle=False)
    fixed.on_epoch_end()
    np.testing.assert_array_equal(np.concatenate([fixed.batch_indices(i) for i in range(3)]), np.arange(3, 20))
    with pytest.raises(IndexError):
        fixed[3]


def test_map_file_source_builds_the_bundle(map_file):
    cfg = load_config(write_config(map_file.parent / "c.json", map_file.name))
    bundle = load_data(cfg)
    assert bundle.sizes == {"train": 32, "val": 4, "test": 4}
    assert set(bundle.test_arrays) == set(cfg.arrays)
    maps = synthetic_maps(40, 16, seed=1)
    test_idx = bundle.split_indices["test"]
    for name, arr in bundle.test_arrays.items():
        np.testing.assert_array_equal(arr, maps[name][test_idx])  # physical units, split order
    assert set(bundle.standardization.means) == {"q_len", "u_len", "e_unl", "tru_tau", "tru_kappa"}
    x, y = bundle.test[0]
    np.testing.assert_allclose(
        bundle.standardization.invert("tru_tau", y["tau"][..., 0]), maps["tru_tau"][test_idx], rtol=1e-5, atol=1e-7
    )
    assert bundle.train.shuffle and not bundle.val.shuffle and not bundle.test.shuffle


def test_a_split_smaller_than_a_batch_is_an_error(map_file):
    cfg = validate_config({"data_path": str(map_file), "imagesize": 16, "batch_size": 5})
    with pytest.raises(TrainingError, match="the validation split has 4 of 40 maps, fewer than one batch"):
        load_data(cfg)


def test_sources_are_chosen_by_keyword_then_suffix(monkeypatch):
    assert get_data_source("a/b.npz").load is filesource.map_file_source
    assert get_data_source("b.H5") is sources.H5_STREAM_SOURCE  # streamed, not loaded (training.data.h5source)
    with pytest.raises(TrainingError, match="not a supported data source; use 'simulate' or a .npz file or a .h5 file"):
        get_data_source("maps.fits")

    checked = []
    source = DataSource(load=lambda cfg: "bundle", check=checked.append)
    monkeypatch.setitem(sources.KEYWORD_SOURCES, "simulate", source)
    cfg = validate_config({"data_path": "simulate"})
    check_data(cfg)
    assert checked == [cfg] and load_data(cfg) == "bundle"


def test_headers_give_shapes_without_reading_maps(map_file, tmp_path):
    shapes = inspect_map_file(map_file)
    assert shapes["q_len"] == (40, 16, 16) and "metadata" not in shapes
    compressed = tmp_path / "c.npz"
    np.savez_compressed(compressed, q_len=np.zeros((5, 8, 8), np.float32), metadata=np.array("{}"))
    assert inspect_map_file(compressed) == {"q_len": (5, 8, 8)}


def test_data_checks_run_without_keras(map_file):
    """check_data() needs no Keras: bad data fails before a backend loads."""
    cfg = write_config(map_file.parent / "c.json", map_file.name, imagesize=32)
    code = (
        "import sys\n"
        "from training.config import load_config, TrainingError\n"
        "from training.data.sources import check_data\n"
        f"cfg = load_config({str(cfg)!r})\n"
        "try:\n    check_data(cfg)\nexcept TrainingError as exc:\n    print(exc)\n"
        "print('keras' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    assert out.splitlines() == [
        "array 'q_len' holds 16x16 maps but imagesize is 32; set imagesize to the map size or regenerate the maps",
        "False",
    ]
    check_data(load_config(write_config(map_file.parent / "ok.json", map_file.name)))  # passes
