"""Quadratic estimators (QE) of lensing κ and patchy τ from observed E and B maps (EB estimators).

Both use the EB pair, which has no primordial B-mode noise when r = 0:

* lensing: symlens's Hu–Okamoto ``"hu_ok"`` EB estimator, response
  :math:`f(\\ell_1,\\ell_2) = (\\mathbf{L}\\cdot\\boldsymbol{\\ell}_1)\\,C^{EE}_{\\ell_1}\\sin 2(\\psi_1-\\psi_2)`;
* patchy τ: the modulation response of ``X → e^{-τ} X``,
  :math:`f(\\ell_1,\\ell_2) = -C^{EE}_{\\ell_1}\\sin 2(\\psi_1-\\psi_2)` (symlens 0.3.3 has no built-in τ estimator).
* polarization rotation α: the response of ``Q ± iU → e^{±2iα}(Q ± iU)``,
  :math:`f(\\ell_1,\\ell_2) = 2C^{EE}_{\\ell_1}\\cos 2(\\psi_1-\\psi_2)` (even in the angle, so the same in symlens's
  and pixell's angle conventions).

Filters are :math:`F = f / (C^{EE}_{\\rm tot}(\\ell_1)\\,C^{BB}_{\\rm tot}(\\ell_2))` with lensed spectra plus
beam-deconvolved noise. Normalizations (and the optimal-filter noise :math:`N^{(0)}_L`) are computed once per
configuration with symlens's integration primitives. Per-map reconstruction is the separable form of the
same integrals, batched over maps with real FFTs — the same numbers as symlens's ``QE.reconstruct``
(checked in the tests), at a fraction of the cost per map.
"""

from __future__ import annotations

import warnings
from functools import cached_property

import numpy as np
import symlens
from pixell import enmap, utils
from symlens.factorize import cos2t12, sin2t12
from symlens.factorize import e as sym
from symlens.factorize import integrate as sym_integrate
from symlens.qe import lensing_response_f

from datapipe.fourier import FlatSkyGrid
from datapipe.lens import kappa_to_phi
from datapipe.rotation import ALPHA_LMAX, alpha_spectrum
from datapipe.settings import SimulationSettings
from datapipe.spectra import Spectra


def beam_transfer(ell: np.ndarray, fwhm_arcmin: float) -> np.ndarray:
    """Gaussian beam transfer function :math:`B_\\ell = e^{-\\ell(\\ell+1)\\sigma^2/2}` (1 for ``fwhm = 0``)."""
    if fwhm_arcmin <= 0:
        return np.ones_like(ell, dtype=float)
    sigma = fwhm_arcmin * utils.arcmin / np.sqrt(8.0 * np.log(2.0))
    return np.exp(-0.5 * ell * (ell + 1.0) * sigma**2)


def polarization_noise_power(noise_uk_arcmin: float) -> float:
    """White polarization noise power (μK² sr): √2 times the temperature level, squared."""
    return float((np.sqrt(2.0) * noise_uk_arcmin * utils.arcmin) ** 2)


def tau_response():
    """sympy expression of the EB response to τ for a map modulated as ``e^{-τ}X``.

    In symlens's angle θ = atan2(ℓ_y, ℓ_x) and pixell's ``iau=False`` E/B, a modulation ``(1 − τ)(Q + iU)``
    creates ``B(ℓ2) ⊃ −C^EE_{ℓ1} sin 2(θ1 − θ2) τ(L)``.
    """
    return -sym("uC_E_E_l1") * sin2t12


def alpha_response():
    """sympy expression of the EB response to a rotation ``Q ± iU → e^{±2iα}(Q ± iU)``.

    To first order the rotation adds ``2iα(Q + iU)``; for a pure-E field this creates
    ``B(ℓ2) ⊃ 2 C^EE_{ℓ1} cos 2(θ1 − θ2) α(L)``.
    """
    return 2 * sym("uC_E_E_l1") * cos2t12


