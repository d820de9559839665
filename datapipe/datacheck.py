"""Does a simulated data set have the right statistics? Binned spectra of its arrays against their expectation.

:func:`check_data_file` reads a pipeline output (``.npz`` or ``.h5``), measures the binned power spectrum of each
array over its non-null map sets, corrected for the taper, and sets it beside the spectrum the settings imply
(:mod:`datapipe.expected`). It also counts the null map sets against the requested fraction. ``python -m
datapipe.check`` prints the table and draws the figure (:mod:`datapipe.check_figure`).
"""

from __future__ import annotations

import dataclasses
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from datapipe.errors import PipelineError
from datapipe.settings import ALL_MAPS, SimulationSettings

WINDOW_FILE = "window_info.npz"
#: Units of the arrays' maps (their spectra are in units² × sr).
UNITS = {**{name: "μK" for name in ALL_MAPS if name[0] in "tqueb" and not name.startswith("tru")},
         "tru_alpha": "rad", "rec_alpha": "rad", "wf_rec_alpha": "rad"}


@dataclasses.dataclass
class ArrayCheck:
    """Measured and expected binned spectrum of one array (one value per bin with Fourier modes).

    Attributes
    ----------
    name, units, description : str
        Array name, units of its maps, and what the expectation is.
    ell, bin_lo, bin_hi : ndarray
        Mean multipole and limits of each bin.
    measured, error : ndarray
        Mean binned power over the map sets, divided by the taper moment :math:`w_k`, and its standard error.
    expected : ndarray or None
        Expected power in the same bins (None where the pipeline has no model, e.g. ``b_unl``).
    taper_moment : int
        k of :math:`w_k` (2 for maps tapered once, 4 for QE maps).
    nmaps : int
        Map sets measured.
    """

    name: str
    units: str
    description: str
    ell: np.ndarray
    bin_lo: np.ndarray
    bin_hi: np.ndarray
    measured: np.ndarray
    error: np.ndarray
    expected: np.ndarray | None
    taper_moment: int
    nmaps: int

    @property
    def ratio(self) -> np.ndarray:
        """measured / expected per bin (NaN where nothing is expected)."""
        if self.expected is None:
            return np.full_like(self.measured, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.expected > 0, self.measured / self.expected, np.nan)

    @property
    def mean_ratio(self) -> float:
        """Mean of :attr:`ratio` over the bins with an expectation."""
        ratio = self.ratio[np.isfinite(self.ratio)]
        return float(np.mean(ratio)) if ratio.size else math.nan

    @property
    def chi2_per_bin(self) -> float:
        """:math:`\\chi^2/N_{bins}` of measured against expected with the standard errors (neighbouring bins are
        correlated by the taper, so this is indicative)."""
        if self.expected is None:
            return math.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = ((self.measured - self.expected) / self.error) ** 2
        terms = terms[np.isfinite(terms) & (self.expected > 0)]
        return float(np.mean(terms)) if terms.size else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "units": self.units, "description": self.description, "nmaps": self.nmaps,
            "taper_moment": self.taper_moment, "ell": self.ell.tolist(), "measured": self.measured.tolist(),
            "error": self.error.tolist(), "expected": None if self.expected is None else self.expected.tolist(),
            "mean_ratio": self.mean_ratio, "chi2_per_bin": self.chi2_per_bin,
        }


@dataclasses.dataclass
class DataCheck:
    """The data check of one file.

    Attributes
    ----------
    path : pathlib.Path
        The data file.
    settings : SimulationSettings
        Its settings (the paper's defaults, with a note, when it has no metadata).
    nmaps : int
        Map sets read.
    null : ndarray
        Boolean flag per map set read: null (τ = κ = 0).
    w2 : float
        Mean of the squared taper; ``w2_source`` says where the taper came from.
    arrays : dict of str to ArrayCheck
        The checked arrays.
    notes : list of str
        Remarks (arrays skipped, assumptions).
    """

    path: Path
    settings: SimulationSettings
    nmaps: int
    null: np.ndarray
    w2: float
    w2_source: str
    arrays: dict[str, ArrayCheck]
    notes: list[str]

    @property
    def null_fraction(self) -> tuple[float, float]:
        """Measured fraction of null map sets and its binomial standard error for the requested fraction."""
        p = self.settings.null_fraction
        return float(np.mean(self.null)) if self.nmaps else math.nan, math.sqrt(p * (1 - p) / max(self.nmaps, 1))

    def table(self) -> str:
        """The printed summary: one row per array."""
        found, sigma = self.null_fraction
        lines = [
            f"data check of {self.path.name}: {self.nmaps} map sets ({int(self.null.sum())} null); null fraction "
            f"{found:.3f} (requested {self.settings.null_fraction:g} ± {sigma:.3f}); w2 = {self.w2:.4f} "
            f"({self.w2_source})",
            f"{'array':13s} {'maps':>5s} {'bins':>5s} {'taper':>5s} {'<meas/exp>':>11s} {'chi2/bin':>9s}  expected",
        ]
        for a in self.arrays.values():
            lines.append(f"{a.name:13s} {a.nmaps:5d} {a.ell.size:5d} {'w' + str(a.taper_moment):>5s} "
                         f"{a.mean_ratio:11.3f} {a.chi2_per_bin:9.2f}  {a.description}")
        return "\n".join(lines)


