"""Settings of a simulation run: one typed dataclass whose defaults are the paper's."""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from datapipe.errors import PipelineError

#: Every array the pipeline can write (float32, shape (nsims, npix, npix)).
ALL_MAPS: tuple[str, ...] = (
    "t_len", "q_len", "u_len", "e_len", "b_len",
    "t_unl", "q_unl", "u_unl", "e_unl", "b_unl",
    "tru_kappa", "tru_phi", "tru_tau", "tru_alpha",
    "rec_kappa", "rec_phi", "wf_rec_kappa", "rec_tau", "wf_rec_tau", "rec_alpha", "wf_rec_alpha",
)
#: Arrays written when ``--maps`` is not given (the network's inputs, targets and the QE baselines).
DEFAULT_MAPS: tuple[str, ...] = ("q_len", "u_len", "e_unl", "tru_kappa", "tru_tau", "rec_kappa", "rec_tau")
#: Arrays produced by the quadratic estimators.
QE_MAPS: tuple[str, ...] = ("rec_kappa", "rec_phi", "wf_rec_kappa", "rec_tau", "wf_rec_tau", "rec_alpha",
                            "wf_rec_alpha")
#: Arrays added to :data:`DEFAULT_MAPS` by the command line when the rotation field is on.
ROTATION_DEFAULT_MAPS: tuple[str, ...] = ("tru_alpha", "rec_alpha")
#: Fields a null map set can switch off: patchy τ, lensing κ, rotation α. The first paper's null map sets have
#: τ = κ = 0 (the default); the second paper's have α = 0 only.
NULL_FIELDS: tuple[str, ...] = ("tau", "kappa", "alpha")
#: Smallest map side in pixels: at the paper's 2.34375′ pixels, 8 pixels is the smallest map with the
#: :data:`MIN_QE_MODES` Fourier modes per axis that the quadratic estimators need in ℓ = 300–3500.
MIN_NPIX = 8
#: Largest map side in pixels (one float32 map is then 256 MB).
MAX_NPIX = 8192
#: Largest patch side in degrees: the maps are flat-sky patches.
MAX_SIDE_DEG = 60.0
#: Fourier modes per axis the quadratic estimators need inside their CMB range ``lmin_cmb``–``lmax_cmb``: with
#: fewer, their normalization is ill-conditioned and the reconstructions are zero, NaN or absurdly large.
MIN_QE_MODES = 3
#: Smallest beam transfer B_ℓ the quadratic estimators deconvolve (at ``lmax_cmb``): below it the float32 maps'
#: rounding errors, divided by B_ℓ, would swamp the signal.
QE_BEAM_FLOOR = 1e-4
#: White-noise levels above this (μK-arcmin) leave no CMB in the maps (a units mistake, e.g. nK for μK).
MAX_NOISE_UK_ARCMIN = 1e4


