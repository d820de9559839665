"""Q/U ↔ E/B on the flat sky, in pixell's default convention (``iau=False``), batched.

With ψ = atan2(ℓ_x, ℓ_y) from pixell's ``lmap = [ℓ_y, ℓ_x]``, ``E(ℓ) + iB(ℓ) = e^{2iψ}[Q(ℓ) + iU(ℓ)]``, identical
to ``enmap.map2harm(..., iau=False)`` away from the Nyquist row and column; one complex FFT pair gives both E and B.
"""

from __future__ import annotations

import numpy as np

from datapipe.fourier import FlatSkyGrid


def eb_from_qu_fourier(grid: FlatSkyGrid, q: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Full-plane Fourier transform of ``e + i b`` (physical normalization) from real Q and U maps.

    Parameters
    ----------
    grid : FlatSkyGrid
    q, u : ndarray
        (..., n, n) Stokes maps.

    Returns
    -------
    ndarray
        (..., n, n) complex: the transform of the complex map ``e + i b``.
    """
    return grid.fft(q + 1j * u) * grid.rotation_full


def eb_maps(grid: FlatSkyGrid, q: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real-space E and B maps of Q/U maps.

    Parameters
    ----------
    grid : FlatSkyGrid
    q, u : ndarray
        (..., n, n) Stokes maps.

    Returns
    -------
    e, b : ndarray
        (..., n, n) real maps, same dtype precision as the input.
    """
    z = grid.ifft(eb_from_qu_fourier(grid, q, u))
    return z.real.astype(q.dtype, copy=False), z.imag.astype(q.dtype, copy=False)


def eb_half_plane(grid: FlatSkyGrid, zk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split the transform of ``e + i b`` into the half-plane transforms of e and b.

    Uses Hermitian symmetry: ``E(ℓ) = [Z(ℓ) + Z*(−ℓ)]/2`` and ``B(ℓ) = [Z(ℓ) − Z*(−ℓ)]/2i``.
    """
    half = grid.npix // 2 + 1
    zneg = np.conj(np.roll(zk[..., ::-1, ::-1], 1, axis=(-2, -1)))
    ek = 0.5 * (zk + zneg)
    bk = -0.5j * (zk - zneg)
    return ek[..., :half], bk[..., :half]


def qu_from_e_half(grid: FlatSkyGrid, ek: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q and U maps of a pure-E field given by its half-plane transform (B = 0).

    Q(ℓ) = cos 2ψ E(ℓ) and U(ℓ) = −sin 2ψ E(ℓ), the inverse of :func:`eb_from_qu_fourier` for B = 0.
    """
    return grid.irfft(ek * grid.cos2psi_half32), grid.irfft(ek * -grid.sin2psi_half32)
