"""Reading map files as pixell sky maps: geometry, pixel order, E/B round trip, partial reads and bad input."""

import json
import zipfile

import numpy as np
import pytest
from pixell import enmap, wcsutils
from sky_map_helpers import NSIMS, SETTINGS, b_over_e, eb_fourier, fourier, nyquist_free, write_map_file

from datapipe.errors import PipelineError
from datapipe.fourier import FlatSkyGrid
from datapipe.io import MapFile, geometry, read_maps, sky_geometry, stored_geometry

NPIX = SETTINGS.npix
PIXEL_DEG = SETTINGS.pixel_arcmin / 60.0


@pytest.fixture(scope="module")
def map_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("maps")
    return write_map_file(folder / "maps.npz"), write_map_file(folder / "maps.h5")


def stored_arrays(path):
    with np.load(path) as f:
        return {name: f[name] for name in SETTINGS.maps}


def test_maps_come_with_the_patch_geometry_in_sky_order(map_files):
    npz, _ = map_files
    maps = read_maps(npz)
    assert list(maps) == list(SETTINGS.maps)
    shape, wcs = geometry(SETTINGS)
    stored = stored_arrays(npz)
    for name, m in maps.items():
        assert isinstance(m, enmap.ndmap) and m.dtype == np.float32 and m.shape == (NSIMS, NPIX, NPIX), name
        assert tuple(m.shape[-2:]) == tuple(shape) and wcsutils.equal(m.wcs, wcs), name
        # RA decreases along the columns, declination increases along the rows; pixels of the stated size.
        np.testing.assert_allclose(m.wcs.wcs.cdelt, [-PIXEL_DEG, PIXEL_DEG], rtol=1e-12)
        assert m.wcs.wcs.ctype[0].endswith("CAR")
        np.testing.assert_array_equal(np.asarray(m), stored[name][:, ::-1, ::-1])


def test_each_pixel_keeps_the_sky_position_it_was_simulated_at():
    """The simulation grid (pixell CAR, row = declination up, column = RA up) is stored flipped up-down; both
    reading layouts must give every stored pixel the position it had in the simulation."""
    sim_shape, sim_wcs = FlatSkyGrid(NPIX, SETTINGS.pixel_arcmin).geometry
    simulated = enmap.posmap(sim_shape, sim_wcs)            # (dec, ra) of simulation pixel [i, j]
    as_stored = simulated[:, ::-1, :]                       # what stored pixel [i, j] shows
    np.testing.assert_allclose(enmap.posmap(*stored_geometry(NPIX, SETTINGS.pixel_arcmin)), as_stored, atol=1e-12)
    in_sky_order = as_stored[:, ::-1, ::-1]                 # read_maps(sky_order=True) reverses both axes
    np.testing.assert_allclose(enmap.posmap(*sky_geometry(NPIX, SETTINGS.pixel_arcmin)), in_sky_order, atol=1e-12)
    # Sky order: declination grows with the row, RA falls with the column.
    assert np.all(np.diff(in_sky_order[0], axis=0) > 0) and np.all(np.diff(in_sky_order[1], axis=1) < 0)


@pytest.mark.parametrize("sky_order", [True, False])
def test_pixell_eb_of_the_read_qu_equals_the_stored_e_and_b(map_files, sky_order):
    npz, _ = map_files
    maps = read_maps(npz, sky_order=sky_order)
    keep = nyquist_free(NPIX)
    for i in range(NSIMS):
        e_k, b_k = eb_fourier(maps["q_len"][i], maps["u_len"][i])
        stored_e, stored_b = fourier(maps["e_len"][i]), fourier(maps["b_len"][i])
        # float32 maps: agreement to ~1e-7 of the largest mode; 1e-6 leaves room.
        np.testing.assert_allclose(e_k[keep], stored_e[keep], rtol=0, atol=1e-6 * np.abs(stored_e).max())
        np.testing.assert_allclose(b_k[keep], stored_b[keep], rtol=0, atol=1e-6 * np.abs(stored_b).max())


def test_lensed_qu_read_back_is_mostly_e_and_the_raw_arrays_are_not(map_files):
    """Lensed Q/U (with a taper) have B/E ~ 0.1 here. The stored arrays under the patch's plain pixell geometry
    (``enmap.geometry`` of the 5°-style box, declination up the rows) are the sky mirrored up-down; a mirror without
    U → −U splits each E mode as cos 4ψ / sin 4ψ between E and B, so B/E ≈ 1. The test tells the two apart."""
    npz, _ = map_files
    maps = read_maps(npz)
    raw = read_maps(npz, sky_order=False)
    _, plain_wcs = FlatSkyGrid(NPIX, SETTINGS.pixel_arcmin).geometry

    def mean_b_over_e(q, u, wcs=None):
        pairs = [(q[i], u[i]) if wcs is None else (enmap.ndmap(np.asarray(q[i]), wcs), enmap.ndmap(np.asarray(u[i]),
                                                                                                   wcs))
                 for i in range(NSIMS)]
        return np.mean([b_over_e(*pair) for pair in pairs])

    right = mean_b_over_e(maps["q_len"], maps["u_len"])
    stored = mean_b_over_e(raw["q_len"], raw["u_len"])
    wrong = mean_b_over_e(raw["q_len"], raw["u_len"], plain_wcs)
    assert right < 0.3 and stored == pytest.approx(right, rel=1e-6)
    assert 0.6 < wrong < 1.6


