"""The network on a pair of Q/U enmaps of any size: :func:`predict_maps`.

A map of exactly the network's size takes the direct path: it is taken to be prepared like a training map (tapered,
as the pipeline writes them; a map whose border pixels are not all zero is tapered here first, with a note) and the
outputs are the network's predictions as they are — tapered like the training targets, the coverage map being the
taper. A larger map is cut into overlapping tiles, each multiplied by the training taper and standardized with the
network's means and standard deviations, predicted in batches, returned to physical units and stitched
(:mod:`training.apply.tiling`). Only one batch of tiles is in memory at a time, besides the input and output maps.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from training.apply.errors import ApplyError
from training.apply.geometry import (
    TrainingGeometry,
    check_pixels,
    from_network_frame,
    to_network_frame,
    training_geometry,
)
from training.apply.tiling import DEFAULT_MIN_WEIGHT, Stitcher, TileGrid

#: Input arrays of the network, by the Stokes parameter fed to them.
STOKES_ARRAYS = {"q": "q_len", "u": "u_len"}
#: A batch count above which the progress bar is shown.
PROGRESS_MIN_BATCHES = 2


@dataclasses.dataclass
class PredictionResult:
    """The outputs of :func:`predict_with_info` and how they were made.

    Attributes
    ----------
    maps : dict of str to pixell.enmap.ndmap
        Field name (``kappa``, ``tau``, ``e_unl``, …: the truth array name without ``tru_``) → map with the input's
        WCS, in physical units; plus ``coverage``: each map is ``coverage`` × the field (1 where it is recovered).
    units : dict of str to str
        Field name → unit (``"uK"``, ``"rad"``; ``""`` dimensionless).
    geometry : TrainingGeometry
        The training maps' geometry used.
    tiles : int
        Tiles predicted (1 on the direct path).
    stride : int or None
        Pixels between tiles (None on the direct path).
    min_weight : float or None
        Coverage threshold of the stitching (None on the direct path).
    notes : list of str
        Assumptions and remarks.
    """

    maps: dict[str, Any]
    units: dict[str, str]
    geometry: TrainingGeometry
    tiles: int
    stride: int | None
    min_weight: float | None
    notes: list[str]

    def info(self) -> dict[str, Any]:
        """A JSON-ready description (``predict_info.json``)."""
        return {
            "fields": {name: {"unit": unit or "dimensionless"} for name, unit in self.units.items()},
            "coverage": "each map = coverage x field: 1 where the field is recovered, < 1 in the tapered border band",
            "shape": list(next(iter(self.maps.values())).shape),
            "tile_npix": self.geometry.npix,
            "pixel_arcmin": self.geometry.pixel_arcmin,
            "taper_deg": self.geometry.taper_deg,
            "taper_pixels": self.geometry.taper_pixels,
            "path": "direct" if self.stride is None else "tiled",
            "tiles": self.tiles,
            "stride": self.stride,
            "min_weight": self.min_weight,
            "notes": list(self.notes),
        }


def field_name(array: str) -> str:
    """File stem of an output: its truth array name without ``tru_`` (``tru_kappa`` → ``kappa``, ``e_unl``)."""
    return array.removeprefix("tru_")


def field_unit(array: str) -> str:
    """Unit of a field by its array name: CMB maps in μK (``"uK"``), a rotation angle α in radians, else ``""``."""
    name = field_name(array)
    if name[:2] in ("t_", "q_", "u_", "e_", "b_"):
        return "uK"
    return "rad" if name.startswith("alpha") else ""


def _stokes_inputs(network: Any) -> dict[str, str]:
    """Model input name → ``"q"`` or ``"u"``."""
    by_array = {array: stokes for stokes, array in STOKES_ARRAYS.items()}
    unknown = [array for array in network.inputs.values() if array not in by_array]
    if unknown or len(network.inputs) != 2:
        raise ApplyError(f"the network takes {', '.join(network.inputs.values())}; predictions from Q and U maps "
                         f"need a network whose inputs are {' and '.join(STOKES_ARRAYS.values())}")
    return {name: by_array[array] for name, array in network.inputs.items()}


def check_pair(q: Any, u: Any) -> None:
    """Check that Q and U are 2-D enmaps on one geometry, without NaN or inf pixels.

    Raises
    ------
    ApplyError
        Naming the differing shapes or WCS, or the number and first position of the bad pixels.
    """
    from pixell import wcsutils

    for stokes, imap in (("Q", q), ("U", u)):
        if np.ndim(imap) != 2 or not hasattr(imap, "wcs"):
            raise ApplyError(f"the {stokes} map must be a 2-D enmap (got shape {np.shape(imap)})")
    if q.shape != u.shape:
        raise ApplyError(f"the Q map is {q.shape[0]}x{q.shape[1]} pixels but the U map {u.shape[0]}x{u.shape[1]}; "
                         "give Q and U on the same pixels")
    if not wcsutils.equal(q.wcs, u.wcs):
        raise ApplyError(f"the Q and U maps have different WCS ({q.wcs} and {u.wcs}); give them on the same pixels")
    for stokes, imap in (("Q", q), ("U", u)):
        bad = ~np.isfinite(imap)
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            raise ApplyError(f"the {stokes} map has {int(bad.sum())} NaN or inf pixels (first at row {row}, column "
                             f"{col}); fill them (e.g. with 0, or inpaint) before predicting")


def _predict_batch(network: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Standardize tapered tiles (physical units), predict, return each output in physical units by field name."""
    std = network.standardization
    x = {name: std.apply(network.inputs[name], tiles)[..., None] for name, tiles in inputs.items()}
    raw = network.model.predict_on_batch(x)
    if isinstance(raw, dict):
        raw = [raw[name] for name in network.model.output_names]
    elif not isinstance(raw, list | tuple):
        raw = [raw]
    out = {}
    for name, pred in zip(network.model.output_names, raw, strict=True):
        if name in network.outputs:
            array = network.outputs[name]
            out[field_name(array)] = std.invert(array, np.asarray(pred)[..., 0])
    return out


