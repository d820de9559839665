"""The training maps' geometry, the checks of a user's map against it, and the network's frame.

A network learned on square flat-sky maps of ``npix`` pixels of ``pixel_arcmin``, tapered at each edge over
``taper_deg`` by the pipeline's cosine taper, and saved flipped up–down (row 0 at the top of the sky image). The
pipeline's maps lie on pixell's CAR geometry with both axes increasing (``cdelt > 0``); a user's enmap may run the
other way along right ascension (pixell's usual ``cdelt[0] < 0``). Stokes Q and U are defined against the sky's
directions, so turning a map into the network's frame only reorders pixels, never changes their values:
:func:`to_network_frame` reverses the axes whose direction differs from the training geometry's and then flips the
map up–down like the pipeline; :func:`from_network_frame` undoes both.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from training.apply.errors import ApplyError

#: The paper's pixel size (arcmin) and taper width (degrees), assumed for network folders that record neither.
PAPER_PIXEL_ARCMIN = 2.34375
PAPER_TAPER_DEG = 1.5
#: Relative difference of pixel sizes accepted as equal (0.1%: 0.14″ on 2.34′ pixels).
PIXEL_RTOL = 1e-3
#: A note is printed when the RA pixels at the map's farthest declination are narrower than this fraction of cdelt.
FLAT_SKY_RATIO = 0.99


@dataclasses.dataclass(frozen=True)
class TrainingGeometry:
    """The geometry of a network's training maps.

    Attributes
    ----------
    npix : int
        Map side in pixels (the network's input; one tile).
    pixel_arcmin : float
        Pixel size in arcmin.
    taper_deg : float
        Width of the cosine taper at each edge, in degrees (0: none).
    notes : tuple of str
        Assumptions made because the network folder did not record a value.
    """

    npix: int
    pixel_arcmin: float
    taper_deg: float
    notes: tuple[str, ...] = ()

    @property
    def taper_pixels(self) -> int:
        """Taper width per edge in pixels, ``int(taper_deg / pixel size)`` as the pipeline computes it."""
        return int(self.taper_deg * 60.0 / self.pixel_arcmin)

    def taper(self) -> np.ndarray:
        """The (npix, npix) float64 taper of the training maps (symmetric, so the up–down flip leaves it alone)."""
        from datapipe.taper import cosine_taper

        return cosine_taper(self.npix, self.taper_pixels)


def _recorded_or_option(
    recorded: Any, option: float | None, name: str, option_name: str, paper: float, unit: str, folder: str
) -> tuple[float, str | None]:
    """One setting: the recorded value (an option must agree with it), else the option, else the paper's."""
    if recorded is not None:
        if option is not None and not math.isclose(float(option), float(recorded), rel_tol=1e-6):
            raise ApplyError(
                f"the network in {folder} was trained with {name} {float(recorded):g}{unit} (data_settings.json), "
                f"not {option_name} {option:g}; leave {option_name} out"
            )
        return float(recorded), None
    if option is not None:
        return float(option), None
    note = f"{folder} does not record the training maps' {name}: assuming the paper's {paper:g}{unit} " \
        f"(set {option_name})"
    return paper, note


def training_geometry(
    network: Any, pixel_arcmin: float | None = None, taper_deg: float | None = None
) -> TrainingGeometry:
    """The geometry of a network's training maps, from its ``data_settings.json``, the options or the paper.

    Parameters
    ----------
    network : training.evaluation.network.Network
        The loaded network (``imagesize``, ``data_settings``, ``folder``).
    pixel_arcmin : float, optional
        Pixel size in arcmin, for folders that do not record it (``--pixel-arcmin``).
    taper_deg : float, optional
        Taper width in degrees, for folders that do not record it (``--taper-deg``).

    Returns
    -------
    TrainingGeometry

    Raises
    ------
    ApplyError
        If an option contradicts the recorded value, a value is not positive, or the map side is unknown.
    """
    recorded = network.data_settings or {}
    folder = str(network.folder)
    npix = network.imagesize or recorded.get("npix")
    if not npix:
        raise ApplyError(f"the network in {folder} takes maps of any size and records no training map size; "
                         "add npix to its data_settings.json")
    if network.imagesize and recorded.get("npix") not in (None, network.imagesize):
        raise ApplyError(f"the network in {folder} takes {network.imagesize}x{network.imagesize} maps but its "
                         f"data_settings.json says npix {recorded['npix']}; fix or delete data_settings.json")
    pixel, pixel_note = _recorded_or_option(recorded.get("pixel_arcmin"), pixel_arcmin, "pixel size",
                                            "--pixel-arcmin", PAPER_PIXEL_ARCMIN, "'", folder)
    taper, taper_note = _recorded_or_option(recorded.get("taper_deg"), taper_deg, "taper width", "--taper-deg",
                                            PAPER_TAPER_DEG, " deg", folder)
    if not pixel > 0:
        raise ApplyError(f"pixel size must be positive (got {pixel:g} arcmin)")
    if not taper >= 0:
        raise ApplyError(f"taper width must be >= 0 degrees (got {taper:g})")
    geometry = TrainingGeometry(int(npix), pixel, taper, tuple(n for n in (pixel_note, taper_note) if n))
    if 2 * geometry.taper_pixels > geometry.npix:
        raise ApplyError(f"a {taper:g} deg taper ({geometry.taper_pixels} pixels per edge) does not fit the network's "
                         f"{geometry.npix}-pixel maps; check --taper-deg")
    return geometry


def training_wcs(geometry: TrainingGeometry, npix: int | None = None) -> Any:
    """The pipeline's CAR WCS for maps of ``npix`` (default: the network's) pixels of the training size."""
    from datapipe.fourier import FlatSkyGrid

    return FlatSkyGrid(npix or geometry.npix, geometry.pixel_arcmin).wcs


def pixel_arcmin_of(wcs: Any) -> tuple[float, float]:
    """Pixel size of a map, (along declination, along RA) in arcmin, from the WCS's ``cdelt``."""
    cdelt = np.abs(np.asarray(wcs.wcs.cdelt, dtype=float)) * 60.0
    return float(cdelt[1]), float(cdelt[0])


def check_pixels(shape: tuple[int, ...], wcs: Any, geometry: TrainingGeometry, what: str = "the maps") -> list[str]:
    """Check a map's pixel size against the training maps'; return notes (flat-sky distortion far from the equator).

    Raises
    ------
    ApplyError
        Naming both pixel sizes when they differ by more than :data:`PIXEL_RTOL`.
    """
    dy, dx = pixel_arcmin_of(wcs)
    want = geometry.pixel_arcmin
    if not (math.isclose(dy, want, rel_tol=PIXEL_RTOL) and math.isclose(dx, want, rel_tol=PIXEL_RTOL)):
        size = f"{dy:g}'" if math.isclose(dx, dy, rel_tol=PIXEL_RTOL) else f"{dy:g}' x {dx:g}'"
        raise ApplyError(f"{what} have {size} pixels but the network was trained on {want:g}' pixels; regrid them "
                         f"to {want:g}' (e.g. pixell enmap.project onto a geometry with res={want:g}*utils.arcmin)")
    notes = []
    if wcs.wcs.ctype[0].endswith("CAR"):
        from pixell import enmap, utils

        box = enmap.box(shape, wcs) / utils.degree
        dec = float(np.max(np.abs(box[:, 0])))
        if math.cos(math.radians(dec)) < FLAT_SKY_RATIO:
            notes.append(f"{what} reach declination {dec:.1f} deg, where CAR pixels are "
                         f"{100 * (1 - math.cos(math.radians(dec))):.1f}% narrower in RA than the network's; "
                         "the flat-sky network sees stretched scales there")
    return notes


def _axis_flips(wcs: Any, geometry: TrainingGeometry) -> tuple[bool, bool]:
    """Whether the (row, column) axes of a map run opposite to the training geometry's."""
    reference = np.sign(np.asarray(training_wcs(geometry).wcs.cdelt, dtype=float))
    signs = np.sign(np.asarray(wcs.wcs.cdelt, dtype=float))
    return bool(signs[1] != reference[1]), bool(signs[0] != reference[0])


def to_network_frame(imap: np.ndarray, wcs: Any, geometry: TrainingGeometry) -> np.ndarray:
    """A map (…, ny, nx) in pixell's orientation, reordered like the network's training maps (float32 copy)."""
    flip_rows, flip_cols = _axis_flips(wcs, geometry)
    out = np.asarray(imap)
    out = out[..., :, ::-1] if flip_cols else out
    out = out if flip_rows else out[..., ::-1, :]  # the pipeline's up–down flip, unless the map already runs that way
    return np.ascontiguousarray(out, dtype=np.float32)


def from_network_frame(arr: np.ndarray, wcs: Any, geometry: TrainingGeometry) -> np.ndarray:
    """Undo :func:`to_network_frame`: a map in the network's frame back in the orientation of ``wcs``."""
    return to_network_frame(arr, wcs, geometry)  # each step is a reversal of an axis: its own inverse
