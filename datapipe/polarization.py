"""Q/U ↔ E/B on the flat sky, in pixell's default convention (``iau=False``), batched.

With ψ = atan2(ℓ_x, ℓ_y) from pixell's ``lmap = [ℓ_y, ℓ_x]`` (the angle ``enmap.queb_rotmat`` uses),
``E(ℓ) = cos 2ψ Q(ℓ) − sin 2ψ U(ℓ)`` and ``B(ℓ) = sin 2ψ Q(ℓ) + cos 2ψ U(ℓ)``, identical to
``enmap.map2harm(..., iau=False)`` away from the Nyquist row and column (where pixell's wavenumbers are
one-sided). Everything works on the half plane of real FFTs.
"""

from __future__ import annotations

import numpy as np

from datapipe.fourier import FlatSkyGrid


def qu_to_eb_half(grid: FlatSkyGrid, q: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half-plane E and B modes (physical normalization) of Q/U maps.

    Parameters
    ----------
    grid : FlatSkyGrid
    q, u : ndarray
        (..., n, n) Stokes maps (μK).

    Returns
    -------
    e_k, b_k : ndarray
        (..., n, n//2+1) complex modes.
    """
    qk, uk = grid.rfft(q), grid.rfft(u)
    c, s = grid.cos2psi_half32, grid.sin2psi_half32
    return c * qk - s * uk, s * qk + c * uk


def eb_maps(grid: FlatSkyGrid, q: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real-space E and B maps of Q/U maps (same shape and precision as the input)."""
    e_k, b_k = qu_to_eb_half(grid, q, u)
    return grid.irfft(e_k, overwrite=True), grid.irfft(b_k, overwrite=True)


def qu_from_eb_half(grid: FlatSkyGrid, e_k: np.ndarray, b_k: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Q and U maps from half-plane E (and optionally B) modes; the inverse of :func:`qu_to_eb_half`."""
    c, s = grid.cos2psi_half32, grid.sin2psi_half32
    if b_k is None:
        return grid.irfft(c * e_k, overwrite=True), grid.irfft(-s * e_k, overwrite=True)
    return grid.irfft(c * e_k + s * b_k, overwrite=True), grid.irfft(c * b_k - s * e_k, overwrite=True)
