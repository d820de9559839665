"""The paper's cosine edge taper (apodization) of the square map."""

from __future__ import annotations

import numpy as np


def cosine_window_1d(npix: int, width: int) -> np.ndarray:
    """One axis of the taper.

    With ``r`` the distance in pixels from the nearest edge pixel (``r = 0`` on the edge), the window is
    ``½(1 − cos(π r / width))`` for ``r ≤ width`` and 1 further inside.

    Parameters
    ----------
    npix : int
        Number of pixels along the axis.
    width : int
        Taper width in pixels (0: no taper).

    Returns
    -------
    ndarray
        Window values (npix,), float64.
    """
    if width <= 0:
        return np.ones(npix)
    r = np.minimum(np.arange(npix), np.arange(npix)[::-1]).astype(float)
    return np.where(r <= width, 0.5 * (1.0 - np.cos(np.pi * r / width)), 1.0)


def cosine_taper(npix: int, width: int) -> np.ndarray:
    """Two-dimensional taper: the product of the two axes' :func:`cosine_window_1d`.

    Parameters
    ----------
    npix : int
        Pixels per side.
    width : int
        Taper width in pixels (the paper: ``int(1.5° / 2.34375′) = 38``).

    Returns
    -------
    ndarray
        (npix, npix) float64 taper.
    """
    w = cosine_window_1d(npix, width)
    return np.outer(w, w)


def w2_factor(taper: np.ndarray) -> float:
    """Mean of the squared taper, the factor by which tapering lowers the power of a map."""
    return float(np.mean(taper**2))
