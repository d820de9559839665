"""Tests of training/apply/tiling.py: the tile grid and the stitching Σ w·p / max(Σ w², c) (NumPy only)."""

from __future__ import annotations

import numpy as np
import pytest

from datapipe.taper import cosine_taper
from training.apply.errors import ApplyError
from training.apply.tiling import DEFAULT_MIN_WEIGHT, Stitcher, TileGrid, tile_starts


@pytest.mark.parametrize("length, tile, stride, expected", [
    (128, 32, 16, [0, 16, 32, 48, 64, 80, 96]),
    (100, 32, 16, [0, 16, 32, 48, 64, 68]),  # one more tile, flush with the far edge
    (32, 32, 16, [0]),
    (33, 32, 32, [0, 1]),
    (70, 32, 32, [0, 32, 38]),
])
def test_tile_starts_cover_both_edges(length, tile, stride, expected):
    starts = tile_starts(length, tile, stride)
    assert starts == expected
    covered = np.zeros(length, dtype=bool)
    for s in starts:
        covered[s : s + tile] = True
    assert covered.all()


def test_grid_rejects_small_maps_and_bad_strides():
    with pytest.raises(ApplyError, match=r"20x40 pixels, smaller than the network's 32x32"):
        TileGrid.build((20, 40), 32)
    for stride in (0, 33):
        with pytest.raises(ApplyError, match="--stride must lie between 1 and the tile side 32"):
            TileGrid.build((64, 64), 32, stride)
    grid = TileGrid.build((64, 100), 32)
    assert grid.stride == 16 and len(grid) == 3 * 6
    assert [len(b) for b in grid.batches(8)] == [8, 8, 2]


def _stitch(field: np.ndarray, grid: TileGrid, taper: np.ndarray, min_weight: float = DEFAULT_MIN_WEIGHT):
    """Stitch the tiles of a perfect network, which returns w·f on every tile."""
    stitcher = Stitcher(grid, taper, ["f"])
    for starts in grid.batches(5):
        stitcher.add(starts, {"f": grid.cut(field, starts) * taper})
    return stitcher.result(min_weight)


@pytest.mark.parametrize("shape, stride", [((128, 128), None), ((100, 77), None), ((90, 64), 8), ((64, 96), 18)])
def test_perfect_tiles_give_the_field_back_where_covered(shape, stride):
    """Σ w·(w f) / Σ w² = f wherever Σ w² >= c; in the border band the map is f·Σw²/c, i.e. coverage × f."""
    rng = np.random.default_rng(1)
    field = rng.normal(size=shape)
    taper = cosine_taper(32, 7)
    grid = TileGrid.build(shape, 32, stride)
    maps, coverage = _stitch(field, grid, taper)
    inside = coverage >= 1
    # float32 output: relative precision 6e-8, values of order 4 sigma.
    np.testing.assert_allclose(maps["f"][inside], field[inside], atol=1e-6)
    np.testing.assert_allclose(maps["f"], coverage * field, atol=1e-6)
    # The map's own edge stays tapered: zero on the border pixels (w = 0 there), recovered from one taper width on.
    assert np.all(coverage[0] == 0) and np.all(coverage[:, -1] == 0)
    assert np.all(coverage[7:-7, 7:-7] == 1)


def test_paper_geometry_is_recovered_one_taper_width_from_the_border():
    """128-pixel tiles with the paper's 38-pixel taper at stride 64: the interior sum of w² stays above 1."""
    taper = cosine_taper(128, 38)
    grid = TileGrid.build((448, 320), 128)
    stitcher = Stitcher(grid, taper, [])
    for starts in grid.batches(16):
        stitcher.add(starts, {})
    assert stitcher.weight[38:-38, 38:-38].min() >= 1.0
    _, coverage = stitcher.result()
    assert np.all(coverage[38:-38, 38:-38] == 1)
    assert 0 < coverage[20, 200] < 1  # inside the border band


def test_coverage_shows_the_gaps_of_tiles_that_only_touch():
    """At stride = tile side the tapers of abutting tiles both vanish on the line where they meet."""
    taper = cosine_taper(32, 7)
    maps, coverage = _stitch(np.ones((64, 64)), TileGrid.build((64, 64), 32, 32), taper)
    assert coverage[10:-10, 31].max() == 0 and coverage[10:20, 10:20].min() == 1
    np.testing.assert_allclose(maps["f"], coverage, atol=1e-6)


def test_threshold_sets_the_width_of_the_tapered_band():
    taper = cosine_taper(32, 7)
    grid = TileGrid.build((64, 64), 32)
    field = np.ones((64, 64))
    tight, cov_tight = _stitch(field, grid, taper, min_weight=0.9)
    loose, cov_loose = _stitch(field, grid, taper, min_weight=0.05)
    assert (cov_loose >= 1).sum() > (cov_tight >= 1).sum()
    with pytest.raises(ApplyError, match="--min-weight must be positive"):
        _stitch(field, grid, taper, min_weight=0.0)
