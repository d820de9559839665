"""FITS export: files pixell and astropy read as correctly oriented sky maps, E/B round trip, streaming, bad input."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from pixell import enmap, wcsutils
from sky_map_helpers import NSIMS, SETTINGS, b_over_e, eb_fourier, fourier, nyquist_free, write_map_file

import datapipe.export as export
from datapipe.fourier import FlatSkyGrid
from datapipe.io import read_maps

NPIX = SETTINGS.npix


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A simulated .npz file and its FITS export (default output folder: the file name without suffix)."""
    folder = tmp_path_factory.mktemp("export")
    npz = write_map_file(folder / "maps.npz")
    assert export.main([str(npz)]) == 0
    return npz, folder / "maps"


def test_every_array_and_the_taper_become_fits_cubes_that_pixell_reads_back(exported):
    npz, out = exported
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.fits" for n in SETTINGS.maps] + ["taper.fits"])
    maps = read_maps(npz)
    for name in SETTINGS.maps:
        m = enmap.read_map(str(out / f"{name}.fits"))
        assert m.shape == (NSIMS, NPIX, NPIX) and m.dtype == np.float32, name
        np.testing.assert_array_equal(np.asarray(m), np.asarray(maps[name]))
        assert wcsutils.equal(m.wcs, maps[name].wcs), name
    taper = enmap.read_map(str(out / "taper.fits"))
    with np.load(npz.parent / "window_info.npz") as f:
        np.testing.assert_array_equal(np.asarray(taper), f["taper"][::-1, ::-1].astype(np.float32))


def test_fits_header_gives_ra_increasing_to_the_left_and_the_pixel_size(exported):
    """What ds9 or astropy see: RA grows towards lower x (to the left), Dec towards higher y (up), pixels of
    pixel_arcmin, and each pixel at the sky position its value was simulated at."""
    npz, out = exported
    header = fits.getheader(out / "q_len.fits")
    assert (header["NAXIS1"], header["NAXIS2"], header["NAXIS3"]) == (NPIX, NPIX, NSIMS)
    assert header["BUNIT"] == "uK" and header["POLCCONV"] == "COSMO" and header["EXTNAME"] == "q_len"
    assert fits.getheader(out / "tru_kappa.fits")["BUNIT"] == "" and fits.getheader(out / "tru_phi.fits")["BUNIT"] == \
        "rad2"
    wcs = WCS(header, naxis=2)
    np.testing.assert_allclose(wcs.proj_plane_pixel_scales()[0].to_value("arcmin"), SETTINGS.pixel_arcmin)
    np.testing.assert_allclose(wcs.proj_plane_pixel_scales()[1].to_value("arcmin"), SETTINGS.pixel_arcmin)
    x, y = np.meshgrid(np.arange(NPIX), np.arange(NPIX))  # FITS pixel (x, y) = data[y, x]
    sky = wcs.pixel_to_world(x, y)
    ra = sky.ra.wrap_at("180d").deg
    dec = sky.dec.deg
    assert np.all(np.diff(ra, axis=1) < 0) and np.all(np.diff(dec, axis=0) > 0)
    # The stored value at [row, col] was simulated at simulation-grid pixel [npix-1-row, col] (the flip); the FITS
    # pixel (x, y) holds stored[npix-1-y, npix-1-x], i.e. simulation pixel [y, npix-1-x].
    sim_dec, sim_ra = np.rad2deg(enmap.posmap(*FlatSkyGrid(NPIX, SETTINGS.pixel_arcmin).geometry))
    np.testing.assert_allclose(dec, sim_dec[:, ::-1], atol=1e-9)
    np.testing.assert_allclose(ra, sim_ra[:, ::-1], atol=1e-9)
    with np.load(npz) as f:
        stored = f["q_len"]
    np.testing.assert_array_equal(fits.getdata(out / "q_len.fits")[:, y, x], stored[:, NPIX - 1 - y, NPIX - 1 - x])


def test_pixell_eb_of_the_exported_qu_equals_the_stored_e_and_b(exported):
    npz, out = exported
    q, u = (enmap.read_map(str(out / f"{n}.fits")) for n in ("q_len", "u_len"))
    e, b = (enmap.read_map(str(out / f"{n}.fits")) for n in ("e_len", "b_len"))
    with np.load(npz) as f:
        stored_e, stored_b = f["e_len"], f["b_len"]
    np.testing.assert_array_equal(np.asarray(e), stored_e[:, ::-1, ::-1])  # the exported e_len is the stored one
    np.testing.assert_array_equal(np.asarray(b), stored_b[:, ::-1, ::-1])
    keep = nyquist_free(NPIX)
    for i in range(NSIMS):
        e_k, b_k = eb_fourier(q[i], u[i])
        # float32 maps: agreement to ~1e-7 of the largest mode; 1e-6 leaves room.
        np.testing.assert_allclose(e_k[keep], fourier(e[i])[keep], rtol=0, atol=1e-6 * np.abs(e_k).max())
        np.testing.assert_allclose(b_k[keep], fourier(b[i])[keep], rtol=0, atol=1e-6 * np.abs(b_k).max())


