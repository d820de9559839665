"""Settings of a simulation run: one typed dataclass whose defaults are the paper's."""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path

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
#: File name of the pipeline's default output (``data_path`` of the repository's ``config.json`` names it too).
DEFAULT_OUTPUT_NAME = "map_sets32.npz"


def default_output_path() -> Path:
    """Absolute path of the file that ``datapipeline.py`` writes when ``--output`` is not given.

    In a source checkout (the folder above the ``datapipe`` package holds ``config.json`` and ``training/``), it is
    ``<repository root>/datapipe/map_sets32.npz``, the ``data_path`` of that ``config.json``, whatever the working
    directory. In an installed package, it is ``map_sets32.npz`` in the working directory.

    Returns
    -------
    pathlib.Path
        Absolute path of the default output file.
    """
    package = Path(__file__).resolve().parent
    root = package.parent
    if (root / "config.json").is_file() and (root / "training").is_dir():
        return package / DEFAULT_OUTPUT_NAME
    return Path.cwd().resolve() / DEFAULT_OUTPUT_NAME


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
        """Raise :class:`PipelineError` naming the first bad setting."""
        if not isinstance(self.npix, int) or self.npix < 4:
            raise PipelineError(f"npix must be an integer >= 4 (got {self.npix!r}); e.g. --npix 128")
        if self.npix % 2:
            raise PipelineError(f"npix must be even (got {self.npix}); e.g. --npix 128")
        if not self.pixel_arcmin > 0:
            raise PipelineError(f"pixel size must be positive (got {self.pixel_arcmin!r} arcmin); e.g. "
                                "--pixel-arcmin 2.34375")
        if not self.taper_deg >= 0:
            raise PipelineError(f"taper width must be >= 0 degrees (got {self.taper_deg!r}); e.g. --taper-deg 1.5")
        if 2 * self.taper_pixels > self.npix:
            raise PipelineError(f"taper of {self.taper_deg} deg ({self.taper_pixels} pixels per edge) is wider than "
                                f"half the {self.npix}-pixel map; use a smaller --taper-deg")
        if not self.beam_arcmin >= 0:
            raise PipelineError(f"beam FWHM must be >= 0 arcmin (got {self.beam_arcmin!r})")
        if not self.noise_uk_arcmin >= 0:
            raise PipelineError(f"noise level must be >= 0 uK-arcmin (got {self.noise_uk_arcmin!r})")
        if not 0.0 <= self.null_fraction <= 1.0:
            raise PipelineError(f"null fraction must lie in [0, 1] (got {self.null_fraction!r}); e.g. "
                                "--null-fraction 0.2")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise PipelineError(f"seed must be a non-negative integer (got {self.seed!r})")
        if not self.maps:
            raise PipelineError("no maps requested; name at least one with --maps (valid: " + ", ".join(ALL_MAPS) + ")")
        for name in self.maps:
            if name not in ALL_MAPS:
                close = difflib.get_close_matches(name, ALL_MAPS, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise PipelineError(f"unknown map name {name!r}{hint}; valid names: " + ", ".join(ALL_MAPS))
        if len(set(self.maps)) != len(self.maps):
            raise PipelineError(f"map names repeated in {','.join(self.maps)}; name each array once")
        if not 0 <= self.lmin_cmb < self.lmax_cmb:
            raise PipelineError(f"CMB multipole range [{self.lmin_cmb}, {self.lmax_cmb}] is empty")
        if not isinstance(self.qe_mean_field_sims, int) or self.qe_mean_field_sims < 0:
            raise PipelineError(f"QE mean-field simulations must be an integer >= 0 (got {self.qe_mean_field_sims!r})")
        if not 0 <= self.lmin_rec < self.lmax_rec:
            raise PipelineError(f"reconstruction multipole range [{self.lmin_rec}, {self.lmax_rec}] is empty")
        self._validate_rotation()

    def _validate_rotation(self) -> None:
        amplitude = self.alpha_amplitude_deg
        if isinstance(amplitude, bool) or not isinstance(amplitude, int | float) or not 0 <= amplitude < math.inf:
            raise PipelineError(f"rotation amplitude must be a finite number of degrees >= 0 (got {amplitude!r}); "
                                "e.g. --alpha-amplitude-deg 0.12 (the second paper), 0 for no rotation")
        if not self.null_fields:
            raise PipelineError("no null fields given; name at least one of " + ", ".join(NULL_FIELDS)
                                + " with --null-fields (or set --null-fraction 0 for no null map sets)")
        for name in self.null_fields:
            if name not in NULL_FIELDS:
                close = difflib.get_close_matches(str(name), NULL_FIELDS, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise PipelineError(f"unknown null field {name!r}{hint}; valid: " + ", ".join(NULL_FIELDS))
        if len(set(self.null_fields)) != len(self.null_fields):
            raise PipelineError(f"null fields repeated in {','.join(self.null_fields)}; name each field once")
        if self.null_fields == ("alpha",) and amplitude == 0 and self.null_fraction > 0:
            raise PipelineError("--null-fields alpha switches off a rotation that is already off; give "
                                "--alpha-amplitude-deg (e.g. 0.12) or keep the default null fields tau,kappa")

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