def test_h5_and_npz_read_alike_and_max_maps_reads_the_first_maps(map_files):
    npz, h5 = map_files
    full = read_maps(npz, ["q_len", "tru_phi"])
    for path in (npz, h5):
        first = read_maps(path, ["tru_phi", "q_len"], max_maps=2)
        assert list(first) == ["tru_phi", "q_len"]
        for name, m in first.items():
            assert m.shape == (2, NPIX, NPIX)
            np.testing.assert_array_equal(np.asarray(m), np.asarray(full[name][:2]))
            assert wcsutils.equal(m.wcs, full[name].wcs)
    assert read_maps(h5, "q_len", max_maps=100)["q_len"].shape[0] == NSIMS


def test_blocks_are_read_without_the_rest_of_the_array(map_files):
    npz, h5 = map_files
    stored = stored_arrays(npz)["u_len"]
    for path in (npz, h5):
        block = MapFile(path).read_block("u_len", 2, 5)
        np.testing.assert_array_equal(block, stored[2:5])
        blocks = list(MapFile(path).iter_blocks("u_len", 5, 2))
        assert [b.shape[0] for b in blocks] == [2, 2, 1] and all(b.dtype == np.float32 for b in blocks)
        np.testing.assert_array_equal(np.concatenate(blocks), stored[:5])
        assert sum(b.shape[0] for b in MapFile(path).iter_blocks("u_len", 100, 4)) == NSIMS


def test_a_file_without_metadata_needs_the_pixel_size(map_files, tmp_path):
    npz, _ = map_files
    bare = tmp_path / "bare.npz"
    np.savez(bare, **stored_arrays(npz))
    with pytest.raises(PipelineError, match="pixel_arcmin"):
        read_maps(bare)
    maps = read_maps(bare, ["q_len"], pixel_arcmin=SETTINGS.pixel_arcmin)
    np.testing.assert_array_equal(np.asarray(maps["q_len"]), np.asarray(read_maps(npz, ["q_len"])["q_len"]))
    with pytest.raises(PipelineError, match="contradicts"):
        read_maps(npz, pixel_arcmin=3.0)


def test_bad_requests_name_the_problem(map_files, tmp_path):
    npz, _ = map_files
    with pytest.raises(PipelineError, match=r"has no array t_len; it has: q_len, u_len"):
        read_maps(npz, ["q_len", "t_len"])
    with pytest.raises(PipelineError, match="does not exist"):
        read_maps(tmp_path / "missing.npz")
    with pytest.raises(PipelineError, match="not a map file"):
        read_maps(tmp_path / "maps.fits")
    with pytest.raises(PipelineError, match="max_maps"):
        read_maps(npz, max_maps=0)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip file")
    with pytest.raises(PipelineError, match="cannot read"):
        read_maps(broken)


def test_metadata_is_read_from_either_format(map_files):
    for path in map_files:
        meta = MapFile(path).metadata
        assert meta["settings"]["pixel_arcmin"] == SETTINGS.pixel_arcmin and meta["flipped_up_down"] is True
    with zipfile.ZipFile(map_files[0]) as zf:
        assert json.loads(str(np.lib.format.read_array(zf.open("metadata.npy"))))["nsims"] == NSIMS


@pytest.mark.parametrize("metadata, message", [
    ([1, 2], "metadata is a JSON list, not an object"),
    ("a string", "metadata is a JSON str, not an object"),
    ({"settings": [2.0]}, "no metadata giving the pixel size"),
    ({"settings": {"pixel_arcmin": "2.3"}}, "pixel size recorded in .* is '2.3'"),
    ({"settings": {"pixel_arcmin": -1}}, "pixel size recorded in .* is -1"),
    ({"settings": {"pixel_arcmin": float("nan")}}, "pixel size recorded in .* is nan"),
])
def test_metadata_that_is_not_the_pipelines_is_a_pipeline_error(tmp_path, metadata, message):
    path = tmp_path / "odd.npz"
    np.savez(path, metadata=np.array(json.dumps(metadata)), q_len=np.zeros((2, 8, 8), np.float32))
    with pytest.raises(PipelineError, match=message):
        read_maps(path)