def eb_filter(f):
    """Inverse-variance EB filter ``f / (C^EE_tot(ℓ1) C^BB_tot(ℓ2))`` as a sympy expression."""
    return f / (sym("tC_E_E_l1") * sym("tC_B_B_l2"))


class QuadraticEstimators:
    """Lensing, patchy-τ and rotation EB quadratic estimators, normalized once, applied to batches of maps.

    Parameters
    ----------
    grid : FlatSkyGrid
        Map geometry.
    spectra : Spectra
        Theory spectra: lensed EE/BB (filters and responses), C_L^κκ and C_L^ττ (Wiener filters).
    settings : SimulationSettings
        Multipole ranges, beam and noise (the normalization is noise-aware); the rotation amplitude sets
        C_L^αα of the α Wiener filter (zero, hence ``wf_rec_alpha`` = 0, without rotation).
    """

    def __init__(self, grid: FlatSkyGrid, spectra: Spectra, settings: SimulationSettings):
        self.grid = grid
        shape, wcs = grid.geometry
        modl = grid.modlmap
        beam = beam_transfer(modl, settings.beam_arcmin)
        noise = polarization_noise_power(settings.noise_uk_arcmin)
        with np.errstate(divide="ignore", over="ignore"):
            deconvolved_noise = np.where(beam > 0, noise / beam**2, np.inf)
        self.feed_dict = {
            "uC_E_E": grid.interp_spectrum(spectra.lensed_ee, half=False),
            "tC_E_E": grid.interp_spectrum(spectra.lensed_ee, half=False) + deconvolved_noise,
            "tC_B_B": grid.interp_spectrum(spectra.lensed_bb, half=False) + deconvolved_noise,
        }
        self.cmb_mask = symlens.mask_kspace(shape, wcs, lmin=settings.lmin_cmb, lmax=settings.lmax_cmb)
        self.rec_mask = symlens.mask_kspace(shape, wcs, lmin=settings.lmin_rec, lmax=settings.lmax_rec)
        self.lensing_norm = symlens.A_l(shape, wcs, self.feed_dict, "hu_ok", "EB", xmask=self.cmb_mask,
                                        ymask=self.cmb_mask, kmask=self.rec_mask)
        self.tau_norm = self._custom_norm(tau_response())
        # Optimal-filter reconstruction noise N_L^(0).
        self.kappa_noise = np.asarray(symlens.N_l_from_A_l_optimal(shape, wcs, self.lensing_norm))
        self.tau_noise = self.tau_norm
        cl_kk = grid.interp_spectrum(spectra.kk, half=False)
        cl_tt = grid.interp_spectrum(spectra.tau, half=False)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.kappa_wiener = np.nan_to_num(cl_kk / (cl_kk + self.kappa_noise)) * self.rec_mask
            self.tau_wiener = np.nan_to_num(cl_tt / (cl_tt + self.tau_noise)) * self.rec_mask
        self._alpha_amplitude_deg = settings.alpha_amplitude_deg
        self._beam_half = beam_transfer(grid.modlmap_half, settings.beam_arcmin)
        self._build_weights()
        self.mean_field_kappa_k: np.ndarray | None = None
        self.mean_field_tau_k: np.ndarray | None = None
        self.mean_field_alpha_k: np.ndarray | None = None

    def set_mean_field(self, kappa_k: np.ndarray, tau_k: np.ndarray, alpha_k: np.ndarray | None = None) -> None:
        """Mean fields (half-plane modes, as from :meth:`reconstruct_fourier`) subtracted from every output."""
        self.mean_field_kappa_k = np.asarray(kappa_k).astype(np.complex64)
        self.mean_field_tau_k = np.asarray(tau_k).astype(np.complex64)
        if alpha_k is not None:
            self.mean_field_alpha_k = np.asarray(alpha_k).astype(np.complex64)

    # The rotation estimator's normalization costs as much as the τ one: computed on first use only.
    @cached_property
    def alpha_norm(self) -> np.ndarray:
        """(n, n) normalization :math:`A^\\alpha_L = 1/\\int f^\\alpha F^\\alpha` of the rotation estimator (rad²)."""
        return self._custom_norm(alpha_response())

    @property
    def alpha_noise(self) -> np.ndarray:
        """(n, n) optimal-filter noise :math:`N^{(0)}_L` of the rotation estimator (rad²): its normalization."""
        return self.alpha_norm

    @cached_property
    def alpha_wiener(self) -> np.ndarray:
        """(n, n) Wiener filter :math:`C_L^{\\alpha\\alpha}/(C_L^{\\alpha\\alpha} + N^{(0)}_L)` (0 without rotation)."""
        table = alpha_spectrum(np.arange(ALPHA_LMAX + 2), self._alpha_amplitude_deg)
        cl_aa = self.grid.interp_spectrum(table, half=False)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.nan_to_num(cl_aa / (cl_aa + self.alpha_noise)) * self.rec_mask

    def _integral(self, expr) -> np.ndarray:
        """∫ d²ℓ₁/(2π)² expr(ℓ₁, L − ℓ₁) on the full Fourier grid (symlens's conventions, as in ``A_l_custom``)."""
        shape, wcs = self.grid.geometry
        integral = sym_integrate(shape, wcs, dict(self.feed_dict), expr, xmask=self.cmb_mask, ymask=self.cmb_mask,
                                 physical_units=False).real
        return np.asarray(integral * enmap.pixsize(shape, wcs) ** 0.5 / np.prod(shape[-2:]) ** 0.5)

    def _custom_norm(self, f) -> np.ndarray:
        """1 / ∫ f F for a custom response f (symlens's ``A_l_custom`` without its 1/L², finite at L = 0)."""
        integral = self._integral(f * eb_filter(f))
        norm = np.zeros_like(integral)
        np.divide(1.0, integral, out=norm, where=integral != 0)
        return np.asarray(norm * self.rec_mask)

    def tau_response_to_kappa(self) -> np.ndarray:
        r"""First-order response of the τ estimator to lensing: ``<τ̂(L)> = R(L) κ(L)`` for unmodulated maps.

        This is the lensing-induced bias of the EB τ estimator discussed by Guzman & Meyers (2021):
        :math:`R(L) = \frac{2}{L^2} \frac{\int f^{\phi} F^{\tau}}{\int f^{\tau} F^{\tau}}`, with the lensing
        response :math:`f^{\phi}` of symlens's EB estimator. The spurious τ power from lensing is
        :math:`R(L)^2 C_L^{\kappa\kappa}`.

        Returns
        -------
        ndarray
            (n, n) full-plane R(L) (zero outside the reconstruction range and at L = 0).
        """
        return self._response_to_kappa(tau_response(), self.tau_norm)

    def alpha_response_to_kappa(self) -> np.ndarray:
        r"""First-order response of the rotation estimator to lensing: ``<α̂(L)> = R(L) κ(L)`` for unrotated maps.

        :math:`R(L) = \frac{2}{L^2} \frac{\int f^{\phi} F^{\alpha}}{\int f^{\alpha} F^{\alpha}}`, as for
        :meth:`tau_response_to_kappa`. The lensing EB response is odd under a reflection of ℓ₁ about **L** and the
        rotation response even, so R vanishes up to the asymmetry of the Fourier grid: unlike the τ estimator, the
        rotation estimator has no first-order lensing bias (its lensing bias is in its power, not its mean).

        Returns
        -------
        ndarray
            (n, n) full-plane R(L) in radians per unit κ (zero outside the reconstruction range and at L = 0).
        """
        return self._response_to_kappa(alpha_response(), self.alpha_norm)

    def _response_to_kappa(self, f, norm: np.ndarray) -> np.ndarray:
        cross = self._integral(lensing_response_f("EB") * eb_filter(f))
        l2 = self.grid.modlmap**2
        factor = np.zeros_like(l2)
        np.divide(2.0, l2, out=factor, where=l2 > 0)
        return factor * cross * norm

    def _half(self, full: np.ndarray) -> np.ndarray:
        return np.asarray(full)[..., : self.grid.npix // 2 + 1]

    def _build_weights(self) -> None:
        g = self.grid
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mask = self._half(self.cmb_mask)
            inv_e = np.where(mask > 0, mask / self._half(self.feed_dict["tC_E_E"]), 0.0)
            inv_b = np.where(mask > 0, mask / self._half(self.feed_dict["tC_B_B"]), 0.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                deconv = np.where(self._beam_half > 0, 1.0 / self._beam_half, 0.0)
        inv_e = inv_e * deconv
        inv_b = inv_b * deconv
        ly, lx = g.lmap_half
        # symlens's sin 2θ12 uses θ = atan2(ℓ_y, ℓ_x) (not pixell's polarization angle): expand it in that angle.
        theta = np.arctan2(ly, lx)
        s, c = np.sin(2 * theta), np.cos(2 * theta)
        u_e = self._half(self.feed_dict["uC_E_E"]) * inv_e
        # E-leg weights: [iℓ_y s, iℓ_x s, iℓ_y c, iℓ_x c] uC/Ctot for lensing and [s, c] uC/Ctot for τ and α. The
        # factor i makes the ℓ-odd legs Hermitian, so they are real maps (gradients); it is undone by the -i below.
        self._e_weights = np.stack([1j * ly * s * u_e, 1j * lx * s * u_e, 1j * ly * c * u_e, 1j * lx * c * u_e,
                                    s * u_e + 0j, c * u_e + 0j]).astype(np.complex64)
        self._b_weights = np.stack([c * inv_b, s * inv_b]).astype(np.float32)
        rec = self._half(self.rec_mask)
        kappa_out = -0.5j * self._half(self.lensing_norm) * rec
        self._kappa_out = np.stack([kappa_out * ly, kappa_out * lx]).astype(np.complex64)
        # τ̂ = ∫EBF / ∫fF = 2 A_τ × (½∫EBF); the response's minus sign is in f.
        self._tau_out = (-self._half(self.tau_norm) * rec).astype(np.float32)
        self._kappa_to_phi = kappa_to_phi(g.modlmap_half).astype(np.float32)
        self._kappa_wf = self._half(self.kappa_wiener).astype(np.float32)
        self._tau_wf = self._half(self.tau_wiener).astype(np.float32)

    @cached_property
    def _alpha_out(self) -> np.ndarray:
        # α̂ = ∫EBF / ∫fF with f = 2 uC cos 2θ12: 2 A_α times the cos-weighted product.
        return (2.0 * self._half(self.alpha_norm) * self._half(self.rec_mask)).astype(np.float32)

    @cached_property
    def _alpha_wf(self) -> np.ndarray:
        return self._half(self.alpha_wiener).astype(np.float32)

    def reconstruct_fourier(self, e_k: np.ndarray, b_k: np.ndarray,
                            fields: tuple[str, ...] = ("kappa", "tau")) -> tuple[np.ndarray, ...]:
        """Normalized κ, τ and α reconstructions in Fourier space.

        Parameters
        ----------
        e_k, b_k : ndarray
            (B, n, n//2+1) half-plane E and B modes of the observed maps (physical normalization, beam
            not deconvolved).
        fields : tuple of str
            Which of ``"kappa"``, ``"tau"``, ``"alpha"`` to reconstruct, in the order returned.

        Returns
        -------
        tuple of ndarray
            (B, n, n//2+1) half-plane modes of :math:`\\hat\\kappa`, :math:`\\hat\\tau` (dimensionless) or
            :math:`\\hat\\alpha` (radians), one per name in ``fields``.
        """
        unknown = set(fields) - {"kappa", "tau", "alpha"}
        if unknown:
            raise ValueError(f"unknown QE fields {sorted(unknown)}; valid: kappa, tau, alpha")
        g = self.grid
        # E legs 0-3 feed the lensing estimator, legs 4-5 (sin, cos) the τ and α estimators.
        legs = list(range(4)) if "kappa" in fields else []
        if "tau" in fields or "alpha" in fields:
            legs += [4, 5]
        weights = self._e_weights if len(legs) == 6 else self._e_weights[legs]
        a = dict(zip(legs, np.moveaxis(g.irfft(e_k[:, None] * weights), 1, 0), strict=True))  # leg → (B, n, n)
        b = g.irfft(b_k[:, None] * self._b_weights)  # (B, 2, n, n)
        bc, bs = b[:, 0], b[:, 1]
        recipes = {
            "kappa_y": lambda: a[0] * bc - a[2] * bs,
            "kappa_x": lambda: a[1] * bc - a[3] * bs,
            "tau": lambda: a[4] * bc - a[5] * bs,  # sin 2(θ1 − θ2)
            "alpha": lambda: a[4] * bs + a[5] * bc,  # cos 2(θ1 − θ2)
        }
        names = [n for n in recipes if n in fields or (n.startswith("kappa") and "kappa" in fields)]
        pk = dict(zip(names, np.moveaxis(g.rfft(np.stack([recipes[n]() for n in names], axis=1)), 1, 0),
                      strict=True))
        out = {
            "kappa": lambda: pk["kappa_y"] * self._kappa_out[0] + pk["kappa_x"] * self._kappa_out[1],
            "tau": lambda: pk["tau"] * self._tau_out,
            "alpha": lambda: pk["alpha"] * self._alpha_out,
        }
        return tuple(out[name]() for name in fields)

    def reconstruct(self, e_k: np.ndarray, b_k: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Real-space QE maps (mean field subtracted when one is set).

        Parameters
        ----------
        e_k, b_k : ndarray
            (B, n, n//2+1) observed E and B modes (see :meth:`reconstruct_fourier`).
        names : tuple of str
            Which of ``rec_kappa, rec_phi, wf_rec_kappa, rec_tau, wf_rec_tau, rec_alpha, wf_rec_alpha`` to return.

        Returns
        -------
        dict
            name → (B, n, n) float32 map (α in radians).
        """
        with_alpha = "rec_alpha" in names or "wf_rec_alpha" in names
        kappa_k, tau_k, *rest = self.reconstruct_fourier(e_k, b_k, ("kappa", "tau", "alpha") if with_alpha
                                                         else ("kappa", "tau"))
        alpha_k = rest[0] if with_alpha else None
        if self.mean_field_kappa_k is not None:
            kappa_k = kappa_k - self.mean_field_kappa_k
            tau_k = tau_k - self.mean_field_tau_k
        if with_alpha and self.mean_field_alpha_k is not None:
            alpha_k = alpha_k - self.mean_field_alpha_k
        recipes = {
            "rec_kappa": lambda: kappa_k,
            "rec_phi": lambda: kappa_k * self._kappa_to_phi,
            "wf_rec_kappa": lambda: kappa_k * self._kappa_wf,
            "rec_tau": lambda: tau_k,
            "wf_rec_tau": lambda: tau_k * self._tau_wf,
            "rec_alpha": lambda: alpha_k,
            "wf_rec_alpha": lambda: alpha_k * self._alpha_wf,
        }
        wanted = [name for name in recipes if name in names]
        if not wanted:
            return {}
        maps = self.grid.irfft(np.stack([recipes[name]() for name in wanted], axis=1)).astype(np.float32)
        return {name: maps[:, i] for i, name in enumerate(wanted)}