@dataclass(frozen=True)
class SimulationSettings:
    """Physical and numerical settings of the simulated map sets.

    Attributes
    ----------
    npix : int
        Pixels per side of the square flat-sky map (paper: 128).
    pixel_arcmin : float
        Pixel size in arcmin (paper: 2.34375, i.e. a 5°×5° map).
    taper_deg : float
        Width of the cosine taper at each edge in degrees (paper: 1.5); 0 disables the taper.
    beam_arcmin : float
        FWHM of the Gaussian beam in arcmin (0: no beam).
    noise_uk_arcmin : float
        White-noise level of temperature in μK-arcmin; polarization gets √2 times that.
    null_fraction : float
        Fraction of null map sets, drawn at random per map set; the fields in ``null_fields`` are zero in them.
    seed : int
        Master seed; map set ``i`` uses randomness derived from ``(seed, i)`` only.
    maps : tuple of str
        Arrays to compute and save (see :data:`ALL_MAPS`).
    tau : bool
        Modulate by the patchy-τ field (False: τ = 0 everywhere, ``--no-tau``).
    lensing : bool
        Lens by κ (False: κ = 0 everywhere, ``--no-lensing``).
    alpha_amplitude_deg : float
        Amplitude A of the cosmic polarization rotation field α in **degrees**,
        :math:`L(L+1)C_L^{\\alpha\\alpha}/2\\pi = A^2` (Guzman & Meyers, arXiv:2109.09715: 0.12); 0 (the default)
        switches the rotation off and leaves every other array unchanged. α maps are stored in radians.
    null_fields : tuple of str
        Fields switched off in the null map sets (:data:`NULL_FIELDS`): ``("tau", "kappa")`` as in the first
        paper (the default), ``("alpha",)`` as in the second.
    lmin_cmb, lmax_cmb : int
        CMB multipoles used by the quadratic estimators.
    lmin_rec, lmax_rec : int
        Multipoles of the reconstructed fields.
    qe_mean_field_sims : int
        Simulations (an independent seed stream) averaged into the QE mean field that is subtracted from
        every reconstruction; the taper acts as a modulation, to which the τ QE responds strongly (0: none).
    """

    npix: int = 128
    pixel_arcmin: float = 2.34375
    taper_deg: float = 1.5
    beam_arcmin: float = 0.0
    noise_uk_arcmin: float = 0.0
    null_fraction: float = 0.2
    seed: int = 0
    maps: tuple[str, ...] = field(default=DEFAULT_MAPS)
    tau: bool = True
    lensing: bool = True
    alpha_amplitude_deg: float = 0.0
    null_fields: tuple[str, ...] = field(default=("tau", "kappa"))
    lmin_cmb: int = 300
    lmax_cmb: int = 3500
    lmin_rec: int = 20
    lmax_rec: int = 3500
    qe_mean_field_sims: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "maps", tuple(self.maps))
        fields = self.null_fields
        if isinstance(fields, str):
            fields = [name.strip() for name in fields.split(",") if name.strip()]
        if not isinstance(fields, list | tuple) or not all(isinstance(name, str) for name in fields):
            raise PipelineError(f"null fields must be names of {', '.join(NULL_FIELDS)} (got {fields!r}); e.g. "
                                "--null-fields alpha")
        object.__setattr__(self, "null_fields", tuple(fields))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`PipelineError` naming the first bad setting.

        The checks are :data:`NUMERIC_RULES` (each numeric setting finite and in range), the map names, then
        :data:`CROSS_CHECKS` (conditions between settings).
        """
        for rule in NUMERIC_RULES:
            rule.check(getattr(self, rule.field))
        for flag in ("tau", "lensing"):
            if not isinstance(getattr(self, flag), bool):
                raise PipelineError(f"{flag} must be True or False (got {getattr(self, flag)!r})")
        if not self.maps:
            raise PipelineError("no maps requested; name at least one with --maps (valid: " + ", ".join(ALL_MAPS) + ")")
        for name in self.maps:
            if name not in ALL_MAPS:
                close = difflib.get_close_matches(name, ALL_MAPS, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise PipelineError(f"unknown map name {name!r}{hint}; valid names: " + ", ".join(ALL_MAPS))
        if len(set(self.maps)) != len(self.maps):
            raise PipelineError(f"map names repeated in {','.join(self.maps)}; name each array once")
        for check in CROSS_CHECKS:
            check(self)

    @property
    def taper_pixels(self) -> int:
        """Taper width per edge in pixels, ``int(taper width / pixel size)`` as in the paper (1.5° → 38)."""
        return int(self.taper_deg * 60.0 / self.pixel_arcmin)

    @property
    def rotation(self) -> bool:
        """Whether the polarization is rotated by a field α (a non-zero amplitude)."""
        return self.alpha_amplitude_deg > 0

    @property
    def needs_qe(self) -> bool:
        """Whether any requested array comes from the quadratic estimators."""
        return any(name in QE_MAPS for name in self.maps)

    def to_dict(self) -> dict:
        """Plain-JSON view of the settings."""
        out = dataclasses.asdict(self)
        out["maps"] = list(self.maps)
        out["null_fields"] = list(self.null_fields)
        return out

    def replace(self, **changes) -> SimulationSettings:
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class NumberRule:
    """The allowed values of one numeric setting: a finite ``int`` or number in ``[low, high]``.

    Attributes
    ----------
    field : str
        Attribute of :class:`SimulationSettings` (or run option) checked.
    label : str
        How the error message names it.
    integer : bool
        Only Python ``int`` values (not ``bool``) are accepted; else any finite int or float.
    low, high : float
        Inclusive bounds (``low`` is excluded when ``low_open``).
    units : str
        Units printed after the bounds.
    example : str
        A valid command-line setting, printed as the fix.
    why : str
        The reason for the bounds, when it is not obvious.
    low_open : bool
        Exclude ``low`` itself (e.g. "positive").
    """

    field: str
    label: str
    integer: bool
    low: float
    high: float
    units: str = ""
    example: str = ""
    why: str = ""
    low_open: bool = False

    def allowed(self) -> str:
        """The allowed range in words, e.g. ``a number in (0, 60] arcmin``."""
        kind = "an integer" if self.integer else "a number"
        bracket = "(" if self.low_open else "["
        units = f" {self.units}" if self.units else ""
        low, high = (int(self.low), int(self.high)) if self.integer else (f"{self.low:g}", f"{self.high:g}")
        return f"{kind} in {bracket}{low}, {high}]{units}"

    def check(self, value: object) -> None:
        """Raise :class:`PipelineError` unless ``value`` is allowed."""
        number_types = (int,) if self.integer else (int, float)
        ok = isinstance(value, number_types) and not isinstance(value, bool)
        ok = ok and math.isfinite(value) and value <= self.high  # type: ignore[arg-type]
        ok = ok and (value > self.low if self.low_open else value >= self.low)  # type: ignore[operator]
        if not ok:
            why = f"; {self.why}" if self.why else ""
            fix = f"; e.g. {self.example}" if self.example else ""
            raise PipelineError(f"{self.label} must be {self.allowed()} (got {value!r}){why}{fix}")


#: Per-field bounds of the numeric settings, checked in this order by :meth:`SimulationSettings.validate`.
#: A new numeric setting gets one line here (its cross-field conditions, if any, go to :data:`CROSS_CHECKS`).
NUMERIC_RULES: tuple[NumberRule, ...] = (
    NumberRule("npix", "npix", True, MIN_NPIX, MAX_NPIX, example="--npix 128",
               why=f"{MIN_NPIX}x{MIN_NPIX} is the smallest map the quadratic estimators handle"),
    NumberRule("pixel_arcmin", "pixel size", False, 0.0, 60.0, "arcmin", "--pixel-arcmin 2.34375", low_open=True),
    NumberRule("taper_deg", "taper width", False, 0.0, MAX_SIDE_DEG / 2, "degrees", "--taper-deg 1.5"),
    NumberRule("beam_arcmin", "beam FWHM", False, 0.0, 60.0 * MAX_SIDE_DEG, "arcmin", "--beam-arcmin 1.4"),
    NumberRule("noise_uk_arcmin", "noise level", False, 0.0, MAX_NOISE_UK_ARCMIN, "uK-arcmin",
               "--noise-uk-arcmin 1", why="CMB experiments have 1-100 uK-arcmin"),
    NumberRule("null_fraction", "null fraction", False, 0.0, 1.0, "", "--null-fraction 0.2"),
    NumberRule("seed", "seed", True, 0, 2**63 - 1, "", "--seed 0"),
    NumberRule("lmin_cmb", "lmin_cmb", True, 0, 100000),
    NumberRule("lmax_cmb", "lmax_cmb", True, 1, 100000),
    NumberRule("lmin_rec", "lmin_rec", True, 0, 100000),
    NumberRule("lmax_rec", "lmax_rec", True, 1, 100000),
    NumberRule("alpha_amplitude_deg", "rotation amplitude", False, 0.0, 45.0, "degrees",
               "--alpha-amplitude-deg 0.12 (the second paper), 0 for no rotation"),
    NumberRule("qe_mean_field_sims", "QE mean-field simulations", True, 0, 100000, "", "--qe-mean-field-sims 64"),
)


def axis_modes(settings: SimulationSettings, lmin: float, lmax: float) -> int:
    """Number of Fourier modes ``k ΔL`` (k = 1 … npix/2) along one axis of the map with ``lmin ≤ k ΔL ≤ lmax``.

    ``ΔL = 2π / (npix × pixel size)`` is the fundamental multipole of the periodic flat-sky patch.
    """
    delta_l = 2.0 * math.pi / (settings.npix * settings.pixel_arcmin * math.pi / 10800.0)
    return sum(1 for k in range(1, settings.npix // 2 + 1) if lmin <= k * delta_l <= lmax)


def beam_at(ell: float, fwhm_arcmin: float) -> float:
    """Gaussian beam transfer ``B_ℓ = exp(−ℓ(ℓ+1)σ²/2)`` with ``σ = FWHM / √(8 ln 2)`` (1 for no beam)."""
    sigma = fwhm_arcmin * math.pi / 10800.0 / math.sqrt(8.0 * math.log(2.0))
    return math.exp(-0.5 * ell * (ell + 1.0) * sigma**2)


def _check_even(s: SimulationSettings) -> None:
    if s.npix % 2:
        raise PipelineError(f"npix must be even (got {s.npix}); e.g. --npix 128")


def _check_patch_side(s: SimulationSettings) -> None:
    side = s.npix * s.pixel_arcmin / 60.0
    if side > MAX_SIDE_DEG:
        raise PipelineError(f"the map is {side:g} deg wide ({s.npix} pixels of {s.pixel_arcmin:g} arcmin); flat-sky "
                            f"patches must be at most {MAX_SIDE_DEG:g} deg wide: lower --npix or --pixel-arcmin")


def _check_taper(s: SimulationSettings) -> None:
    # The window is 1 only at distances >= width from the edge, i.e. it needs 2 x width < npix.
    if 2 * s.taper_pixels >= s.npix:
        limit = (s.npix // 2) * s.pixel_arcmin / 60.0
        raise PipelineError(f"taper of {s.taper_deg:g} deg ({s.taper_pixels} pixels per edge) is wider than half the "
                            f"{s.npix}-pixel map and leaves no untapered centre; use --taper-deg below {limit:.4g}")


def _check_multipoles(s: SimulationSettings) -> None:
    if not s.lmin_cmb < s.lmax_cmb:
        raise PipelineError(f"CMB multipole range [{s.lmin_cmb}, {s.lmax_cmb}] is empty")
    if not s.lmin_rec < s.lmax_rec:
        raise PipelineError(f"reconstruction multipole range [{s.lmin_rec}, {s.lmax_rec}] is empty")


def _check_beam(s: SimulationSettings) -> None:
    side_arcmin = s.npix * s.pixel_arcmin
    if s.beam_arcmin >= side_arcmin:
        raise PipelineError(f"beam FWHM of {s.beam_arcmin:g} arcmin is as wide as the {side_arcmin:g}-arcmin map; "
                            "give --beam-arcmin in arcmin, e.g. --beam-arcmin 1.4")
    if s.needs_qe and beam_at(s.lmax_cmb, s.beam_arcmin) < QE_BEAM_FLOOR:
        widest = math.sqrt(-2.0 * math.log(QE_BEAM_FLOOR) / (s.lmax_cmb * (s.lmax_cmb + 1.0)))
        widest *= math.sqrt(8.0 * math.log(2.0)) * 10800.0 / math.pi
        raise PipelineError(f"a beam of {s.beam_arcmin:g} arcmin erases the quadratic estimators' CMB range (B_l < "
                            f"{QE_BEAM_FLOOR:g} at l = {s.lmax_cmb}); use --beam-arcmin {widest:.1f} or less, or "
                            "--no-qe")


def _check_qe_modes(s: SimulationSettings) -> None:
    if not s.needs_qe:
        return
    modes = axis_modes(s, s.lmin_cmb, s.lmax_cmb)
    if modes < MIN_QE_MODES:
        delta_l = 21600.0 / (s.npix * s.pixel_arcmin)
        raise PipelineError(
            f"a {s.npix}x{s.npix} map of {s.pixel_arcmin:g}-arcmin pixels has {modes} Fourier mode(s) per axis in the "
            f"quadratic estimators' CMB range l = {s.lmin_cmb}-{s.lmax_cmb} (spacing {delta_l:.0f}, highest "
            f"{delta_l * (s.npix // 2):.0f}); they need {MIN_QE_MODES}: change --npix or --pixel-arcmin (at "
            f"2.34375 arcmin, --npix {MIN_NPIX} or more), or use --no-qe"
        )


def _check_null_fields(s: SimulationSettings) -> None:
    if not s.null_fields:
        raise PipelineError("no null fields given; name at least one of " + ", ".join(NULL_FIELDS)
                            + " with --null-fields (or set --null-fraction 0 for no null map sets)")
    for name in s.null_fields:
        if name not in NULL_FIELDS:
            close = difflib.get_close_matches(str(name), NULL_FIELDS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise PipelineError(f"unknown null field {name!r}{hint}; valid: " + ", ".join(NULL_FIELDS))
    if len(set(s.null_fields)) != len(s.null_fields):
        raise PipelineError(f"null fields repeated in {','.join(s.null_fields)}; name each field once")
    if s.null_fields == ("alpha",) and s.alpha_amplitude_deg == 0 and s.null_fraction > 0:
        raise PipelineError("--null-fields alpha switches off a rotation that is already off; give "
                            "--alpha-amplitude-deg (e.g. 0.12) or keep the default null fields tau,kappa")


#: Conditions between settings, checked in this order after :data:`NUMERIC_RULES` and the map names.
CROSS_CHECKS: tuple[Callable[[SimulationSettings], None], ...] = (
    _check_even,
    _check_patch_side,
    _check_taper,
    _check_multipoles,
    _check_beam,
    _check_qe_modes,
    _check_null_fields,
)


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: Worker processes allowed per usable CPU core (more only add memory: the simulation is CPU-bound).
WORKERS_PER_CORE = 4
#: Largest number of map sets in one run, and per chunk.
MAX_NSIMS = 10**9
MAX_CHUNK_SIZE = 4096


def run_option_rules() -> tuple[NumberRule, ...]:
    """Bounds of the run options that are not settings: ``--nsims``, ``--workers``, ``--chunk-size``."""
    cores = usable_cores()
    return (
        NumberRule("nsims", "--nsims", True, 1, MAX_NSIMS, example="--nsims 10000"),
        NumberRule("workers", "--workers", True, 1, WORKERS_PER_CORE * cores,
                   why=f"at most {WORKERS_PER_CORE} per CPU core ({cores} here)", example="--workers 1"),
        NumberRule("chunk_size", "--chunk-size", True, 1, MAX_CHUNK_SIZE, example="--chunk-size 16"),
    )


def check_run_options(nsims: object, workers: object, chunk_size: object) -> None:
    """Validate the options of a run besides its settings (raises :class:`PipelineError`).

    Parameters
    ----------
    nsims : int
        Number of map sets, 1 … :data:`MAX_NSIMS`.
    workers : int
        Worker processes, 1 … :data:`WORKERS_PER_CORE` × usable CPU cores.
    chunk_size : int
        Map sets per chunk, 1 … :data:`MAX_CHUNK_SIZE`.
    """
    values = {"nsims": nsims, "workers": workers, "chunk_size": chunk_size}
    for rule in run_option_rules():
        rule.check(values[rule.field])