def predict_tiles(
    network: Any, maps: dict[str, np.ndarray], grid: TileGrid, taper: np.ndarray, batch_size: int = 16,
    progress: bool = False,
) -> Iterator[tuple[list[tuple[int, int]], dict[str, np.ndarray]]]:
    """Predict the tiles of maps in the network's frame, one batch at a time.

    Parameters
    ----------
    network : training.evaluation.network.Network
        The network.
    maps : dict of str to ndarray
        Model input name → (ny, nx) map in physical units (μK), in the network's frame.
    grid : TileGrid
        The tiles.
    taper : ndarray
        (tile, tile) training taper, applied to every tile before standardization.
    batch_size : int
        Tiles per forward pass.
    progress : bool
        Show a progress bar (stderr) when there is more than one batch.

    Yields
    ------
    starts : list of (int, int)
        First row and column of each tile of the batch.
    predictions : dict of str to ndarray
        Field name → (len(starts), tile, tile) predictions in physical units.
    """
    from tqdm import tqdm

    taper32 = np.asarray(taper, dtype=np.float32)
    show = progress and len(grid) > PROGRESS_MIN_BATCHES * batch_size
    with tqdm(total=len(grid), unit="tile", desc="predicting", disable=not show, file=sys.stderr) as bar:
        for starts in grid.batches(batch_size):
            inputs = {name: grid.cut(imap, starts) * taper32 for name, imap in maps.items()}
            yield starts, _predict_batch(network, inputs)
            bar.update(len(starts))


def _is_tapered(maps: list[np.ndarray]) -> bool:
    """Whether every border pixel of the maps is zero, as on a map tapered by the pipeline's cosine taper."""
    for imap in maps:
        border = np.concatenate([imap[0], imap[-1], imap[:, 0], imap[:, -1]])
        if np.any(np.abs(border) > 1e-6 * max(float(np.max(np.abs(imap))), 1e-30)):
            return False
    return True


