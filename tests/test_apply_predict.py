"""Tests of training/apply/predict.py: an identity network stitched back exactly, a trained tiny network without
seams on a large periodic patch simulated by the pipeline, and the checks of the input maps."""

from __future__ import annotations

import numpy as np
import pytest
from apply_helpers import NPIX, STDS, identity_network, random_enmaps, train_tiny_network
from pixell import enmap

from datapipe.fourier import FlatSkyGrid
from datapipe.polarization import eb_maps
from datapipe.settings import SimulationSettings
from datapipe.simulate import MapSetSimulator
from training.apply import predict_maps
from training.apply.errors import ApplyError
from training.apply.geometry import TrainingGeometry
from training.apply.predict import field_unit, predict_tiles, predict_with_info
from training.apply.tiling import TileGrid
from training.evaluation.network import load_network

#: The identity network's outputs in physical units: kappa = 2 q, e_unl = 3 q, tau = u / 5 (ratios of STDS).
GAIN = {"kappa": ("q", STDS["tru_kappa"] / STDS["q_len"]), "e_unl": ("q", STDS["e_unl"] / STDS["q_len"]),
        "tau": ("u", STDS["tru_tau"] / STDS["u_len"])}


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    return load_network(identity_network(tmp_path_factory.mktemp("identity")))


@pytest.mark.parametrize("shape, ra_reversed", [((128, 128), True), ((100, 77), False), ((32, 90), True)])
def test_identity_network_is_stitched_back_exactly(identity, shape, ra_reversed):
    """Tiles tapered by w, an identity network (p = w·x), stitched by Σ w p / max(Σ w², c): x wherever covered."""
    q, u = random_enmaps(shape, seed=3, ra_reversed=ra_reversed)
    result = predict_with_info(identity, q, u, batch_size=5)
    maps, coverage = result.maps, np.asarray(result.maps["coverage"])
    assert set(maps) == {"kappa", "e_unl", "tau", "coverage"}
    inside = coverage >= 1
    assert inside.sum() > 0.3 * inside.size
    inputs = {"q": np.asarray(q), "u": np.asarray(u)}
    for name, (source, gain) in GAIN.items():
        assert maps[name].shape == shape and maps[name].dtype == np.float32
        assert np.allclose(maps[name].wcs.wcs.cdelt, q.wcs.wcs.cdelt) and np.allclose(maps[name].wcs.wcs.crpix,
                                                                                      q.wcs.wcs.crpix)
        # float32 arithmetic on values of order 5 sigma x gain: 1e-5 absolute is float precision.
        np.testing.assert_allclose(maps[name][inside], gain * inputs[source][inside], atol=1e-5)
        np.testing.assert_allclose(maps[name], gain * coverage * inputs[source], atol=1e-5)  # tapered border band
    assert result.tiles == len(TileGrid.build(shape, NPIX)) and result.stride == NPIX // 2
    assert result.units == {"kappa": "", "e_unl": "uK", "tau": ""}


def test_network_sized_maps_take_the_direct_path(identity):
    q, u = random_enmaps((NPIX, NPIX), seed=4)
    taper = TrainingGeometry(NPIX, 2.34375, 0.3).taper()
    tapered_q, tapered_u = enmap.enmap(q * taper, q.wcs), enmap.enmap(u * taper, u.wcs)
    result = predict_with_info(identity, tapered_q, tapered_u)
    assert result.tiles == 1 and result.stride is None and result.notes == []
    np.testing.assert_allclose(result.maps["kappa"], 2 * tapered_q, atol=1e-5)  # as given: already tapered
    np.testing.assert_allclose(result.maps["coverage"], taper, atol=1e-7)
    # Untapered maps get the training taper first, with a note.
    result = predict_with_info(identity, q, u)
    np.testing.assert_allclose(result.maps["tau"], tapered_u / 5, atol=1e-5)
    assert len(result.notes) == 1 and "not tapered" in result.notes[0]


