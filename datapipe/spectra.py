"""Power spectra of the simulation: CAMB CMB and lensing spectra (cached) and the patchy-τ spectrum.

The CMB spectra are computed once with CAMB at the Planck 2013 + WP + highL best fit used by
Guzman & Meyers (2021) and cached in ``datapipe/data/camb_spectra_planck2013.npz``, so that a run does
not pay for CAMB. Regenerate the cache with::

    python -m datapipe.spectra --regenerate

All CMB spectra are raw :math:`C_\\ell` (no :math:`\\ell(\\ell+1)/2\\pi` factor) in μK²; lensing spectra are
dimensionless.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.interpolate import interp1d

from datapipe.camb_files import compare_with_camb_files

#: Cosmological parameters of the Planck 2013 + WP + highL best fit (the paper's simulations).
PLANCK2013_PARAMS: dict[str, float] = {
    "H0": 67.94,
    "ombh2": 0.022199,
    "omch2": 0.11847,
    "omnuh2": 0.0006449,
    "omk": 0.0,
    "tau": 0.0943,
    "ns": 0.9624,
    "As": 2.208061336e-9,
    "r": 0.0,
    "TCMB": 2.7255,
    "YHe": 0.24725,
}

#: How CAMB is run, after the paper's ``params.ini``: three degenerate massive neutrinos with all of N_eff
#: (``massive_neutrinos = 3.046``, ``nu_mass_eigenstates = 1``), Takahashi halofit, ``k_eta_max_scalar = 1e5``;
#: ``lmax_margin`` multipoles are computed beyond the cached range so that the lensed spectra hold up to its end.
CAMB_SETTINGS: dict[str, float | int | str] = {
    "num_massive_neutrinos": 3,
    "nnu": 3.046,
    "halofit_version": "takahashi",
    "max_eta_k": 1.0e5,
    "lmax_margin": 2500,
}

#: Largest multipole stored in the cache. Covers the corner of the Fourier grid of maps with pixels
#: down to ~1.6 arcmin; beyond it all spectra are taken as zero.
CACHE_LMAX = 10000

CACHE_PATH = Path(__file__).resolve().parent / "data" / "camb_spectra_planck2013.npz"

#: The paper's patchy-reionization spectrum, tabulated as L(L+1) C_L^ττ / 2π.
TAU_TABLE_L = np.array(
    [2, 70, 170, 270, 370, 470, 570, 670, 770, 870, 970, 1070, 1170, 1270, 1370, 1470, 1570, 1670, 1770,
     1870, 1970, 2500, 3000, 4000, 4500, 5000, 6000, 7000, 8000, 9000, 10000],
    dtype=float,
)
TAU_TABLE_DL = np.array(
    [2.0e-10, 1.3e-6, 4.9e-6, 7.2e-6, 8.5e-6, 8.9e-6, 8.6e-6, 8.2e-6, 7.9e-6, 7.4e-6, 6.8e-6, 6.1e-6,
     5.7e-6, 5.1e-6, 4.8e-6, 4.3e-6, 4.0e-6, 3.7e-6, 3.4e-6, 3.0e-6, 2.8e-6, 1.8e-6, 1.2e-6, 5e-7, 3.3e-7,
     2.2e-7, 9e-8, 4e-8, 1.7e-8, 7e-9, 3e-9],
)
TAU_LMIN, TAU_LMAX = 2, 9000

SPECTRUM_NAMES = ("tt", "ee", "te", "lensed_tt", "lensed_ee", "lensed_bb", "lensed_te", "pp", "kk")


@dataclass(frozen=True)
class Spectra:
    """Theory spectra sampled at integer multipoles ``ell = 0 .. lmax``.

    Attributes
    ----------
    ell : ndarray
        Multipoles 0..lmax.
    tt, ee, te : ndarray
        Unlensed (primordial) CMB spectra in μK² (BB = 0 since r = 0).
    lensed_tt, lensed_ee, lensed_bb, lensed_te : ndarray
        Lensed CMB spectra in μK² (used for the quadratic-estimator filters).
    pp : ndarray
        Lensing-potential spectrum :math:`C_L^{\\phi\\phi}`.
    kk : ndarray
        Convergence spectrum :math:`C_L^{\\kappa\\kappa} = [L(L+1)]^2 C_L^{\\phi\\phi}/4`.
    tau : ndarray
        Patchy optical-depth spectrum :math:`C_L^{\\tau\\tau}` (see :func:`tau_spectrum`).
    """

    ell: np.ndarray
    tt: np.ndarray
    ee: np.ndarray
    te: np.ndarray
    lensed_tt: np.ndarray
    lensed_ee: np.ndarray
    lensed_bb: np.ndarray
    lensed_te: np.ndarray
    pp: np.ndarray
    kk: np.ndarray
    tau: np.ndarray

    @property
    def lmax(self) -> int:
        return int(self.ell[-1])


def tau_spectrum(ell: np.ndarray) -> np.ndarray:
    """Patchy-reionization optical-depth power spectrum of the paper.

    The tabulated :math:`L(L+1)C_L^{\\tau\\tau}/2\\pi` is interpolated quadratically in L (and extrapolated
    beyond the table) over 2 ≤ L ≤ 9000, then divided by :math:`L(L+1)/2\\pi`; it is zero elsewhere.

    Parameters
    ----------
    ell : array_like
        Multipoles (any shape, need not be integers).

    Returns
    -------
    cl : ndarray
        :math:`C_L^{\\tau\\tau}` (dimensionless), same shape as ``ell``.
    """
    ell = np.asarray(ell, dtype=float)
    interp = interp1d(TAU_TABLE_L, TAU_TABLE_DL, kind="quadratic", fill_value="extrapolate", assume_sorted=True)
    inside = (ell >= TAU_LMIN) & (ell <= TAU_LMAX)
    cl = np.zeros_like(ell)
    li = ell[inside]
    cl[inside] = np.clip(interp(li), 0.0, None) * 2.0 * np.pi / (li * (li + 1.0))
    return cl


def camb_parameters(lmax: int = CACHE_LMAX):
    """CAMB parameters reproducing the paper's ``params.ini`` (Planck 2013 + WP + highL best fit).

    Three degenerate massive neutrinos carry all of :math:`N_{\\rm eff} = 3.046` and
    :math:`\\Omega_\\nu h^2 = 0.0006449` (``massive_neutrinos = 3.046``, ``nu_mass_eigenstates = 1``,
    ``massless_neutrinos = 0``); the lensing potential uses Takahashi halofit on the non-linear matter power
    (``do_nonlinear = 2``), and the source integration runs up to :math:`k\\eta_0 = 10^5`
    (``k_eta_max_scalar``), which is what keeps :math:`C_L^{\\phi\\phi}` right at L of several thousand.

    Parameters
    ----------
    lmax : int
        Largest multipole wanted; CAMB computes :data:`CAMB_SETTINGS` ``["lmax_margin"]`` more so that the lensed
        spectra are accurate up to ``lmax``.

    Returns
    -------
    camb.CAMBparams
    """
    import camb

    p, c = PLANCK2013_PARAMS, CAMB_SETTINGS
    pars = camb.CAMBparams()
    # standard_neutrino_neff = nnu puts all of N_eff into the massive eigenstate (no massless remainder).
    pars.set_cosmology(H0=p["H0"], ombh2=p["ombh2"], omch2=p["omch2"], mnu=None, omnuh2_active=p["omnuh2"],
                       num_massive_neutrinos=c["num_massive_neutrinos"], nnu=c["nnu"], standard_neutrino_neff=c["nnu"],
                       neutrino_hierarchy="degenerate", omk=p["omk"], tau=p["tau"], TCMB=p["TCMB"], YHe=p["YHe"])
    pars.InitPower.set_params(As=p["As"], ns=p["ns"], r=p["r"])
    pars.set_for_lmax(lmax + c["lmax_margin"], max_eta_k=c["max_eta_k"], lens_potential_accuracy=1)
    pars.NonLinearModel.set_params(halofit_version=c["halofit_version"])
    pars.WantTensors = False
    return pars


def compute_camb_spectra(lmax: int = CACHE_LMAX) -> dict[str, np.ndarray]:
    """Run CAMB at the paper's cosmology and settings (:func:`camb_parameters`).

    Parameters
    ----------
    lmax : int
        Largest multipole returned.

    Returns
    -------
    spectra : dict
        ``ell`` and the arrays named in :data:`SPECTRUM_NAMES` (raw C_ℓ, μK² for the CMB).
    """
    import camb

    results = camb.get_results(camb_parameters(lmax))
    unlensed = results.get_unlensed_scalar_cls(CMB_unit="muK", raw_cl=True, lmax=lmax)
    lensed = results.get_lensed_scalar_cls(CMB_unit="muK", raw_cl=True, lmax=lmax)
    potential = results.get_lens_potential_cls(raw_cl=True, lmax=lmax)
    ell = np.arange(lmax + 1, dtype=float)
    pp = potential[:, 0]
    return {
        "ell": ell,
        "tt": unlensed[:, 0], "ee": unlensed[:, 1], "te": unlensed[:, 3],
        "lensed_tt": lensed[:, 0], "lensed_ee": lensed[:, 1], "lensed_bb": lensed[:, 2], "lensed_te": lensed[:, 3],
        "pp": pp, "kk": (ell * (ell + 1.0)) ** 2 * pp / 4.0,
        "camb_version": np.array(camb.__version__),
    }


def write_cache(path: Path = CACHE_PATH, lmax: int = CACHE_LMAX) -> Path:
    """Compute the CAMB spectra and write them (atomically) to ``path``."""
    spectra = compute_camb_spectra(lmax)
    spectra["params"] = np.array(json.dumps(PLANCK2013_PARAMS))
    spectra["camb_settings"] = np.array(json.dumps(CAMB_SETTINGS))
    path.parent.mkdir(parents=True, exist_ok=True)
    from datapipe.diskio import atomic_output

    with atomic_output(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **spectra)
    load_spectra.cache_clear()
    return path


@functools.lru_cache(maxsize=4)
def load_spectra(path: Path = CACHE_PATH) -> Spectra:
    """Load the cached CMB spectra and attach the patchy-τ spectrum.

    Parameters
    ----------
    path : Path
        The cache file (default: the one shipped with the package).

    Returns
    -------
    Spectra
    """
    if not Path(path).exists():
        raise FileNotFoundError(f"spectra cache {path} is missing; regenerate it with 'python -m datapipe.spectra "
                                "--regenerate'")
    with np.load(path) as f:
        arrays = {name: np.asarray(f[name], dtype=float) for name in ("ell",) + SPECTRUM_NAMES}
    return Spectra(tau=tau_spectrum(arrays["ell"]), **arrays)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m datapipe.spectra",
                                     description="Cached CAMB spectra of the ResUNet-CMB simulations.")
    parser.add_argument("--regenerate", action="store_true",
                        help="recompute the cache with CAMB (about 45 s on a 2-core CPU)")
    parser.add_argument("--compare", type=Path, metavar="DIR",
                        help="compare the cache with classic CAMB text files in DIR (*_scalCls.dat, *_lensedCls.dat, "
                             "*_lenspotentialCls.dat): prints the largest fractional difference of C_L^phiphi, "
                             "unlensed TT/EE and lensed BB over the documented multipole ranges; exit status 1 if "
                             "one is outside its documented agreement")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.compare is not None and not args.compare.is_dir():
        print(f"{parser.prog}: error: --compare {args.compare} is not a folder; give the folder holding the CAMB "
              "*_Cls.dat files", file=sys.stderr)
        return 2
    if args.regenerate:
        start = time.perf_counter()
        path = write_cache()
        print(f"wrote {path} in {time.perf_counter() - start:.0f} s")
    if args.compare is not None:
        try:
            agreements = compare_with_camb_files(args.compare, load_spectra())
        except (OSError, ValueError) as exc:
            print(f"{parser.prog}: error: {exc}", file=sys.stderr)
            return 2
        print(f"cached spectra vs the CAMB files in {args.compare}:")
        for agreement in agreements:
            print("  " + agreement.describe())
        if not all(a.ok for a in agreements):
            return 1
    if not (args.regenerate or args.compare):
        parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
