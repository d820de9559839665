"""Binned flat-sky power spectra of map stacks (auto and cross), with the taper's w2 correction."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datapipe.fourier import FlatSkyGrid


@dataclass(frozen=True)
class BinnedSpectrum:
    """Binned power spectrum of a stack of maps.

    Attributes
    ----------
    ell : ndarray
        Mean multipole of the Fourier modes in each bin.
    edges : ndarray
        Bin edges (nbins + 1); a bin holds ``edges[i] <= |ℓ| < edges[i+1]``.
    per_map : ndarray
        (nmaps, nbins) spectrum of each map (or map pair).
    nmodes : ndarray
        Full-plane Fourier modes per bin.
    """

    ell: np.ndarray
    edges: np.ndarray
    per_map: np.ndarray
    nmodes: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """Mean over maps."""
        return self.per_map.mean(axis=0)

    @property
    def error(self) -> np.ndarray:
        """Standard error of the mean from the scatter over maps (NaN for a single map)."""
        n = self.per_map.shape[0]
        if n < 2:
            return np.full(self.per_map.shape[1], np.nan)
        return self.per_map.std(axis=0, ddof=1) / np.sqrt(n)


def linear_bins(lmin: float, lmax: float, width: float) -> np.ndarray:
    """Edges of equal bins from ``lmin`` to ``lmax`` whose width is as close as possible to ``width``.

    ``round((lmax − lmin) / width)`` bins (at least one); e.g. 20 → 3500 in steps of ≈ 100 gives 35 bins of width
    99.4.
    """
    nbins = max(1, int(round((lmax - lmin) / width)))
    return np.linspace(float(lmin), float(lmax), nbins + 1)


def _bin_index(grid: FlatSkyGrid, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bin index of each half-plane mode, the half-plane weights, and the full-plane mode counts."""
    ell = grid.modlmap_half
    index = np.digitize(ell, edges) - 1
    index[(ell < edges[0]) | (ell >= edges[-1])] = -1
    # Interior half-plane columns stand for two full-plane modes (ℓ and −ℓ).
    weight = np.full(ell.shape, 2.0)
    weight[:, 0] = 1.0
    if grid.npix % 2 == 0:
        weight[:, -1] = 1.0
    return index, weight, ell


def binned_power(grid: FlatSkyGrid, maps_a: np.ndarray, maps_b: np.ndarray | None = None,
                 edges: np.ndarray | None = None, w2: float = 1.0) -> BinnedSpectrum:
    """Binned auto- or cross-spectrum of each map (pair), corrected for the taper by 1/w2.

    Parameters
    ----------
    grid : FlatSkyGrid
        Geometry of the maps.
    maps_a : ndarray
        (nmaps, n, n) or (n, n) maps.
    maps_b : ndarray, optional
        Second stack for a cross-spectrum (default: auto-spectrum of ``maps_a``).
    edges : ndarray, optional
        Bin edges in ℓ (default: width 100 from 20 to 3500).
    w2 : float
        Mean of the squared taper applied to the maps; the power is divided by it.

    Returns
    -------
    BinnedSpectrum
        Spectra in map units squared times steradians (μK² for CMB maps), i.e. comparable to C_ℓ.
    """
    if edges is None:
        edges = linear_bins(20, 3500, 100)
    edges = np.asarray(edges, dtype=float)
    a = np.asarray(maps_a, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    ka = grid.rfft(a)
    if maps_b is None:
        power = np.abs(ka) ** 2
    else:
        b = np.asarray(maps_b, dtype=np.float64)
        if b.ndim == 2:
            b = b[None]
        power = (ka * np.conj(grid.rfft(b))).real
    index, weight, ell = _bin_index(grid, edges)
    nbins = len(edges) - 1
    valid = index >= 0
    idx = index[valid]
    w = weight[valid]
    nmodes = np.bincount(idx, weights=w, minlength=nbins)
    ell_mean = np.bincount(idx, weights=w * ell[valid], minlength=nbins) / np.maximum(nmodes, 1)
    flat = power[:, valid] * w
    per_map = np.stack([np.bincount(idx, weights=row, minlength=nbins) for row in flat])
    per_map = per_map / np.maximum(nmodes, 1) / w2
    return BinnedSpectrum(ell=ell_mean, edges=edges, per_map=per_map, nmodes=nmodes)


def bin_theory(grid: FlatSkyGrid, cl: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """A theory C_ℓ averaged over the Fourier modes of each bin (what :func:`binned_power` estimates)."""
    index, weight, _ = _bin_index(grid, np.asarray(edges, dtype=float))
    values = grid.interp_spectrum(cl)
    valid = index >= 0
    nbins = len(edges) - 1
    total = np.bincount(index[valid], weights=weight[valid] * values[valid], minlength=nbins)
    counts = np.bincount(index[valid], weights=weight[valid], minlength=nbins)
    return total / np.maximum(counts, 1)


def bin_fourier(grid: FlatSkyGrid, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """A full-plane 2-D Fourier array (e.g. a QE's :math:`N^{(0)}_L`) averaged over the modes of each bin.

    The same modes and weights as :func:`binned_power`, so the result compares with its measured spectra.

    Parameters
    ----------
    grid : FlatSkyGrid
        Geometry of the maps.
    values : ndarray
        (n, n) array on the full Fourier plane (pixell's ``modlmap`` layout).
    edges : ndarray
        Bin edges in ℓ.

    Returns
    -------
    ndarray
        (nbins,) mean over each bin's modes (0 for a bin without modes).
    """
    edges = np.asarray(edges, dtype=float)
    index, weight, _ = _bin_index(grid, edges)
    half = np.asarray(values, dtype=float)[..., : grid.npix // 2 + 1]
    valid = index >= 0
    nbins = len(edges) - 1
    total = np.bincount(index[valid], weights=weight[valid] * half[valid], minlength=nbins)
    counts = np.bincount(index[valid], weights=weight[valid], minlength=nbins)
    return total / np.maximum(counts, 1)
