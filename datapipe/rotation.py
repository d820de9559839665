"""Cosmic polarization rotation: the anisotropic birefringence field α and the rotation of Q/U by it.

The follow-up paper of the ResUNet-CMB authors (Guzman & Meyers, arXiv:2109.09715) rotates the primordial
polarization by a Gaussian field α with the scale-invariant spectrum

.. math:: \\frac{L(L+1)}{2\\pi} C_L^{\\alpha\\alpha} = A^2 ,

with A = 0.12 degrees in their simulations. Their code reads the amplitude in degrees; here it is converted to
radians before use, so :math:`C_L^{\\alpha\\alpha}` is in rad² and every α map is in **radians**. (Their code divides
by :math:`L^2` instead of :math:`L(L+1)`, a difference below 5 % above L = 20 and outside the reconstruction
range below.) The rotation acts on the Stokes parameters as
:math:`Q \\pm iU \\to e^{\\pm 2i\\alpha}(Q \\pm iU)`, which turns a pure-E field into
:math:`B = E \\sin 2\\alpha` for a uniform α (E and B in pixell's ``iau=False`` convention, like every map here).

α has its own seed stream: the generator of map set ``i`` is a child of that map set's seed sequence
(:func:`rotation_rng`), so switching α on leaves κ, τ, the CMB and the noise of every map set unchanged.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from datapipe.fields import box_muller
from datapipe.fourier import FlatSkyGrid

#: Amplitude A of the α spectrum in the simulations of Guzman & Meyers (arXiv:2109.09715), in degrees.
PAPER_AMPLITUDE_DEG = 0.12
#: Multipole range of the α spectrum (the authors' code tabulates it over 2 ≤ L ≤ 9000, like τ).
ALPHA_LMIN, ALPHA_LMAX = 2, 9000
#: Spawn key of the α generator: child 0 of a map set's seed sequence (the map set's own generator uses the
#: parent sequence, so the two streams are independent).
ROTATION_SPAWN_KEY = (0,)


def alpha_spectrum(ell: np.ndarray, amplitude_deg: float) -> np.ndarray:
    """Scale-invariant rotation spectrum :math:`C_L^{\\alpha\\alpha} = 2\\pi A^2 / (L(L+1))` in rad².

    Parameters
    ----------
    ell : array_like
        Multipoles (any shape).
    amplitude_deg : float
        Amplitude A in degrees: :math:`L(L+1)C_L^{\\alpha\\alpha}/2\\pi = A^2` (converted to radians here).

    Returns
    -------
    ndarray
        :math:`C_L^{\\alpha\\alpha}` in rad², zero outside :data:`ALPHA_LMIN` ≤ L ≤ :data:`ALPHA_LMAX`.
    """
    ell = np.asarray(ell, dtype=float)
    amplitude_rad = np.deg2rad(amplitude_deg)
    inside = (ell >= ALPHA_LMIN) & (ell <= ALPHA_LMAX)
    cl = np.zeros_like(ell)
    li = ell[inside]
    cl[inside] = 2.0 * np.pi * amplitude_rad**2 / (li * (li + 1.0))
    return cl


def rotation_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """Random generator of the α field of map set ``index`` of seed stream ``stream``.

    A child (spawn key :data:`ROTATION_SPAWN_KEY`) of the seed sequence of
    :func:`datapipe.fields.map_set_rng`, hence independent of the numbers that draw the map set's CMB, τ, κ,
    noise and null flag.
    """
    entropy = [seed, index] if stream == 0 else [seed, index, stream]
    sequence = np.random.SeedSequence(entropy, spawn_key=ROTATION_SPAWN_KEY)
    return np.random.Generator(np.random.SFC64(sequence))


class RotationFieldGenerator:
    """Gaussian α fields of a given amplitude on a flat-sky grid, from their own seed streams.

    Parameters
    ----------
    grid : FlatSkyGrid
        Map geometry.
    amplitude_deg : float
        Amplitude A of :func:`alpha_spectrum`, in degrees.
    """

    def __init__(self, grid: FlatSkyGrid, amplitude_deg: float):
        self.grid = grid
        self.amplitude_deg = float(amplitude_deg)
        # C_ℓ at integer multipoles, evaluated on the grid like the other fields (datapipe.fields).
        table = alpha_spectrum(np.arange(ALPHA_LMAX + 2), self.amplitude_deg)
        # sqrt(C_ℓ / ΔΩ) turns unit white noise into C_ℓ; sqrt(ΔΩ)/n converts scipy's unnormalized rfft to the
        # physical normalization of FlatSkyGrid: together sqrt(C_ℓ)/n.
        self.amp = (np.sqrt(grid.interp_spectrum(table)) / grid.npix).astype(np.float32)

    def draw_fourier(self, rngs: list[np.random.Generator]) -> np.ndarray:
        """Half-plane modes (physical normalization) of one α field per generator, (B, n, n//2+1), radians."""
        n = self.grid.npix
        white = np.empty((len(rngs), n, n), dtype=np.float32)
        for j, rng in enumerate(rngs):
            box_muller(rng, white[j])
        return scipy.fft.rfft2(white, workers=1) * self.amp


def rotate_qu(q: np.ndarray, u: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotate the polarization by α: :math:`Q \\pm iU \\to e^{\\pm 2i\\alpha}(Q \\pm iU)`.

    Parameters
    ----------
    q, u : ndarray
        Stokes maps (μK), any matching shape.
    alpha : ndarray
        Rotation angle in radians, broadcastable to ``q``.

    Returns
    -------
    q_rot, u_rot : ndarray
        :math:`Q\\cos 2\\alpha - U\\sin 2\\alpha` and :math:`Q\\sin 2\\alpha + U\\cos 2\\alpha` (μK).
    """
    c, s = np.cos(2 * alpha), np.sin(2 * alpha)
    return q * c - u * s, q * s + u * c
