"""Classic CAMB text output (``*_scalCls.dat``, ``*_lensedCls.dat``, ``*_lenspotentialCls.dat``) and how closely
our cached spectra follow it.

The documented agreements with the paper's own CAMB run (the Planck 2013 files distributed with quicklens) are
:data:`AGREEMENTS`; ``python -m datapipe.spectra --compare DIR`` prints them for any folder of such files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from datapipe.spectra import Spectra


@dataclass(frozen=True)
class Agreement:
    """How closely one of our spectra follows a CAMB text file over a multipole range.

    Attributes
    ----------
    name : str
        Spectrum (a :class:`Spectra` field: ``pp``, ``tt``, ``ee``, ``lensed_bb``).
    label : str
        Its name for people (``C_L^phiphi``, ``unlensed TT``, …).
    lmin, lmax : int
        Multipoles compared (``lmax`` is lowered to the end of the file if the file stops earlier).
    worst : float
        Largest fractional difference ``|ours / theirs - 1|`` over the range.
    worst_ell : int
        Where it occurs.
    tolerance : float
        The agreement claimed in the documentation.
    """

    name: str
    label: str
    lmin: int
    lmax: int
    worst: float
    worst_ell: int
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.worst < self.tolerance

    def describe(self) -> str:
        """One line for the ``--compare`` report."""
        verdict = "ok" if self.ok else "FAILS"
        return (f"{self.label:12s} {self.lmin:>5d} <= L <= {self.lmax:<5d} max |ours/theirs - 1| = {self.worst:.4f} "
                f"at L = {self.worst_ell:<5d} (documented: < {self.tolerance:g}, {verdict})")


#: The documented agreements with the paper's CAMB files: spectrum → (label, lmin, lmax, tolerance). Unlensed TT/EE
#: stop at ℓ = 5000: further out, in the damping tail (D_ℓ below 10⁻⁴ of the peak), the 2013 files are numerically
#: noisy (their EE even turns negative near ℓ = 7200). Lensed BB starts at ℓ = 10: at ℓ = 2–3 it is 10⁻⁶ μK² and
#: the two CAMB versions differ by a few per cent; the maps' lowest multipole is ≈ 72 anyway.
AGREEMENTS: dict[str, tuple[str, int, int, float]] = {
    "pp": ("C_L^phiphi", 2, 6000, 0.01),
    "tt": ("unlensed TT", 2, 5000, 0.005),
    "ee": ("unlensed EE", 2, 5000, 0.005),
    "lensed_bb": ("lensed BB", 10, 6000, 0.01),
}

#: Where each spectrum sits in a classic CAMB output set: (file pattern, column, ℓ-factor of the tabulated value).
_CAMB_COLUMNS: dict[str, tuple[str, int, str]] = {
    "tt": ("*_scalCls.dat", 1, "dl"),
    "ee": ("*_scalCls.dat", 2, "dl"),
    "lensed_tt": ("*_lensedCls.dat", 1, "dl"),
    "lensed_ee": ("*_lensedCls.dat", 2, "dl"),
    "lensed_bb": ("*_lensedCls.dat", 3, "dl"),
    "pp": ("*_lenspotentialCls.dat", 5, "pp"),
}


def read_camb_column(directory: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One spectrum from a classic CAMB output set, as raw C_ℓ.

    Parameters
    ----------
    directory : Path
        Folder with ``*_scalCls.dat``, ``*_lensedCls.dat`` and ``*_lenspotentialCls.dat`` (CAMB's text output,
        e.g. the Planck 2013 files distributed with quicklens), which tabulate ℓ(ℓ+1)C_ℓ/2π in μK² and
        [L(L+1)]²C_L^φφ/2π.
    name : str
        One of ``tt``, ``ee``, ``lensed_tt``, ``lensed_ee``, ``lensed_bb``, ``pp``.

    Returns
    -------
    ell : ndarray
        Integer multipoles of the file.
    cl : ndarray
        Raw C_ℓ (μK² for the CMB, dimensionless for φφ).

    Raises
    ------
    FileNotFoundError
        If the folder has no file of the needed kind.
    """
    pattern, column, factor = _CAMB_COLUMNS[name]
    matches = sorted(Path(directory).glob(pattern))
    if not matches:
        raise FileNotFoundError(f"no {pattern} file in {directory} (expected a classic CAMB output set)")
    table = np.loadtxt(matches[0], ndmin=2)
    ell = table[:, 0].astype(int)
    ellf = ell.astype(float)
    scale = ellf * (ellf + 1.0) / (2.0 * np.pi) if factor == "dl" else (ellf * (ellf + 1.0)) ** 2 / (2.0 * np.pi)
    return ell, table[:, column] / scale


def compare_with_camb_files(directory: Path, spectra: Spectra,
                            agreements: dict[str, tuple[str, int, int, float]] | None = None) -> list[Agreement]:
    """Largest fractional differences between our spectra and a classic CAMB output set.

    Parameters
    ----------
    directory : Path
        Folder with CAMB text files (see :func:`read_camb_column`).
    spectra : Spectra
        Our spectra.
    agreements : dict, optional
        Spectrum → (label, lmin, lmax, tolerance); default :data:`AGREEMENTS`.

    Returns
    -------
    list of Agreement
        One per spectrum, in the order of ``agreements``.

    Raises
    ------
    FileNotFoundError
        A needed file is missing.
    ValueError
        A file covers none of a requested multipole range, or holds a zero where we divide.
    """
    agreements = agreements or AGREEMENTS
    patterns = dict.fromkeys(_CAMB_COLUMNS[name][0] for name in agreements)
    missing = [pattern for pattern in patterns if not any(Path(directory).glob(pattern))]
    if missing:
        raise FileNotFoundError(f"no {', '.join(missing)} file in {directory} (expected a classic CAMB output set)")
    out = []
    for name, (label, lmin, lmax, tolerance) in agreements.items():
        ell, theirs = read_camb_column(directory, name)
        lmax = int(min(lmax, ell.max(), spectra.lmax))
        sel = (ell >= lmin) & (ell <= lmax)
        if not np.any(sel):
            raise ValueError(f"the CAMB files in {directory} have no multipoles in {lmin}..{lmax} for {label}")
        if np.any(theirs[sel] == 0):
            raise ValueError(f"the CAMB files in {directory} hold zeros for {label} in {lmin}..{lmax}")
        ratio = getattr(spectra, name)[ell[sel]] / theirs[sel] - 1.0
        i = int(np.argmax(np.abs(ratio)))
        out.append(Agreement(name=name, label=label, lmin=lmin, lmax=lmax, worst=float(abs(ratio[i])),
                             worst_ell=int(ell[sel][i]), tolerance=tolerance))
    return out