def predict_with_info(
    network: Any,
    q: Any,
    u: Any,
    *,
    batch_size: int = 16,
    stride: int | None = None,
    min_weight: float = DEFAULT_MIN_WEIGHT,
    pixel_arcmin: float | None = None,
    taper_deg: float | None = None,
    progress: bool = False,
) -> PredictionResult:
    """:func:`predict_maps`, with the geometry, the tiles and the notes."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ApplyError(f"--batch-size must be at least 1 (got {batch_size!r})")
    if not min_weight > 0:
        raise ApplyError(f"--min-weight must be positive (got {min_weight!r})")
    stokes = _stokes_inputs(network)
    geometry = training_geometry(network, pixel_arcmin, taper_deg)
    check_pair(q, u)
    notes = list(geometry.notes) + check_pixels(q.shape, q.wcs, geometry)
    frame = {name: to_network_frame(q if s == "q" else u, q.wcs, geometry) for name, s in stokes.items()}
    taper = geometry.taper()
    units = {field_name(array): field_unit(array) for array in network.outputs.values()}
    n = geometry.npix
    if q.shape == (n, n):
        grid, tiles, used_stride, used_min = TileGrid.build((n, n), n, n), 1, None, None
        if geometry.taper_pixels and not _is_tapered(list(frame.values())):
            notes.append(f"the {n}x{n} maps are not tapered (border pixels not zero): applying the training taper")
            frame = {name: imap * taper.astype(np.float32) for name, imap in frame.items()}
        _, fields = next(predict_tiles(network, frame, grid, np.ones((n, n)), batch_size))
        fields = {name: pred[0] for name, pred in fields.items()}
        coverage = taper.astype(np.float32)
    else:
        grid = TileGrid.build(q.shape, n, stride)
        stitcher = Stitcher(grid, taper, list(units))
        for starts, predictions in predict_tiles(network, frame, grid, taper, batch_size, progress):
            stitcher.add(starts, predictions)
        fields, coverage = stitcher.result(min_weight)
        if np.any(coverage[n:-n, n:-n] < 1):
            notes.append(f"with --stride {grid.stride} some pixels far from the border are covered by less than "
                         f"--min-weight {min_weight:g} (see the coverage map); use a smaller --stride")
        tiles, used_stride, used_min = len(grid), grid.stride, float(min_weight)
    from pixell import enmap

    fields["coverage"] = coverage
    out = {name: enmap.enmap(from_network_frame(a, q.wcs, geometry), q.wcs.deepcopy()) for name, a in fields.items()}
    return PredictionResult(out, units, geometry, tiles, used_stride, used_min, notes)


def predict_maps(
    network: Any,
    q: Any,
    u: Any,
    *,
    batch_size: int = 16,
    stride: int | None = None,
    min_weight: float = DEFAULT_MIN_WEIGHT,
    pixel_arcmin: float | None = None,
    taper_deg: float | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Apply a trained network to observed Q and U maps of any size; return its outputs as enmaps.

    Parameters
    ----------
    network : training.evaluation.network.Network
        From :func:`training.evaluation.network.load_network`; its inputs must be ``q_len`` and ``u_len``.
    q, u : pixell.enmap.ndmap
        Observed Stokes Q and U in μK, (ny, nx) on one geometry whose pixels are the training maps' (both sides at
        least the network's input). A map of exactly the network's size is predicted directly.
    batch_size : int
        Tiles per forward pass (memory scales with it, not with the map).
    stride : int, optional
        Pixels between neighbouring tiles (default: half the network's map side).
    min_weight : float
        Coverage threshold c: the stitched maps are Σ w·p / max(Σ w², c) (see :mod:`training.apply.tiling`).
    pixel_arcmin, taper_deg : float, optional
        The training maps' pixel size (arcmin) and taper width (degrees) for network folders without
        ``data_settings.json`` (default: the paper's 2.34375′ and 1.5°, with a note).
    progress : bool
        Show a progress bar for many tiles.

    Returns
    -------
    dict of str to pixell.enmap.ndmap
        Field name (``kappa`` and ``tau`` dimensionless, ``e_unl`` in μK, ``alpha`` in radians when the network has
        it) → map with the input's WCS; ``coverage``: each map is coverage × the field (1 where it is recovered,
        falling to 0 at the map's border; on the direct path, the training taper).

    Raises
    ------
    ApplyError
        Bad input: Q and U on different pixels, NaN or inf pixels, a pixel size other than the training maps', a map
        smaller than the network's input, bad options.
    """
    return predict_with_info(network, q, u, batch_size=batch_size, stride=stride, min_weight=min_weight,
                             pixel_arcmin=pixel_arcmin, taper_deg=taper_deg, progress=progress).maps
