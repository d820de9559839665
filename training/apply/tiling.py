"""Overlapping tiles over a map larger than the network's input, and the weights that stitch them back.

Each tile of side ``N`` (the network's input) is multiplied by the training taper w before the network sees it, so
the network returns about w·f for a field f. With the tiles' tapers w_t placed at their positions, the stitched map

    f̂ = Σ_t w_t p_t / Σ_t w_t²

recovers f wherever the tiles cover the map, whatever their overlap (for p_t = w_t f exactly). Where the coverage
Σ w_t² falls below a threshold c — the outer band of the map, covered only by the outermost tiles' tapered edges —
dividing would amplify the network's errors at the tiles' edges, so the map is divided by c instead: there
f̂ = f · Σ w_t² / c, i.e. the map's own edge stays tapered, smoothly down to 0 on the border pixels.
:meth:`Stitcher.result` returns that response, min(Σ w_t² / c, 1), as the coverage map: 1 where the field is
recovered, less than 1 in the tapered band.

Tiles start every ``stride`` pixels (default half a tile) from the first row and column; when the last one would
not reach the far edge, one more tile is placed flush with it, so both edges are covered alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from training.apply.errors import ApplyError

#: Default coverage threshold c: the stitched map is divided by max(Σ w², c).
DEFAULT_MIN_WEIGHT = 0.5


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """First pixels of the tiles along one axis of ``length`` pixels (the last tile ends on the last pixel).

    Parameters
    ----------
    length : int
        Pixels along the axis (at least ``tile``).
    tile : int
        Tile side in pixels.
    stride : int
        Pixels between the starts of neighbouring tiles (1 to ``tile``).

    Returns
    -------
    list of int
    """
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


@dataclasses.dataclass(frozen=True)
class TileGrid:
    """The tiles over a (ny, nx) map.

    Attributes
    ----------
    shape : tuple of int
        (ny, nx) of the map.
    tile : int
        Tile side in pixels.
    stride : int
        Pixels between neighbouring tile starts.
    rows, cols : tuple of int
        First row and first column of each row and column of tiles.
    """

    shape: tuple[int, int]
    tile: int
    stride: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @classmethod
    def build(cls, shape: tuple[int, int], tile: int, stride: int | None = None) -> TileGrid:
        """The tiles of side ``tile`` every ``stride`` (default ``tile // 2``) pixels over a map of ``shape``.

        Raises
        ------
        ApplyError
            If the map is smaller than one tile, or the stride is outside 1..tile.
        """
        ny, nx = (int(n) for n in shape)
        if ny < tile or nx < tile:
            raise ApplyError(f"the maps are {ny}x{nx} pixels, smaller than the network's {tile}x{tile} input; "
                             f"give maps of at least {tile}x{tile} pixels")
        stride = max(1, tile // 2) if stride is None else int(stride)
        if not 1 <= stride <= tile:
            raise ApplyError(f"--stride must lie between 1 and the tile side {tile} (got {stride}); tiles further "
                             "apart would leave gaps")
        return cls((ny, nx), tile, stride, tuple(tile_starts(ny, tile, stride)), tuple(tile_starts(nx, tile, stride)))

    @property
    def starts(self) -> list[tuple[int, int]]:
        """(first row, first column) of every tile, row by row."""
        return [(r, c) for r in self.rows for c in self.cols]

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def batches(self, size: int) -> Iterator[list[tuple[int, int]]]:
        """The tile starts in batches of at most ``size`` tiles."""
        starts = self.starts
        for i in range(0, len(starts), size):
            yield starts[i : i + size]

    def cut(self, imap: np.ndarray, starts: list[tuple[int, int]]) -> np.ndarray:
        """The tiles of a (ny, nx) map at ``starts``, as one (len(starts), tile, tile) array."""
        n = self.tile
        return np.stack([imap[r : r + n, c : c + n] for r, c in starts])


class Stitcher:
    """Accumulates tapered tile predictions into Σ w·p and Σ w², then divides (see the module docstring).

    Parameters
    ----------
    grid : TileGrid
        The tiles.
    taper : ndarray
        (tile, tile) taper w of the training maps.
    names : list of str
        The fields being stitched.
    """

    def __init__(self, grid: TileGrid, taper: np.ndarray, names: list[str]):
        self.grid = grid
        # float32 like the maps: a pixel sums a handful of tiles, and the accumulators are the size of the map.
        self.taper = np.asarray(taper, dtype=np.float32)
        self.sums = {name: np.zeros(grid.shape, dtype=np.float32) for name in names}
        self.weight = np.zeros(grid.shape, dtype=np.float32)

    def add(self, starts: list[tuple[int, int]], predictions: dict[str, np.ndarray]) -> None:
        """Add the predictions (each (len(starts), tile, tile), physical units) of the tiles at ``starts``."""
        n = self.grid.tile
        w, w2 = self.taper, self.taper**2
        for j, (r, c) in enumerate(starts):
            self.weight[r : r + n, c : c + n] += w2
            for name, pred in predictions.items():
                self.sums[name][r : r + n, c : c + n] += w * pred[j]

    def result(self, min_weight: float = DEFAULT_MIN_WEIGHT) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The stitched maps, Σ w·p / max(Σ w², c), and the coverage min(Σ w² / c, 1), float32.

        Parameters
        ----------
        min_weight : float
            The threshold c (> 0).

        Returns
        -------
        maps : dict of str to ndarray
            Field name → (ny, nx) map in the units of the predictions.
        coverage : ndarray
            (ny, nx): the stitched map is ``coverage`` × the field (1 inside, tapered to 0 at the map's border).
        """
        if not min_weight > 0:
            raise ApplyError(f"--min-weight must be positive (got {min_weight!r})")
        denominator = np.maximum(self.weight, np.float32(min_weight))
        maps = {name: total / denominator for name, total in self.sums.items()}
        coverage = np.minimum(self.weight / np.float32(min_weight), np.float32(1.0))
        return maps, coverage
