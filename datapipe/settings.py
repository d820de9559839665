"""Settings of a simulation run: one typed dataclass whose defaults are the paper's."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path

from datapipe.errors import PipelineError

#: Every array the pipeline can write (float32, shape (nsims, npix, npix)).
ALL_MAPS: tuple[str, ...] = (
    "t_len", "q_len", "u_len", "e_len", "b_len",
    "t_unl", "q_unl", "u_unl", "e_unl", "b_unl",
    "tru_kappa", "tru_phi", "tru_tau",
    "rec_kappa", "rec_phi", "wf_rec_kappa", "rec_tau", "wf_rec_tau",
)
#: Arrays written when ``--maps`` is not given (the network's inputs, targets and the QE baselines).
DEFAULT_MAPS: tuple[str, ...] = ("q_len", "u_len", "e_unl", "tru_kappa", "tru_tau", "rec_kappa", "rec_tau")
#: Arrays produced by the quadratic estimators.
QE_MAPS: tuple[str, ...] = ("rec_kappa", "rec_phi", "wf_rec_kappa", "rec_tau", "wf_rec_tau")
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
        Fraction of map sets with τ = 0 and κ = 0, drawn at random per map set.
    seed : int
        Master seed; map set ``i`` uses randomness derived from ``(seed, i)`` only.
    maps : tuple of str
        Arrays to compute and save (see :data:`ALL_MAPS`).
    tau : bool
        Modulate by the patchy-τ field (False: τ = 0 everywhere, ``--no-tau``).
    lensing : bool
        Lens by κ (False: κ = 0 everywhere, ``--no-lensing``).
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
    lmin_cmb: int = 300
    lmax_cmb: int = 3500
    lmin_rec: int = 20
    lmax_rec: int = 3500
    qe_mean_field_sims: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "maps", tuple(self.maps))
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

    @property
    def taper_pixels(self) -> int:
        """Taper width per edge in pixels, ``int(taper width / pixel size)`` as in the paper (1.5° → 38)."""
        return int(self.taper_deg * 60.0 / self.pixel_arcmin)

    @property
    def needs_qe(self) -> bool:
        """Whether any requested array comes from the quadratic estimators."""
        return any(name in QE_MAPS for name in self.maps)

    def to_dict(self) -> dict:
        """Plain-JSON view of the settings."""
        out = dataclasses.asdict(self)
        out["maps"] = list(self.maps)
        return out

    def replace(self, **changes) -> SimulationSettings:
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)
