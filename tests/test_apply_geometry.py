"""Tests of training/apply/geometry.py: the training maps' geometry, pixel checks and the network's frame."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from pixell import enmap, utils

from datapipe.fourier import FlatSkyGrid
from training.apply.errors import ApplyError
from training.apply.geometry import (
    PAPER_PIXEL_ARCMIN,
    TrainingGeometry,
    check_pixels,
    from_network_frame,
    to_network_frame,
    training_geometry,
)


def _network(imagesize=32, data_settings=None):
    return SimpleNamespace(imagesize=imagesize, data_settings=data_settings, folder=Path("net"))


def test_recorded_settings_are_used():
    geo = training_geometry(_network(data_settings={"npix": 32, "pixel_arcmin": 1.0, "taper_deg": 0.1}))
    assert (geo.npix, geo.pixel_arcmin, geo.taper_deg, geo.taper_pixels, geo.notes) == (32, 1.0, 0.1, 6, ())
    assert geo.taper().shape == (32, 32) and geo.taper()[0, 0] == 0 and geo.taper()[16, 16] == 1


def test_old_folders_fall_back_on_the_paper_or_the_options():
    geo = training_geometry(_network(128))
    assert (geo.pixel_arcmin, geo.taper_deg, geo.taper_pixels) == (PAPER_PIXEL_ARCMIN, 1.5, 38)
    assert len(geo.notes) == 2 and "assuming the paper's 2.34375'" in geo.notes[0] and "--taper-deg" in geo.notes[1]
    geo = training_geometry(_network(32), pixel_arcmin=2.0, taper_deg=0.2)
    assert (geo.pixel_arcmin, geo.taper_pixels, geo.notes) == (2.0, 6, ())


def test_options_may_not_contradict_the_record():
    net = _network(data_settings={"pixel_arcmin": 2.34375, "taper_deg": 0.3})
    with pytest.raises(ApplyError, match=r"trained with pixel size 2.34375' .*not --pixel-arcmin 1"):
        training_geometry(net, pixel_arcmin=1.0)
    assert training_geometry(net, pixel_arcmin=2.34375).pixel_arcmin == 2.34375
    with pytest.raises(ApplyError, match="data_settings.json says npix 64"):
        training_geometry(_network(32, {"npix": 64}))
    with pytest.raises(ApplyError, match="does not fit the network's 32-pixel maps"):
        training_geometry(_network(32), taper_deg=1.0)


def test_pixel_size_mismatch_names_both_sizes():
    geo = TrainingGeometry(32, 2.34375, 0.3)
    shape, wcs = enmap.geometry(pos=np.array([[-1, 1], [1, -1]]) * utils.degree, res=1.5 * utils.arcmin, proj="car")
    with pytest.raises(ApplyError, match=r"the maps have 1.5' pixels but the network was trained on 2.34375' pixels"):
        check_pixels(shape, wcs, geo)
    shape, wcs = enmap.geometry(pos=np.array([[-1, 1], [1, -1]]) * utils.degree, res=2.34375 * utils.arcmin,
                                proj="car")
    assert check_pixels(shape, wcs, geo) == []


def test_far_from_the_equator_a_note_warns_of_narrower_pixels():
    geo = TrainingGeometry(32, 2.34375, 0.3)
    shape, wcs = enmap.geometry(pos=np.array([[-40, 2], [-30, -2]]) * utils.degree, res=2.34375 * utils.arcmin,
                                proj="car")
    notes = check_pixels(shape, wcs, geo)
    assert len(notes) == 1 and "declination 40.0 deg" in notes[0]


def test_a_pipeline_map_in_the_network_frame_is_its_saved_array():
    """The pipeline's geometry (both cdelt > 0) is only flipped up–down, as the pipeline saves its maps."""
    geo = TrainingGeometry(32, 2.34375, 0.3)
    wcs = FlatSkyGrid(32, 2.34375).wcs
    imap = np.arange(32 * 48, dtype=np.float32).reshape(32, 48)
    np.testing.assert_array_equal(to_network_frame(imap, wcs, geo), imap[::-1])
    np.testing.assert_array_equal(from_network_frame(to_network_frame(imap, wcs, geo), wcs, geo), imap)


def test_a_map_with_ra_running_the_other_way_is_mirrored_into_the_frame():
    """pixell's usual orientation (RA decreasing with the column): the same sky pixel lands on the same frame pixel."""
    geo = TrainingGeometry(32, 2.34375, 0.3)
    _, pipeline_wcs = FlatSkyGrid(32, 2.34375).geometry
    rng = np.random.default_rng(0)
    sky = enmap.enmap(rng.normal(size=(32, 32)).astype(np.float32), pipeline_wcs)
    mirrored = sky[:, ::-1]  # pixell's slicing turns the WCS with the pixels
    wcs = mirrored.wcs
    assert wcs.wcs.cdelt[0] < 0 < pipeline_wcs.wcs.cdelt[0]
    # Same sky coordinates at matching pixels: the mirrored map's column j is the pipeline map's column 31 - j.
    np.testing.assert_allclose(mirrored.pix2sky([3, 5]), sky.pix2sky([3, 26]), atol=1e-12)
    np.testing.assert_array_equal(to_network_frame(mirrored, wcs, geo), to_network_frame(sky, pipeline_wcs, geo))
    np.testing.assert_array_equal(from_network_frame(to_network_frame(mirrored, wcs, geo), wcs, geo), mirrored)