def test_bad_maps_are_refused(identity):
    q, u = random_enmaps((64, 64), seed=5)
    small_q, small_u = random_enmaps((20, 64), seed=5)
    with pytest.raises(ApplyError, match="the Q map is 64x64 pixels but the U map 20x64"):
        predict_maps(identity, q, small_u)
    with pytest.raises(ApplyError, match="the maps are 20x64 pixels, smaller than the network's 32x32 input"):
        predict_maps(identity, small_q, small_u)
    shifted = enmap.enmap(np.asarray(u), u.wcs.deepcopy())
    shifted.wcs.wcs.crval = [1.0, 0.0]
    with pytest.raises(ApplyError, match="the Q and U maps have different WCS"):
        predict_maps(identity, q, shifted)
    holed = q.copy()
    holed[10, 12] = np.nan
    holed[40, 3] = np.inf
    with pytest.raises(ApplyError, match=r"the Q map has 2 NaN or inf pixels \(first at row 10, column 12\)"):
        predict_maps(identity, holed, u)
    coarse_q, coarse_u = random_enmaps((64, 64), seed=5, pixel_arcmin=3.0)
    with pytest.raises(ApplyError, match="the maps have 3' pixels but the network was trained on 2.34375' pixels"):
        predict_maps(identity, coarse_q, coarse_u)
    for options, message in (({"batch_size": 0}, "--batch-size must be at least 1"),
                             ({"min_weight": 0.0}, "--min-weight must be positive"),
                             ({"stride": 40}, "--stride must lie between 1 and the tile side 32")):
        with pytest.raises(ApplyError, match=message):
            predict_maps(identity, q, u, **options)


def test_units_by_field():
    names = ("tru_kappa", "tru_tau", "e_unl", "tru_alpha", "b_len")
    assert [field_unit(a) for a in names] == ["", "", "uK", "rad", "uK"]


# --------------------------------------------------------------------------------------------------------------
# A large periodic patch with the pipeline's physics, predicted by a tiny network trained here


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return load_network(train_tiny_network(tmp_path_factory.mktemp("tiny_conv")))


@pytest.fixture(scope="module")
def patch():
    """One 128x128 map set (4x the tile side) without taper: periodic, as the pipeline's FFT physics makes it."""
    settings = SimulationSettings(npix=4 * NPIX, taper_deg=0.0, null_fraction=0.0, qe_mean_field_sims=0, seed=9,
                                  maps=("q_len", "u_len", "q_unl", "u_unl", "e_unl"))
    return {name: arr[0] for name, arr in MapSetSimulator(settings).simulate([0]).items()}


def overlap_disagreement(tiles: dict[tuple[int, int], np.ndarray], taper: np.ndarray, stride: int) -> float:
    """R = Σ (w_B p_A − w_A p_B)² / Σ ½[(w_B p_A)² + (w_A p_B)²] over the overlaps of horizontal and vertical
    neighbours A, B. For p = w·f (a seamless tiling) R = 0; for unrelated maps of equal power R = 2; for two
    estimates of equal power and correlation ρ, R = 2(1 − ρ)."""
    n = taper.shape[0]
    diff = power = 0.0
    for (r, c), p_a in tiles.items():
        for dr, dc in ((0, stride), (stride, 0)):
            p_b = tiles.get((r + dr, c + dc))
            if p_b is None:
                continue
            a = taper[: n - dr, : n - dc] * p_a[dr:, dc:]  # w_B p_A on the overlap
            b = taper[dr:, dc:] * p_b[: n - dr, : n - dc]  # w_A p_B
            diff += np.sum((a - b) ** 2)
            power += 0.5 * np.sum(a**2 + b**2)
    return diff / power


