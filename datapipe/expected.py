"""The power spectrum each array of the pipeline should have, for given settings: what a data check compares with.

For every array the expected spectrum is built on the full Fourier grid from the theory spectra and the settings
(beam, noise, QE normalization), then averaged over the modes of each bin (:func:`datapipe.powspec.bin_fourier`),
the modes a measured binned spectrum uses. The taper is accounted for by the moment of it that divides the
measured power (:func:`taper_power`): maps tapered once (observed, primordial, truths) by :math:`w_2`; QE maps,
quadratic in the tapered maps, by :math:`w_4`. Only non-null map sets (τ and κ on) are described.

What is left out, and shows up in a data check as a known deviation: the E→B leakage of the taper (``b_len``,
``b_unl``), the QE's :math:`N^{(1)}` and higher-order biases, and the mode coupling of the taper (a few % at
smooth spectra).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from datapipe.estimators import QuadraticEstimators, beam_transfer, polarization_noise_power
from datapipe.fourier import FlatSkyGrid
from datapipe.settings import QE_MAPS, SimulationSettings
from datapipe.spectra import Spectra


@dataclasses.dataclass(frozen=True)
class Expectation:
    """The expected spectrum of one array on the full Fourier plane, and how it is compared.

    Attributes
    ----------
    power : ndarray or None
        (n, n) expected power (units² × sr) per Fourier mode; None where no model is given (``b_unl``).
    taper_moment : int
        k of the taper moment :math:`w_k = \\langle W^k\\rangle` that divides the measured power (2 or 4).
    description : str
        What the expectation is, in a few words (for tables and legends).
    """

    power: np.ndarray | None
    taper_moment: int
    description: str


def taper_power(name: str) -> int:
    """The taper moment k whose :math:`w_k` divides the measured power of an array (4 for QE maps, else 2)."""
    return 4 if name in QE_MAPS else 2


class ExpectedSpectra:
    """Expected spectra of the pipeline's arrays for one set of settings (the QE normalized once, on demand).

    Parameters
    ----------
    settings : SimulationSettings
        The data's settings.
    spectra : Spectra
        Theory spectra (:func:`datapipe.spectra.load_spectra`).
    """

    def __init__(self, settings: SimulationSettings, spectra: Spectra):
        self.settings = settings
        self.spectra = spectra
        self.grid = FlatSkyGrid(settings.npix, settings.pixel_arcmin)
        self._estimators: QuadraticEstimators | None = None

    def _cl(self, cl: np.ndarray) -> np.ndarray:
        return self.grid.interp_spectrum(cl, half=False)

    @property
    def estimators(self) -> QuadraticEstimators:
        """The QEs of these settings (normalized on first use)."""
        if self._estimators is None:
            self._estimators = QuadraticEstimators(self.grid, self.spectra, self.settings)
        return self._estimators

    def _observed(self, power: np.ndarray, noise: float) -> np.ndarray:
        beam = beam_transfer(self.grid.modlmap, self.settings.beam_arcmin)
        return beam**2 * power + noise

    def _qe(self, field: str) -> np.ndarray:
        """QE auto-power of ``rec_<field>`` (κ or τ): signal + N⁽⁰⁾ (+ the lensing bias of the τ QE)."""
        s, sp, qe = self.settings, self.spectra, self.estimators
        kappa = self._cl(sp.kk) if s.lensing else 0.0
        if field == "kappa":
            return (kappa + qe.kappa_noise) * qe.rec_mask
        tau = self._cl(sp.tau) if s.tau else 0.0
        bias = qe.tau_response_to_kappa() ** 2 * kappa if s.lensing else 0.0
        return (tau + qe.tau_noise + bias) * qe.rec_mask

    def expectation(self, name: str) -> Expectation:
        """The expected spectrum of array ``name`` (one of :data:`datapipe.settings.ALL_MAPS`; an array without a
        model here gets ``power`` None, and a data check shows it measured only)."""
        s, sp = self.settings, self.spectra
        pol_noise = polarization_noise_power(s.noise_uk_arcmin)
        t_noise = pol_noise / 2.0
        k = taper_power(name)
        # Q = cos2ψ E + sin2ψ B and U = cos2ψ B − sin2ψ E (datapipe.polarization), mode by mode.
        psi = np.arctan2(self.grid.lmap[1], self.grid.lmap[0])
        c2, s2 = np.cos(2 * psi) ** 2, np.sin(2 * psi) ** 2
        ee, bb = self._cl(sp.lensed_ee), self._cl(sp.lensed_bb)
        models = {
            "t_len": lambda: (self._observed(self._cl(sp.lensed_tt), t_noise), "lensed TT × beam² + noise"),
            "q_len": lambda: (self._observed(c2 * ee + s2 * bb, pol_noise), "lensed EE, BB × beam² + noise"),
            "u_len": lambda: (self._observed(s2 * ee + c2 * bb, pol_noise), "lensed EE, BB × beam² + noise"),
            "e_len": lambda: (self._observed(ee, pol_noise), "lensed EE × beam² + noise"),
            "b_len": lambda: (self._observed(bb, pol_noise), "lensed BB × beam² + noise (no E→B leakage)"),
            "t_unl": lambda: (self._cl(sp.tt), "primordial TT"),
            "q_unl": lambda: (c2 * self._cl(sp.ee), "primordial EE"),
            "u_unl": lambda: (s2 * self._cl(sp.ee), "primordial EE"),
            "e_unl": lambda: (self._cl(sp.ee), "primordial EE"),
            "b_unl": lambda: (None, "E→B leakage of the taper only (no model)"),
            "tru_kappa": lambda: (self._cl(sp.kk), "input C_L^κκ"),
            "tru_phi": lambda: (self._cl(sp.pp), "input C_L^φφ"),
            "tru_tau": lambda: (self._cl(sp.tau), "input C_L^ττ"),
            "rec_kappa": lambda: (self._qe("kappa"), "C_L^κκ + N0"),
            "rec_phi": lambda: (self._qe("kappa") * self._kappa_to_phi(), "(C_L^κκ + N0) × 4/L⁴"),
            "wf_rec_kappa": lambda: (self.estimators.kappa_wiener**2 * self._qe("kappa"), "Wiener² × (C_L^κκ + N0)"),
            "rec_tau": lambda: (self._qe("tau"), "C_L^ττ + N0 + R_L² C_L^κκ"),
            "wf_rec_tau": lambda: (self.estimators.tau_wiener**2 * self._qe("tau"), "Wiener² × (C_L^ττ + N0 + R²C^κκ)"),
        }
        power, description = models[name]() if name in models else (None, "no model in datapipe.expected")
        return Expectation(None if power is None else np.asarray(power, dtype=float), k, description)

    def _kappa_to_phi(self) -> np.ndarray:
        l2 = self.grid.modlmap**2
        factor = np.zeros_like(l2)
        np.divide(4.0, l2**2, out=factor, where=l2 > 0)
        return factor * self.estimators.rec_mask


def tapered_power(power: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Expected power of a periodic field of 2-D power ``power`` multiplied by ``window`` (mode coupling included).

    On the periodic pixel grid the simulation uses, :math:`\\tilde m = \\tilde W \\circledast \\tilde f / N^2`, so
    :math:`\\langle|\\tilde m_k|^2\\rangle = \\sum_q K_{k-q} P_q` with :math:`K = |\\tilde W|^2 / N^4`: a circular
    convolution, done with FFTs. A flat spectrum comes back multiplied by :math:`\\langle W^2\\rangle`.

    Parameters
    ----------
    power : ndarray
        (n, n) full-plane power (numpy's FFT layout, as ``FlatSkyGrid.modlmap``).
    window : ndarray
        (n, n) real-space window multiplying the field (the taper, or its square for QE maps).

    Returns
    -------
    ndarray
        (n, n) expected power of the windowed field, in the units of ``power``.
    """
    window = np.asarray(window, dtype=float)
    kernel = np.abs(np.fft.fft2(window)) ** 2 / window.size**2
    return np.fft.ifft2(np.fft.fft2(kernel) * np.fft.fft2(np.asarray(power, dtype=float))).real