def _npy_header(handle: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from the header of an ``.npy`` stream."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(handle)
    return np.lib.format.read_array_header_2_0(handle)


def _array_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    if path.suffix.lower() == ".npz":
        with zipfile.ZipFile(path) as zf:
            shapes = {}
            for member in zf.namelist():
                with zf.open(member) as handle:
                    shapes[member.removesuffix(".npy")] = _npy_header(handle)[0]
            return shapes
    import h5py

    with h5py.File(path, "r") as f:
        return {name: f[name].shape for name in f if isinstance(f[name], h5py.Dataset)}


def read_maps(path: Path, name: str, count: int) -> np.ndarray:
    """The first ``count`` maps of one array as float64 (an ``.npz`` member is read only up to them)."""
    if path.suffix.lower() == ".npz":
        with zipfile.ZipFile(path) as zf, zf.open(f"{name}.npy") as handle:
            shape, fortran, dtype = _npy_header(handle)
            if fortran:
                with np.load(path) as f:
                    return np.asarray(f[name][:count], dtype=np.float64)
            per_map = math.prod(shape[1:])
            n = min(count, shape[0])
            data = np.frombuffer(handle.read(n * per_map * dtype.itemsize), dtype=dtype)
            return data.reshape((n, *shape[1:])).astype(np.float64)
    import h5py

    with h5py.File(path, "r") as f:
        return np.asarray(f[name][:count], dtype=np.float64)


def _settings(path: Path, npix: int, notes: list[str]) -> tuple[SimulationSettings, dict[str, Any]]:
    from datapipe.writer import read_metadata

    try:
        metadata = read_metadata(path)
    except (OSError, KeyError, ValueError, TypeError):
        metadata = {}
    given = metadata.get("settings") if isinstance(metadata, dict) else None
    if not isinstance(given, dict):
        try:
            settings = SimulationSettings(npix=npix)
        except PipelineError:  # maps too small for the paper's 1.5° taper
            settings = SimulationSettings(npix=npix, taper_deg=0.0)
        notes.append(f"{path.name} has no metadata: assuming the paper's settings with {npix}x{npix} maps and a "
                     f"{settings.taper_deg:g}° taper")
        return settings, {}
    known = {f.name for f in dataclasses.fields(SimulationSettings)}
    return SimulationSettings(**{k: (tuple(v) if k == "maps" else v) for k, v in given.items() if k in known}), metadata


def _taper(path: Path, settings: SimulationSettings, metadata: dict[str, Any]) -> tuple[np.ndarray, str]:
    from datapipe.taper import cosine_taper

    window = path.parent / WINDOW_FILE
    if window.is_file():
        with np.load(window) as f:
            taper = np.asarray(f["taper"], dtype=float)
        w2 = metadata.get("w2")
        if taper.shape == (settings.npix,) * 2 and (w2 is None or abs(np.mean(taper**2) - w2) <= 1e-6 * w2):
            return taper, WINDOW_FILE
    return cosine_taper(settings.npix, settings.taper_pixels)[::-1], "settings"


def check_data_file(path: str | Path, max_maps: int | None = 256, edges: np.ndarray | None = None,
                    delta_l: float = 150.0) -> DataCheck:
    """Measure the binned spectra of a pipeline output's arrays and set them beside their expectation.

    Parameters
    ----------
    path : str or pathlib.Path
        ``.npz`` or ``.h5`` file written by ``datapipe/datapipeline.py``.
    max_maps : int, optional
        Read only the first ``max_maps`` map sets (None: all).
    edges : ndarray, optional
        Multipole bin edges (default: :func:`default_edges` with ``delta_l``).
    delta_l : float
        Bin width of the default edges.

    Returns
    -------
    DataCheck

    Raises
    ------
    PipelineError
        If the file is missing or unreadable, holds no map arrays, or ``max_maps`` < 2.
    """
    path = Path(path)
    if not path.is_file():
        problem = "is a folder" if path.is_dir() else "does not exist"
        raise PipelineError(f"data file {str(path)!r} {problem}; pass a file written by datapipe/datapipeline.py")
    if max_maps is not None and max_maps < 2:
        raise PipelineError(f"--max-maps must be at least 2 (got {max_maps}): errors come from the scatter")
    try:
        shapes = _array_shapes(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise PipelineError(f"cannot read {str(path)!r}: {exc}") from None
    maps = {k: v for k, v in shapes.items() if len(v) == 3 and v[1] == v[2] and v[0] >= 1}
    if not maps:
        raise PipelineError(f"{str(path)!r} holds no (nsims, npix, npix) map arrays; is it a pipeline output?")
    notes: list[str] = []
    npix = next(iter(maps.values()))[1]
    settings, metadata = _settings(path, npix, notes)
    taper, source = _taper(path, settings, metadata)
    nmaps = min(v[0] for v in maps.values())
    nmaps = nmaps if max_maps is None else min(nmaps, max_maps)
    if nmaps < 2:
        raise PipelineError(f"{str(path)!r} holds {nmaps} map set; the check needs at least 2")
    null = _null_flags(path, settings, metadata, nmaps, maps)
    names = [n for n in ALL_MAPS if n in maps]
    edges = default_edges(settings, delta_l) if edges is None else np.asarray(edges, dtype=float)
    arrays = _measure(path, names, settings, taper, ~null, edges, notes)
    notes += [f"{name}: not a pipeline array; skipped" for name in maps if name not in ALL_MAPS]
    return DataCheck(path, settings, nmaps, null, float(np.mean(taper**2)), source, arrays, notes)


def _null_flags(path: Path, settings: SimulationSettings, metadata: dict[str, Any], nmaps: int,
                shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    """Null map sets: drawn again from the seed (as the simulator does) when the file has its settings, else the
    map sets whose truth arrays are all zero."""
    from datapipe.fields import map_set_rng

    if metadata:
        return np.array([map_set_rng(settings.seed, i).random() < settings.null_fraction for i in range(nmaps)])
    truths = [n for n in ("tru_kappa", "tru_tau", "tru_phi") if n in shapes]
    if not truths:
        return np.zeros(nmaps, dtype=bool)
    zero = [~np.any(read_maps(path, n, nmaps).reshape(nmaps, -1) != 0, axis=1) for n in truths]
    return np.logical_and.reduce(zero)


def default_edges(settings: SimulationSettings, delta_l: float = 150.0) -> np.ndarray:
    """Bins of width ≈ ``delta_l`` from L = 20 to the smaller of 3500 and the grid's Nyquist multipole."""
    from datapipe.powspec import linear_bins

    nyquist = 180.0 * 60.0 / settings.pixel_arcmin
    return linear_bins(20, min(3500.0, nyquist), delta_l)


def _measure(path: Path, names: list[str], settings: SimulationSettings, taper: np.ndarray, live: np.ndarray,
             edges: np.ndarray, notes: list[str]) -> dict[str, ArrayCheck]:
    from datapipe.expected import ExpectedSpectra, tapered_power
    from datapipe.powspec import bin_fourier, binned_power
    from datapipe.spectra import load_spectra

    expected = ExpectedSpectra(settings, load_spectra())
    grid = expected.grid
    out = {}
    for name in names:
        maps = read_maps(path, name, live.size)[live]
        if maps.shape[0] < 2 or not np.any(maps):
            notes.append(f"{name}: fewer than 2 non-null map sets with non-zero maps; skipped")
            continue
        model = expected.expectation(name)
        w_k = float(np.mean(taper**model.taper_moment))
        spectrum = binned_power(grid, maps, edges=edges, w2=w_k)
        keep = spectrum.nmodes > 0
        theory = None
        if model.power is not None:
            # The taper couples neighbouring modes (it smooths acoustic peaks): convolve, then divide by w_k too.
            window = taper ** (model.taper_moment // 2)
            theory = bin_fourier(grid, tapered_power(model.power, window) / w_k, edges)[keep]
        out[name] = ArrayCheck(name, UNITS.get(name, "dimensionless"), model.description, spectrum.ell[keep],
                               edges[:-1][keep], edges[1:][keep], spectrum.mean[keep], spectrum.error[keep], theory,
                               model.taper_moment, maps.shape[0])
    return out
