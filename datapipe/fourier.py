"""Flat-sky geometry and its Fourier grid, with fast batched FFTs in pixell's conventions.

pixell defines the geometry (CAR, 5°×5° by default) and the wavenumbers; the transforms here are
batched FFTs (scipy.fft, single thread) normalized like ``enmap.fft(..., normalize="phys")``, so that
the binned square of a transform compares directly with a theory :math:`C_\\ell`.

Polarization convention: pixell's default ``iau=False``. With ψ = atan2(ℓ_x, ℓ_y) from pixell's ``lmap = [ℓ_y, ℓ_x]``
(the angle ``enmap.queb_rotmat`` uses), ``E + iB = e^{2iψ} (Q + iU)`` in Fourier space.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.fft
from pixell import enmap, utils


@dataclass(frozen=True)
class FlatSkyGrid:
    """A square flat-sky patch centred on (0, 0) and its Fourier grid.

    Parameters
    ----------
    npix : int
        Pixels per side.
    pixel_arcmin : float
        Pixel size in arcmin.
    """

    npix: int
    pixel_arcmin: float

    @cached_property
    def geometry(self) -> tuple[tuple[int, int], object]:
        """``(shape, wcs)`` from ``pixell.enmap.geometry`` (CAR)."""
        half = self.npix * self.pixel_arcmin / 2.0 * utils.arcmin
        shape, wcs = enmap.geometry(pos=np.array([[-half, -half], [half, half]]), res=self.pixel_arcmin * utils.arcmin,
                                    proj="car")
        if tuple(shape) != (self.npix, self.npix):  # pragma: no cover - guards a pixell behaviour change
            raise RuntimeError(f"pixell made a {shape} geometry for npix={self.npix}")
        return (int(shape[0]), int(shape[1])), wcs

    @property
    def shape(self) -> tuple[int, int]:
        return self.geometry[0]

    @property
    def wcs(self):
        return self.geometry[1]

    @cached_property
    def pixel_area(self) -> float:
        """Pixel solid angle in steradians (pixell's ``pixsize``)."""
        return float(enmap.pixsize(*self.geometry))

    @cached_property
    def lmap(self) -> np.ndarray:
        """Full-plane wavenumbers ``[ℓ_y, ℓ_x]`` (2, n, n) in pixell's orientation (radians⁻¹)."""
        return np.asarray(enmap.lmap(*self.geometry))

    @cached_property
    def modlmap(self) -> np.ndarray:
        """Full-plane :math:`|\\ell|` (n, n)."""
        return np.hypot(self.lmap[0], self.lmap[1])

    @cached_property
    def lmap_half(self) -> np.ndarray:
        """Half-plane wavenumbers ``[ℓ_y, ℓ_x]`` (2, n, n//2+1) matching :meth:`rfft`."""
        half = self.npix // 2 + 1
        ly = self.lmap[0][:, :half].copy()
        lx = self.lmap[1][:, :half].copy()
        # The Nyquist column: rfft stores +n/2 where pixell's lmap lists -n/2 (same mode up to aliasing).
        lx[:, -1] = np.abs(lx[:, -1]) * np.sign(self.lmap[1][0, 1] if self.npix > 1 else 1.0)
        return np.array([ly, lx])

    @cached_property
    def modlmap_half(self) -> np.ndarray:
        """Half-plane :math:`|\\ell|` (n, n//2+1)."""
        return np.hypot(self.lmap_half[0], self.lmap_half[1])

    @cached_property
    def cos2psi_half(self) -> np.ndarray:
        """cos 2ψ on the half plane, ψ = atan2(ℓ_x, ℓ_y) (pixell's polarization angle, ``iau=False``)."""
        return np.cos(2 * np.arctan2(self.lmap_half[1], self.lmap_half[0]))

    @cached_property
    def sin2psi_half(self) -> np.ndarray:
        """sin 2ψ on the half plane."""
        return np.sin(2 * np.arctan2(self.lmap_half[1], self.lmap_half[0]))

    @cached_property
    def cos2psi_half32(self) -> np.ndarray:
        """:attr:`cos2psi_half` in float32, for per-map products."""
        return self.cos2psi_half.astype(np.float32)

    @cached_property
    def sin2psi_half32(self) -> np.ndarray:
        """:attr:`sin2psi_half` in float32, for per-map products."""
        return self.sin2psi_half.astype(np.float32)

    @cached_property
    def rotation_full(self) -> np.ndarray:
        """:math:`e^{2i\\psi}` on the full plane (complex64), the Q+iU → E+iB rotation."""
        psi = np.arctan2(self.lmap[1], self.lmap[0])
        return np.exp(2j * psi).astype(np.complex64)

    @cached_property
    def _norm_forward(self) -> float:
        return float(np.sqrt(self.pixel_area / self.npix**2))

    @cached_property
    def _norm_inverse(self) -> float:
        return float(np.sqrt(self.npix**2 / self.pixel_area))

    # scipy's pocketfft gives bit-identical results for a map whatever else is in the batch (ducc0's batched
    # transforms do not), which keeps the output independent of chunking and workers.
    def rfft(self, maps: np.ndarray) -> np.ndarray:
        """Physically normalized real FFT over the last two axes (``enmap.fft(normalize="phys")``, half plane)."""
        out = scipy.fft.rfft2(maps, workers=1)
        out *= self._norm_forward
        return out

    def irfft(self, kmaps: np.ndarray, overwrite: bool = False) -> np.ndarray:
        """Inverse of :meth:`rfft` (real maps, same normalization as ``enmap.ifft(normalize="phys")``).

        ``overwrite=True`` lets the transform destroy ``kmaps`` (for temporaries).
        """
        out = scipy.fft.irfft2(kmaps, s=self.shape, workers=1, overwrite_x=overwrite)
        out *= self._norm_inverse
        return out

    def fft(self, maps: np.ndarray) -> np.ndarray:
        """Physically normalized complex FFT over the last two axes."""
        out = scipy.fft.fft2(maps, workers=1)
        out *= self._norm_forward
        return out

    def ifft(self, kmaps: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`fft` (complex maps)."""
        out = scipy.fft.ifft2(kmaps, workers=1)
        out *= self._norm_inverse
        return out

    def interp_spectrum(self, cl: np.ndarray, half: bool = True) -> np.ndarray:
        """A 1-D spectrum sampled at integer ℓ, evaluated on the 2-D grid (linear in ℓ, zero beyond the table).

        Parameters
        ----------
        cl : ndarray
            :math:`C_\\ell` at ℓ = 0, 1, ..., lmax.
        half : bool
            Half plane (for :meth:`rfft`) or full plane.

        Returns
        -------
        ndarray
            The spectrum at :math:`|\\ell|` of each Fourier pixel.
        """
        ell = self.modlmap_half if half else self.modlmap
        return np.interp(ell, np.arange(len(cl)), cl, right=0.0)

    def pixels_per_radian(self) -> np.ndarray:
        """Signed pixels per radian along (y, x): converts a deflection in radians to pixel offsets."""
        shape, wcs = self.geometry
        centre = enmap.pix2sky(shape, wcs, [[shape[0] / 2.0], [shape[1] / 2.0]])
        step = 1e-6
        out = []
        for axis in range(2):
            moved = centre.copy()
            moved[axis] += step
            delta = enmap.sky2pix(shape, wcs, moved) - enmap.sky2pix(shape, wcs, centre)
            out.append(float(delta[axis, 0]) / step)
        return np.array(out)
