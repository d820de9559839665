"""Reconstruction quality in multipole bins: spectra, cross-correlation coefficient, residual and noise power.

For a true field t and a reconstruction p (the network's prediction or a QE map), over a stack of map sets and
with the taper's w2 correction:

* auto-spectra :math:`C_L^{tt}`, :math:`C_L^{pp}` and the cross-spectrum :math:`C_L^{pt}`,
* the cross-correlation coefficient :math:`r_L = C_L^{pt} / \\sqrt{C_L^{pp} C_L^{tt}}`,
* the residual power :math:`C_L^{(t-p)(t-p)}`,
* the effective reconstruction noise :math:`N_L = C_L^{tt}(1/r_L^2 - 1)`, the noise of an unbiased estimator
  with the same correlation (for a Wiener-filtered reconstruction :math:`\\hat p = W(t + n)` one has
  :math:`r^2 = C/(C + N)`).

Error bars come from the scatter over map sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datapipe.fourier import FlatSkyGrid
from datapipe.powspec import binned_power, linear_bins

#: Default bins: ΔL = 100 from L = 20 to 3500 (the QE's reconstruction range).
DEFAULT_EDGES = linear_bins(20, 3500, 100)


@dataclass(frozen=True)
class ReconstructionStats:
    """Binned comparison of reconstructions with the truth (all arrays have one value per bin).

    Attributes
    ----------
    ell : ndarray
        Mean multipole of each bin.
    bin_lo, bin_hi : ndarray
        Bin limits (``bin_lo <= |ℓ| < bin_hi``); bins without Fourier modes on the grid are dropped.
    nmodes : ndarray
        Fourier modes per bin (per map).
    cl_true, cl_rec, cl_cross, cl_residual : ndarray
        Mean spectra over map sets (truth, reconstruction, cross, residual truth − reconstruction).
    r : ndarray
        Cross-correlation coefficient from the mean spectra.
    r_err : ndarray
        Its standard error, from the scatter of per-map coefficients over map sets.
    noise : ndarray
        Effective reconstruction noise ``cl_true (1/r² − 1)`` (inf where r ≤ 0).
    nmaps : int
        Map sets used.
    """

    ell: np.ndarray
    bin_lo: np.ndarray
    bin_hi: np.ndarray
    nmodes: np.ndarray
    cl_true: np.ndarray
    cl_rec: np.ndarray
    cl_cross: np.ndarray
    cl_residual: np.ndarray
    r: np.ndarray
    r_err: np.ndarray
    noise: np.ndarray
    nmaps: int

    def mean_r(self, lmin: float, lmax: float) -> float:
        """Mean of r over the bins whose mean multipole lies in [lmin, lmax]."""
        sel = (self.ell >= lmin) & (self.ell <= lmax)
        return float(np.mean(self.r[sel])) if sel.any() else float("nan")

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready lists."""
        keys = (
            "ell",
            "bin_lo",
            "bin_hi",
            "nmodes",
            "cl_true",
            "cl_rec",
            "cl_cross",
            "cl_residual",
            "r",
            "r_err",
            "noise",
        )
        return {key: np.asarray(getattr(self, key)).tolist() for key in keys}


def reconstruction_stats(
    truth: np.ndarray, rec: np.ndarray, pixel_arcmin: float, w2: float = 1.0, edges: np.ndarray | None = None
) -> ReconstructionStats:
    """Compare a stack of reconstructions with the true maps in multipole bins.

    Parameters
    ----------
    truth, rec : ndarray
        (nmaps, n, n) true and reconstructed maps, same units (both tapered, as the pipeline saves them).
    pixel_arcmin : float
        Pixel size in arcmin.
    w2 : float
        Mean of the squared taper (``window_info.npz``); spectra are divided by it.
    edges : ndarray, optional
        Bin edges (default :data:`DEFAULT_EDGES`).

    Returns
    -------
    ReconstructionStats
    """
    truth = np.asarray(truth, dtype=np.float64)
    rec = np.asarray(rec, dtype=np.float64)
    if truth.shape != rec.shape or truth.ndim != 3:
        raise ValueError(f"truth {truth.shape} and reconstruction {rec.shape} must be equal (nmaps, n, n) stacks")
    grid = FlatSkyGrid(truth.shape[-1], pixel_arcmin)
    edges = DEFAULT_EDGES if edges is None else np.asarray(edges, dtype=float)
    tt = binned_power(grid, truth, edges=edges, w2=w2)
    pp = binned_power(grid, rec, edges=edges, w2=w2)
    pt = binned_power(grid, rec, truth, edges=edges, w2=w2)
    res = binned_power(grid, truth - rec, edges=edges, w2=w2)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = pt.mean / np.sqrt(pp.mean * tt.mean)
        per_map_r = pt.per_map / np.sqrt(pp.per_map * tt.per_map)
        n = per_map_r.shape[0]
        r_err = np.full_like(r, np.nan)
        if n > 1:
            valid = np.isfinite(per_map_r).all(axis=0)
            r_err[valid] = np.std(per_map_r[:, valid], axis=0, ddof=1) / np.sqrt(n)
        noise = np.where(r > 0, tt.mean * (1.0 / r**2 - 1.0), np.inf)
    keep = tt.nmodes > 0
    return ReconstructionStats(
        ell=tt.ell[keep],
        bin_lo=edges[:-1][keep],
        bin_hi=edges[1:][keep],
        nmodes=tt.nmodes[keep],
        cl_true=tt.mean[keep],
        cl_rec=pp.mean[keep],
        cl_cross=pt.mean[keep],
        cl_residual=res.mean[keep],
        r=r[keep],
        r_err=r_err[keep],
        noise=noise[keep],
        nmaps=truth.shape[0],
    )
