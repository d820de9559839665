"""E/B convention: pixell's iau=False everywhere; a pure-E map has no B."""

import numpy as np
from pixell import enmap

from datapipe.fields import GaussianFieldGenerator
from datapipe.fourier import FlatSkyGrid
from datapipe.polarization import eb_maps, qu_from_eb_half, qu_to_eb_half
from datapipe.powspec import binned_power


def _nyquist_free(g: FlatSkyGrid) -> np.ndarray:
    keep = np.ones(g.shape, bool)
    keep[g.npix // 2, :] = False
    keep[:, g.npix // 2] = False
    return keep


def test_matches_pixell_map2harm_iau_false():
    g = FlatSkyGrid(32, 3.0)
    rng = np.random.default_rng(2)
    q, u = rng.normal(size=(2, 32, 32))
    teb = enmap.map2harm(enmap.enmap(np.stack([0 * q, q, u]), g.wcs), normalize="phys", iau=False)
    ek, bk = qu_to_eb_half(g, q, u)
    # Away from the Nyquist row/column (where pixell's lmap is one-sided), E and B agree exactly.
    keep = _nyquist_free(g)[:, :17]
    np.testing.assert_allclose(ek[keep], np.asarray(teb[1])[:, :17][keep], atol=1e-6 * np.abs(ek).max())
    np.testing.assert_allclose(bk[keep], np.asarray(teb[2])[:, :17][keep], atol=1e-6 * np.abs(bk).max())
    # And back: Q/U from E/B.
    q2, u2 = qu_from_eb_half(g, ek, bk)
    np.testing.assert_allclose(np.stack([q2, u2]), np.stack([q, u]), atol=1e-6)


def test_pure_e_map_has_no_b(spectra):
    g = FlatSkyGrid(64, 2.34375)
    gen = GaussianFieldGenerator(g, spectra)
    white = np.random.default_rng(3).standard_normal((8, 4, 64, 64)).astype(np.float32)
    fields = gen.fields(white)
    q, u = qu_from_eb_half(g, fields.e)
    e, b = eb_maps(g, q.astype(np.float64), u.astype(np.float64))
    pe = binned_power(g, e).mean.sum()
    pb = binned_power(g, b).mean.sum()
    assert pb < 1e-6 * pe
    # And pixell, in the same convention, sees no B either.
    teb = enmap.map2harm(enmap.enmap(np.stack([0 * q[0], q[0], u[0]]).astype(float), g.wcs), iau=False,
                         normalize="phys")
    assert np.sum(np.abs(teb[2]) ** 2) < 1e-6 * np.sum(np.abs(teb[1]) ** 2)
    # The other sign convention (iau=True) mixes E into B at order unity: the test can tell them apart.
    teb_iau = enmap.map2harm(enmap.enmap(np.stack([0 * q[0], q[0], u[0]]).astype(float), g.wcs), iau=True,
                             normalize="phys")
    assert np.sum(np.abs(teb_iau[2]) ** 2) > 0.1 * np.sum(np.abs(teb_iau[1]) ** 2)


def test_plane_wave_signs():
    """E modes polarize parallel/perpendicular to the wavevector (pure Q for ℓ along an axis), B modes at 45°."""
    g = FlatSkyGrid(32, 3.0)
    y, x = np.mgrid[0:32, 0:32]
    wave = np.cos(2 * np.pi * 3 * x / 32)  # wavevector along the x (RA) axis
    e, b = eb_maps(g, wave, np.zeros_like(wave))
    assert np.std(b) < 1e-10 * np.std(e)
    # pixell (iau=False) measures ψ from the ℓ_y axis: for ℓ along x, cos 2ψ = -1, so Q = -E.
    np.testing.assert_allclose(e, -wave, atol=1e-10)
    e, b = eb_maps(g, np.zeros_like(wave), wave)
    assert np.std(e) < 1e-10 * np.std(b)
    np.testing.assert_allclose(b, -wave, atol=1e-10)
