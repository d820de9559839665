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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.interpolate import interp1d

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


def compute_camb_spectra(lmax: int = CACHE_LMAX) -> dict[str, np.ndarray]:
    """Run CAMB at the paper's cosmology.

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

    p = PLANCK2013_PARAMS
    # One massive neutrino: find the mass that gives the paper's omnuh2 with CAMB's own conversion.
    probe = camb.CAMBparams()
    probe.set_cosmology(H0=p["H0"], ombh2=p["ombh2"], omch2=p["omch2"], mnu=0.06, num_massive_neutrinos=1,
                        omk=p["omk"], TCMB=p["TCMB"], YHe=p["YHe"])
    mnu = 0.06 * p["omnuh2"] / probe.omnuh2
    pars = camb.set_params(
        H0=p["H0"], ombh2=p["ombh2"], omch2=p["omch2"], mnu=mnu, num_massive_neutrinos=1, omk=p["omk"],
        tau=p["tau"], ns=p["ns"], As=p["As"], r=p["r"], TCMB=p["TCMB"], YHe=p["YHe"],
        lmax=lmax + 500, lens_potential_accuracy=2, halofit_version="takahashi", WantTensors=False,
    )
    results = camb.get_results(pars)
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
        "mnu_ev": np.array(mnu),
    }


def write_cache(path: Path = CACHE_PATH, lmax: int = CACHE_LMAX) -> Path:
    """Compute the CAMB spectra and write them (atomically) to ``path``."""
    spectra = compute_camb_spectra(lmax)
    spectra["params"] = np.array(json.dumps(PLANCK2013_PARAMS))
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


def compare_with_camb_files(directory: Path, spectra: Spectra, lmin: int = 300, lmax: int = 3500) -> dict[str, float]:
    """Largest fractional difference between our spectra and CAMB text files (``*_scalCls.dat`` etc.).

    Parameters
    ----------
    directory : Path
        Folder with a classic CAMB output set (``*_scalCls.dat``, ``*_lensedCls.dat``,
        ``*_lenspotentialCls.dat``), e.g. the Planck 2013 files distributed with quicklens.
    spectra : Spectra
        Our spectra.
    lmin, lmax : int
        Multipole range compared.

    Returns
    -------
    dict
        Maximum of ``|ours/theirs - 1|`` over the range, per spectrum (TT, EE, TE-free spectra only).
    """
    directory = Path(directory)

    def read(pattern: str) -> np.ndarray:
        matches = sorted(directory.glob(pattern))
        if not matches:
            raise FileNotFoundError(f"no {pattern} in {directory}")
        return np.loadtxt(matches[0])

    scal, lensed, pot = read("*_scalCls.dat"), read("*_lensedCls.dat"), read("*_lenspotentialCls.dat")
    out = {}

    def worst(table: np.ndarray, col: int, ours: np.ndarray, factor) -> float:
        ell = table[:, 0].astype(int)
        sel = (ell >= lmin) & (ell <= lmax)
        ell = ell[sel]
        return float(np.max(np.abs(ours[ell] * factor(ell) / table[sel, col] - 1.0)))

    dl = lambda ell: ell * (ell + 1.0) / (2 * np.pi)  # noqa: E731
    out["tt"] = worst(scal, 1, spectra.tt, dl)
    out["ee"] = worst(scal, 2, spectra.ee, dl)
    out["lensed_ee"] = worst(lensed, 2, spectra.lensed_ee, dl)
    out["lensed_bb"] = worst(lensed, 3, spectra.lensed_bb, dl)
    out["pp"] = worst(pot, 5, spectra.pp, lambda ell: (ell * (ell + 1.0)) ** 2 / (2 * np.pi))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cached CAMB spectra of the ResUNet-CMB simulations.")
    parser.add_argument("--regenerate", action="store_true", help="recompute the cache with CAMB (~1 min)")
    parser.add_argument("--compare", type=Path, metavar="DIR",
                        help="compare the cache with classic CAMB text files in DIR (prints max fractional errors)")
    args = parser.parse_args(argv)
    if args.regenerate:
        print(f"wrote {write_cache()}")
    if args.compare:
        for name, err in compare_with_camb_files(args.compare, load_spectra()).items():
            print(f"{name:10s} max |ratio - 1| over 300 <= l <= 3500: {err:.4f}")
    if not (args.regenerate or args.compare):
        parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
