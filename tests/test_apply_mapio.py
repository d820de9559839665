"""Tests of training/apply/mapio.py: Q/U from FITS and pipeline files; all-or-nothing FITS outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from evaluation_helpers import simulate
from pixell import enmap, utils

from datapipe.fourier import FlatSkyGrid
from training.apply import mapio
from training.apply.errors import ApplyError
from training.apply.mapio import check_output_folder, read_input, write_outputs


@pytest.fixture(scope="module")
def pipeline_files(tmp_path_factory):
    """The same 3 map sets (32x32, 1.5' pixels) as .npz and .h5, and a .npz without metadata."""
    folder = tmp_path_factory.mktemp("pipeline")
    npz = simulate(folder / "npz" / "maps.npz", 3, seed=4, maps=("q_len", "u_len"), pixel_arcmin=1.5)
    h5 = simulate(folder / "h5" / "maps.h5", 3, seed=4, maps=("q_len", "u_len"), pixel_arcmin=1.5)
    with np.load(npz) as f:
        arrays = {name: f[name] for name in ("q_len", "u_len")}
    bare = folder / "bare.npz"
    np.savez(bare, **arrays)
    return npz, h5, bare, arrays


def _geometry(shape=(20, 30), res=2.0):
    box = np.array([[-1, 1], [1, -1]]) * utils.degree
    return enmap.geometry(pos=box, res=res * utils.arcmin, proj="car", shape=shape)


@pytest.mark.parametrize("which", [0, 1])
def test_a_pipeline_map_set_is_read_alone_and_put_back_on_its_geometry(pipeline_files, which):
    path, arrays = pipeline_files[which], pipeline_files[3]
    q, notes = read_input(path, "q", "q_len", 2, pixel_arcmin=2.34375)
    assert notes == []
    np.testing.assert_array_equal(q, arrays["q_len"][2][::-1])  # the pipeline's up–down flip undone
    assert q.dtype == np.float32
    assert np.allclose(q.wcs.wcs.cdelt, FlatSkyGrid(32, 1.5).wcs.wcs.cdelt)  # 1.5' pixels, from the metadata


def test_a_pipeline_file_without_metadata_takes_the_networks_pixels(pipeline_files):
    u, notes = read_input(pipeline_files[2], "u", "u_len", 0, pixel_arcmin=2.34375)
    np.testing.assert_array_equal(u, pipeline_files[3]["u_len"][0][::-1])
    assert np.allclose(np.abs(u.wcs.wcs.cdelt) * 60, 2.34375)
    assert len(notes) == 1 and "no metadata: assuming the network's 2.34375' pixels" in notes[0]


def test_bad_pipeline_reads(pipeline_files):
    with pytest.raises(ApplyError, match=r"--index 3 is outside .* which holds map sets 0 to 2"):
        read_input(pipeline_files[0], "q", "q_len", 3, 2.34375)
    with pytest.raises(ApplyError, match="has no array 'e_len'"):
        read_input(pipeline_files[0], "q", "e_len", 0, 2.34375)


def test_fits_maps_single_or_from_a_tqu_stack(tmp_path):
    shape, wcs = _geometry()
    tqu = enmap.enmap(np.arange(3 * 20 * 30, dtype=np.float32).reshape(3, 20, 30), wcs)
    enmap.write_map(str(tmp_path / "tqu.fits"), tqu)
    enmap.write_map(str(tmp_path / "qu.fits"), tqu[1:])
    enmap.write_map(str(tmp_path / "q.fits"), tqu[1])
    for name, q_index in (("tqu.fits", 1), ("qu.fits", 1), ("q.fits", 1)):
        q, _ = read_input(tmp_path / name, "q", "q_len", 0, 2.0)
        np.testing.assert_array_equal(q, tqu[q_index])
        assert q.ndim == 2 and np.allclose(q.wcs.wcs.cdelt, wcs.wcs.cdelt)
    u, _ = read_input(tmp_path / "tqu.fits", "u", "u_len", 0, 2.0)
    np.testing.assert_array_equal(u, tqu[2])
    enmap.write_map(str(tmp_path / "four.fits"), enmap.zeros((4, 20, 30), wcs))
    with pytest.raises(ApplyError, match=r"holds a map of shape \(4, 20, 30\)"):
        read_input(tmp_path / "four.fits", "q", "q_len", 0, 2.0)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ApplyError, match=r"U map '.*nope.fits' does not exist; pass --u a FITS map"):
        read_input(tmp_path / "nope.fits", "u", "u_len", 0, 2.0)
    (tmp_path / "maps.fits").mkdir()
    with pytest.raises(ApplyError, match=r"Q map '.*maps.fits' is a folder; pass --q a FITS map"):
        read_input(tmp_path / "maps.fits", "q", "q_len", 0, 2.0)
    (tmp_path / "junk.fits").write_text("not a FITS file")
    with pytest.raises(ApplyError, match="cannot read .*junk.fits' as a FITS map"):
        read_input(tmp_path / "junk.fits", "q", "q_len", 0, 2.0)


