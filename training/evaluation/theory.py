"""Theory curves of an evaluation: the input spectrum of each field and the analytic QE noise, in its bins.

For a field with truth array ``tru_x`` the input spectrum is the one the pipeline drew it from
(:func:`datapipe.spectra.load_spectra`); for each QE map of it, the analytic reconstruction noise
:math:`N^{(0)}_L` of the estimator (:class:`datapipe.estimators.QuadraticEstimators`) for the data's settings
(beam, noise, multipole ranges). Both are averaged over the Fourier modes of each bin, the modes the measured
spectra use. Fields are generic: a new one only needs entries in :data:`SIGNAL_SPECTRA` and :data:`QE_NOISE`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from datapipe.rotation import alpha_spectrum

#: Truth array → its input spectrum :math:`C_L` at L = 0, 1, …, from the theory spectra and the data's settings.
SIGNAL_SPECTRA: dict[str, Callable[[Any, Any], np.ndarray]] = {
    "tru_tau": lambda spectra, settings: spectra.tau,
    "tru_kappa": lambda spectra, settings: spectra.kk,
    "tru_phi": lambda spectra, settings: spectra.pp,
    "e_unl": lambda spectra, settings: spectra.ee,
    "tru_alpha": lambda spectra, settings: alpha_spectrum(np.arange(len(spectra.kk)), settings.alpha_amplitude_deg),
}
#: QE map → attribute of :class:`datapipe.estimators.QuadraticEstimators` holding its full-plane N⁽⁰⁾ (an estimator
#: without it is skipped). A Wiener filter rescales each L, so ``wf_rec_*`` has the N⁽⁰⁾ (and the r_L) of ``rec_*``.
QE_NOISE: dict[str, str] = {
    "rec_tau": "tau_noise",
    "wf_rec_tau": "tau_noise",
    "rec_kappa": "kappa_noise",
    "wf_rec_kappa": "kappa_noise",
    "rec_alpha": "alpha_noise",
    "wf_rec_alpha": "alpha_noise",
}


@dataclasses.dataclass
class FieldTheory:
    """Binned theory of one field (one value per kept bin, the bins of its :class:`ReconstructionStats`).

    Attributes
    ----------
    signal : ndarray or None
        Input spectrum :math:`C_L` of the truth (units² × sr), None when unknown.
    n0 : dict of str to ndarray
        QE map → analytic :math:`N^{(0)}_L` of its estimator (those known).
    r_expected : dict of str to ndarray
        QE map → :math:`r_L` expected for an estimator with noise :math:`N^{(0)}_L` alone,
        :math:`f\\sqrt{C_L/(C_L+N^{(0)}_L)}`. The factor :math:`f = w_3/\\sqrt{w_2 w_4}` (≤ 1, moments
        :math:`w_k = \\langle W^k\\rangle` of the taper W) is the loss of correlation because a QE of tapered maps
        responds to :math:`W^2 x` (noise ∝ :math:`W^2`) while the truth is :math:`W x`.
    taper_factor : float
        That f.
    """

    signal: np.ndarray | None
    n0: dict[str, np.ndarray]
    r_expected: dict[str, np.ndarray]
    taper_factor: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready lists."""
        return {
            "signal_cl": None if self.signal is None else self.signal.tolist(),
            "qe_n0": {k: v.tolist() for k, v in self.n0.items()},
            "qe_r_expected": {k: v.tolist() for k, v in self.r_expected.items()},
            "taper_factor": self.taper_factor,
        }


def taper_factor(taper: np.ndarray | None) -> float:
    """:math:`w_3/\\sqrt{w_2 w_4}` of a taper (1 without one)."""
    if taper is None:
        return 1.0
    w2, w3, w4 = (float(np.mean(np.asarray(taper, dtype=float) ** k)) for k in (2, 3, 4))
    return w3 / np.sqrt(w2 * w4) if w2 > 0 and w4 > 0 else 1.0


def field_theories(
    fields: Mapping[str, tuple[str, Iterable[str], np.ndarray]],
    settings: Any,
    taper: np.ndarray | None,
    edges: np.ndarray,
) -> dict[str, FieldTheory]:
    """Binned input spectra and QE noise of some fields.

    Parameters
    ----------
    fields : mapping of str to (str, iterable of str, ndarray)
        Key → (truth array name, its QE map names, boolean mask of the bins kept by the measured statistics,
        i.e. those with Fourier modes).
    settings : datapipe.settings.SimulationSettings
        The data's settings (geometry, beam, noise, multipole ranges; :func:`data_settings`).
    taper : ndarray or None
        (npix, npix) taper of the saved maps.
    edges : ndarray
        Multipole bin edges of the statistics.

    Returns
    -------
    dict of str to FieldTheory
        Keyed like ``fields``.
    """
    from datapipe.fourier import FlatSkyGrid
    from datapipe.powspec import bin_fourier, bin_theory
    from datapipe.spectra import load_spectra

    grid = FlatSkyGrid(settings.npix, settings.pixel_arcmin)
    spectra = load_spectra()
    factor = taper_factor(taper)
    estimators = None
    out = {}
    for key, (truth, qe_names, keep) in fields.items():
        cl = SIGNAL_SPECTRA[truth](spectra, settings) if truth in SIGNAL_SPECTRA else None
        signal = None if cl is None else bin_theory(grid, np.asarray(cl, dtype=float), edges)[keep]
        n0, r_expected = {}, {}
        for name in qe_names:
            if name not in QE_NOISE:
                continue
            if estimators is None:
                from datapipe.estimators import QuadraticEstimators

                estimators = QuadraticEstimators(grid, spectra, settings)
            noise = getattr(estimators, QE_NOISE[name], None)
            if noise is None:
                continue
            n0[name] = bin_fourier(grid, noise, edges)[keep]
            if signal is not None:
                with np.errstate(divide="ignore", invalid="ignore"):
                    total = signal + n0[name]
                    r_expected[name] = np.where(total > 0, factor * np.sqrt(signal / total), np.nan)
        out[key] = FieldTheory(signal, n0, r_expected, factor)
    return out
