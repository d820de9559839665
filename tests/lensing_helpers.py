"""The exact lensing remap used as a reference by the tests: the periodic Fourier series evaluated off the grid."""

from __future__ import annotations

import numpy as np


def fourier_series_at(maps: np.ndarray, pix: np.ndarray, drop_nyquist: bool = False) -> np.ndarray:
    """Exact (float64) evaluation of the periodic Fourier series of ``maps`` at pixel positions ``pix``.

    A direct sum over all modes, separable in y and x: the high-accuracy reference remap.

    Parameters
    ----------
    maps : ndarray
        (..., n, n) real maps.
    pix : ndarray
        (2, n, n) positions (y, x) in pixels at which to evaluate each map.
    drop_nyquist : bool
        Leave out the Nyquist row and column, whose value off the grid is ambiguous (as ``datapipe.lens`` does).

    Returns
    -------
    ndarray
        The maps evaluated at ``pix``, shape of ``maps``.
    """
    n = maps.shape[-1]
    coeffs = np.fft.fft2(maps) / n**2
    if drop_nyquist:
        coeffs[..., n // 2, :] = 0
        coeffs[..., :, n // 2] = 0
    k = np.fft.fftfreq(n, 1.0 / n)
    py, px = pix[0].ravel(), pix[1].ravel()
    ex = np.exp(2j * np.pi * np.outer(k, px) / n)  # (nk, npoints)
    ey = np.exp(2j * np.pi * np.outer(k, py) / n)
    out = np.einsum("...yx,xp,yp->...p", coeffs, ex, ey, optimize=True)
    return out.real.reshape(maps.shape)