def _outputs():
    shape, wcs = _geometry()
    rng = np.random.default_rng(0)
    names = ("kappa", "e_unl", "coverage")
    return {name: enmap.enmap(rng.normal(size=shape).astype(np.float32), wcs) for name in names}


def test_outputs_are_fits_enmaps_with_units(tmp_path):
    maps = _outputs()
    written = write_outputs(tmp_path / "out", maps, {"kappa": "", "e_unl": "uK"}, {"a": 1}, overwrite=False)
    assert sorted(p.name for p in written) == ["coverage.fits", "e_unl.fits", "kappa.fits", "predict_info.json"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in written)
    e = enmap.read_map(str(tmp_path / "out" / "e_unl.fits"))
    np.testing.assert_array_equal(e, maps["e_unl"])
    assert np.allclose(e.wcs.wcs.cdelt, maps["e_unl"].wcs.wcs.cdelt) and np.allclose(e.wcs.wcs.crpix,
                                                                                       maps["e_unl"].wcs.wcs.crpix)
    from astropy.io import fits

    assert fits.getheader(tmp_path / "out" / "e_unl.fits")["BUNIT"] == "uK"
    assert "BUNIT" not in fits.getheader(tmp_path / "out" / "kappa.fits")
    assert json.loads((tmp_path / "out" / "predict_info.json").read_text()) == {"a": 1}


def test_an_earlier_output_is_kept_without_overwrite(tmp_path):
    out = tmp_path / "out"
    write_outputs(out, _outputs(), {}, {"run": 1}, overwrite=False)
    before = (out / "kappa.fits").read_bytes()
    with pytest.raises(ApplyError, match=r"already holds kappa.fits, e_unl.fits, coverage.fits, predict_info.json; "
                                         r"pass --overwrite"):
        write_outputs(out, _outputs(), {}, {"run": 2}, overwrite=False)
    assert (out / "kappa.fits").read_bytes() == before
    write_outputs(out, _outputs(), {}, {"run": 2}, overwrite=True)
    assert json.loads((out / "predict_info.json").read_text()) == {"run": 2}
    (tmp_path / "file").write_text("x")
    with pytest.raises(ApplyError, match="is a file; give a folder"):
        check_output_folder(tmp_path / "file", ["kappa"], overwrite=True)


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_write(fname, emap, **kwargs):
        calls.append(fname)
        if len(calls) == 2:
            raise OSError("disk full")
        enmap_write(fname, emap, **kwargs)

    enmap_write = enmap.write_map
    monkeypatch.setattr(enmap, "write_map", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_outputs(tmp_path / "new", _outputs(), {}, {}, overwrite=False)
    assert not (tmp_path / "new").exists()  # the folder was made for this output: gone again
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "mine.txt").write_text("keep")
    calls.clear()
    with pytest.raises(OSError, match="disk full"):
        write_outputs(tmp_path / "old", _outputs(), {}, {}, overwrite=False)
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["mine.txt"]
    assert mapio.PARTIAL_PREFIX == ".partial-"


def test_a_truncated_fits_file_is_one_error_with_astropys_warning_in_it(tmp_path):
    shape, wcs = _geometry()
    enmap.write_map(str(tmp_path / "q.fits"), enmap.zeros(shape, wcs))
    (tmp_path / "cut.fits").write_bytes((tmp_path / "q.fits").read_bytes()[:3000])
    with pytest.raises(ApplyError, match=r"cannot read .*cut.fits' as a FITS map: .*\(File may have been truncated"):
        read_input(tmp_path / "cut.fits", "q", "q_len", 0, 2.0)


def test_an_output_folder_under_a_file_is_refused_before_any_work(tmp_path):
    from datapipe.errors import PipelineError

    (tmp_path / "file").write_text("x")
    with pytest.raises(PipelineError, match=r"output folder .*file/out cannot be made: .*file is not a folder; "
                                            r"choose another --output"):
        check_output_folder(tmp_path / "file" / "out", ["kappa"], overwrite=False)
    assert (tmp_path / "file").read_text() == "x"