def test_no_seams_on_a_large_periodic_patch(trained, patch):
    """Neighbouring tiles agree on E in their overlap about as well as their exact training targets do, and the
    stitched E map follows the true E.

    The E target of a tile is the E map of the *tapered* primordial Q/U, which is not w·E: the E/B projection is
    non-local, so even a perfect network's neighbouring tiles differ in their overlap (R_target ≈ 0.2 here). The
    threshold R_net < 1.5 R_target (and < 0.3, i.e. tile-to-tile correlation above 0.85) allows for a network trained
    for seconds; tiles cut at the wrong place (R ≈ 2) or fed untapered (R ≈ 0.34) fail it. κ and τ are not tested: a
    tiny network does not learn them in a few epochs, so their outputs carry no signal to compare.
    """
    geometry = TrainingGeometry(NPIX, 2.34375, 0.3)
    taper = geometry.taper()
    grid = TileGrid.build(patch["q_len"].shape, NPIX)
    predicted = {}
    for starts, fields in predict_tiles(trained, {"qlen": patch["q_len"], "ulen": patch["u_len"]}, grid, taper, 16):
        predicted.update({start: fields["e_unl"][j] for j, start in enumerate(starts)})
    # The exact targets of the same tiles: E of the tapered primordial Q/U (computed unflipped, saved flipped).
    tile_grid = FlatSkyGrid(NPIX, 2.34375)
    q_unl = grid.cut(patch["q_unl"], grid.starts)[:, ::-1] * taper
    u_unl = grid.cut(patch["u_unl"], grid.starts)[:, ::-1] * taper
    e_target = eb_maps(tile_grid, q_unl.astype(np.float32), u_unl.astype(np.float32))[0][:, ::-1]
    targets = dict(zip(grid.starts, e_target, strict=True))
    r_target = overlap_disagreement(targets, taper, grid.stride)
    r_net = overlap_disagreement(predicted, taper, grid.stride)
    assert 0.05 < r_target < 0.4, r_target
    assert r_net < min(1.5 * r_target, 0.3), (r_net, r_target)

    # The stitched map, through the public API on the patch as an enmap (pipeline geometry, un-flipped).
    wcs = FlatSkyGrid(4 * NPIX, 2.34375).wcs
    maps = predict_maps(trained, enmap.enmap(patch["q_len"][::-1], wcs), enmap.enmap(patch["u_len"][::-1], wcs))
    inside = np.asarray(maps["coverage"]) >= 1
    e_true = patch["e_unl"][::-1]
    correlation = np.corrcoef(maps["e_unl"][inside], e_true[inside])[0, 1]
    assert correlation > 0.8, correlation  # ≈ 0.89 measured; a mirrored or misplaced map gives ≈ 0


def test_the_same_sky_in_pixells_usual_orientation_gives_the_same_maps(trained, patch):
    """RA decreasing with the column (cdelt[0] < 0) is the same sky: its pixels are reordered, not its values, so a
    trained (direction-sensitive) network returns the mirrored maps; without the reordering E differs."""
    wcs = FlatSkyGrid(4 * NPIX, 2.34375).wcs
    q, u = enmap.enmap(patch["q_len"][::-1], wcs), enmap.enmap(patch["u_len"][::-1], wcs)
    maps = predict_maps(trained, q, u)
    mirrored = predict_maps(trained, q[:, ::-1], u[:, ::-1])  # pixell's slicing turns the WCS with the pixels
    assert mirrored["e_unl"].wcs.wcs.cdelt[0] < 0
    for name in ("kappa", "e_unl", "tau", "coverage"):
        np.testing.assert_allclose(mirrored[name], maps[name][:, ::-1], atol=1e-5)
    as_if_unmirrored = predict_maps(trained, enmap.enmap(np.asarray(q[:, ::-1]), wcs), enmap.enmap(np.asarray(
        u[:, ::-1]), wcs))
    assert np.max(np.abs(as_if_unmirrored["e_unl"][:, ::-1] - maps["e_unl"])) > 0.1 * np.std(maps["e_unl"])
