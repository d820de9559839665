"""Lensing remap: evaluate the (periodic, band-limited) unlensed map at the deflected positions.

The simulated maps are trigonometric polynomials on the periodic patch (they are made by FFT), so the
lensed map ``X̃(x) = X(x + ∇φ(x))`` is their Fourier series evaluated at off-grid points. That is a type-2
non-uniform FFT, done by ``ducc0.nufft`` (the FFT/NUFFT engine pixell itself is built on) to a chosen
accuracy — exact up to ``epsilon``, unlike spline interpolation, and faster than ``pixell.lensing.lens_map``.
"""

from __future__ import annotations

import ducc0
import numpy as np
import scipy.fft

from datapipe.fourier import FlatSkyGrid

#: Relative accuracy of the non-uniform FFT (single precision allows > 1e-6).
DEFAULT_EPSILON = 1e-5


class FourierLenser:
    """Lens maps on a flat-sky grid by exact Fourier-series evaluation at deflected positions.

    Parameters
    ----------
    grid : FlatSkyGrid
        The map geometry (pixell CAR, periodic boundaries as in ``lens_map(..., border="cyclic")``).
    epsilon : float
        Requested accuracy of the non-uniform FFT.
    """

    def __init__(self, grid: FlatSkyGrid, epsilon: float = DEFAULT_EPSILON):
        self.grid = grid
        self.epsilon = epsilon
        n = grid.npix
        iy, ix = np.meshgrid(np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64), indexing="ij")
        self._pixel_grid = np.stack([iy, ix])
        self._pix_per_rad = grid.pixels_per_radian()[:, None, None]

    def deflection_to_coords(self, deflection: np.ndarray) -> np.ndarray:
        """Non-uniform FFT coordinates (npoints, 2) of the deflected pixel centres.

        Parameters
        ----------
        deflection : ndarray
            (2, n, n) deflection ``∇φ`` along (y, x) in radians, as ``enmap.grad(phi)``.
        """
        dtype = np.float32 if self.epsilon >= 1e-6 else np.float64
        coords = np.empty((self.grid.npix**2, 2), dtype=dtype)
        for axis in range(2):
            coords[:, axis] = (self._pixel_grid[axis] + deflection[axis] * self._pix_per_rad[axis]).ravel()
        coords *= 2.0 * np.pi / self.grid.npix
        return coords

    def lens_complex(self, zmaps: np.ndarray, deflection: np.ndarray) -> np.ndarray:
        """Lens complex maps (e.g. ``Q + iU``, or ``T`` as complex) sharing one deflection field.

        Parameters
        ----------
        zmaps : ndarray
            (k, n, n) complex maps.
        deflection : ndarray
            (2, n, n) deflection in radians.

        Returns
        -------
        ndarray
            (k, n, n) lensed complex maps.
        """
        n = self.grid.npix
        single = self.epsilon >= 1e-6
        ctype = np.complex64 if single else np.complex128
        coeffs = scipy.fft.fft2(zmaps.astype(ctype, copy=False), workers=1)
        coeffs /= n * n
        # A Nyquist mode has no unambiguous off-grid value (e^{+iπx} or e^{-iπx}); for packed real pairs the
        # ambiguity would leak one map into the other, so these modes (|ℓ| ≥ ℓ_Nyquist, negligible CMB power)
        # are dropped.
        coeffs[:, n // 2, :] = 0
        coeffs[:, :, n // 2] = 0
        out = np.empty((zmaps.shape[0], n * n), dtype=ctype)
        ducc0.nufft.u2nu(grid=coeffs, coord=self.deflection_to_coords(deflection), forward=False,
                         epsilon=self.epsilon, nthreads=1, out=out, fft_order=True)
        return out.reshape(zmaps.shape)

    def lens(self, maps: np.ndarray, deflection: np.ndarray) -> np.ndarray:
        """Lens real maps; pairs of maps share one complex transform.

        Parameters
        ----------
        maps : ndarray
            (k, n, n) real maps (e.g. T, Q, U).
        deflection : ndarray
            (2, n, n) deflection ``∇φ`` in radians along (y, x).

        Returns
        -------
        ndarray
            (k, n, n) lensed maps, dtype of ``maps``.
        """
        k = maps.shape[0]
        npairs = (k + 1) // 2
        packed = np.zeros((npairs,) + maps.shape[1:], dtype=np.complex64)
        packed.real = maps[0::2]
        packed.imag[: k // 2] = maps[1::2]
        lensed = self.lens_complex(packed, deflection)
        out = np.empty_like(maps)
        out[0::2] = lensed.real
        out[1::2] = lensed.imag[: k // 2]
        return out


def kappa_to_phi(ell: np.ndarray) -> np.ndarray:
    """The factor 2/(L(L+1)) that turns convergence modes into lensing-potential modes, 0 at L = 0.

    κ = −½∇²φ would give 2/L² on the flat sky; 2/(L(L+1)) is the full-sky relation the original pipeline used
    (and the one behind C_L^κκ = [L(L+1)]² C_L^φφ / 4 of the spectra), so that φ has the power C_L^φφ exactly.

    Parameters
    ----------
    ell : ndarray
        Multipoles |ℓ| (any shape).

    Returns
    -------
    ndarray
        2/(L(L+1)) where L > 0, else 0 (float64, the shape of ``ell``).
    """
    ell = np.asarray(ell, dtype=float)
    denominator = ell * (ell + 1.0)
    out = np.zeros_like(denominator)
    np.divide(2.0, denominator, out=out, where=ell > 0)
    return out


def deflection_from_kappa(grid: FlatSkyGrid, kappa_k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lensing potential and deflection from half-plane κ modes.

    φ(ℓ) = 2κ(ℓ)/(ℓ(ℓ+1)) (:func:`kappa_to_phi`) with the ℓ = 0 mode set to zero (never ``nan_to_num``), and ∇φ
    by ``iℓ φ``.

    Parameters
    ----------
    grid : FlatSkyGrid
    kappa_k : ndarray
        (..., n, n//2+1) κ modes (physical normalization).

    Returns
    -------
    phi_k : ndarray
        (..., n, n//2+1) potential modes.
    deflection : ndarray
        (..., 2, n, n) ∇φ along (y, x) in radians.
    """
    phi_k = kappa_k * kappa_to_phi(grid.modlmap_half).astype(np.float32)
    ly, lx = grid.lmap_half.astype(np.float32)
    # The gradient of a Nyquist mode vanishes at the pixel centres (sin(π x) = 0): zero it explicitly.
    ly = ly.copy()
    lx = lx.copy()
    ly[grid.npix // 2, :] = 0
    lx[:, -1] = 0
    grads = np.stack([phi_k * (1j * ly), phi_k * (1j * lx)], axis=-3)
    return phi_k, grid.irfft(grads)