def test_exported_lensed_qu_is_mostly_e_unlike_the_raw_arrays(exported):
    """B/E ~ 0.1 for the exported lensed Q/U; the raw stored arrays under the FITS header are mirrored (up-down)
    and give B/E ≈ 1 — the check can fail."""
    npz, out = exported
    q, u = (enmap.read_map(str(out / f"{n}.fits")) for n in ("q_len", "u_len"))
    right = np.mean([b_over_e(q[i], u[i]) for i in range(NSIMS)])
    with np.load(npz) as f:
        raw_q, raw_u = f["q_len"][:, :, ::-1], f["u_len"][:, :, ::-1]  # only the RA order fixed, not the flip
    wrong = np.mean([b_over_e(enmap.ndmap(raw_q[i], q.wcs), enmap.ndmap(raw_u[i], q.wcs)) for i in range(NSIMS)])
    assert right < 0.3
    assert 0.6 < wrong < 1.6


def test_blocks_max_maps_and_h5_input(exported, tmp_path, monkeypatch):
    npz, out = exported
    monkeypatch.setattr(export, "BLOCK_MAPS", 4)  # 6 maps: two blocks, the second one short
    h5 = write_map_file(tmp_path / "maps.h5")
    assert export.main([str(h5), "--output", str(tmp_path / "fits"), "--maps", "u_len,tru_kappa"]) == 0
    assert sorted(p.name for p in (tmp_path / "fits").iterdir()) == ["taper.fits", "tru_kappa.fits", "u_len.fits"]
    for name in ("u_len", "tru_kappa"):
        np.testing.assert_array_equal(fits.getdata(tmp_path / "fits" / f"{name}.fits"),
                                      fits.getdata(out / f"{name}.fits"))
    assert export.main([str(npz), "--output", str(tmp_path / "few"), "--maps", "q_len", "--max-maps", "3"]) == 0
    few = fits.getdata(tmp_path / "few" / "q_len.fits")
    assert few.shape == (3, NPIX, NPIX)
    np.testing.assert_array_equal(few, fits.getdata(out / "q_len.fits")[:3])


def test_bad_input_is_one_line_and_nothing_is_written(exported, tmp_path, capsys):
    npz, out = exported
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    cases = [
        ([str(npz)], "already exist"),                                            # no --overwrite
        ([str(npz), "--output", str(tmp_path / "a"), "--maps", "q_len,t_len"], "has no array t_len"),
        ([str(npz), "--output", str(tmp_path / "b"), "--max-maps", "0"], "--max-maps"),
        ([str(tmp_path / "missing.npz")], "does not exist"),
        ([str(npz), "--output", str(tmp_path / "no" / "such" / "folder")], "does not exist"),
    ]
    for argv, message in cases:
        assert export.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err and message in err, (argv, err)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert export.main([str(npz), "--maps", "q_len", "--overwrite"]) == 0
    assert (out / "q_len.fits").stat().st_mtime_ns > before["q_len.fits"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left behind


@pytest.mark.parametrize("error, message", [
    (OSError("409600 requested and 261424 written"), "the disk is probably full; free some space"),
    (OSError(28, "No space left on device", "x/q_len.fits"), "No space left on device (x/q_len.fits); free some"),
])
def test_a_failed_write_is_one_line_exit_1(exported, tmp_path, capsys, monkeypatch, error, message):
    npz, _ = exported

    def fail(*args):
        raise error

    monkeypatch.setattr(export, "export_array", fail)
    assert export.main([str(npz), "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and message in err, err


def test_an_output_under_a_file_is_refused_before_writing(exported, tmp_path, capsys):
    npz, _ = exported
    (tmp_path / "file").write_text("x")
    assert export.main([str(npz), "--output", str(tmp_path / "file" / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a folder" in err, err


def test_sigterm_while_exporting_is_one_line_exit_143(exported, tmp_path, capsys, monkeypatch):
    import os
    import signal
    import time

    npz, _ = exported

    def slow(*args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    monkeypatch.setattr(export, "export_array", slow)
    assert export.main([str(npz), "--output", str(tmp_path / "out")]) == 143
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted (SIGTERM)" in err, err
