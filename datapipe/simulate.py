"""One batch of map sets: primordial CMB → rotation by α → ×e^{-τ} → lensing by κ → beam → noise → taper → E/B → QE.

:class:`MapSetSimulator` precomputes everything that depends only on the settings (2-D spectra square
roots, taper, QE normalizations) and then simulates any list of map-set indices; map set ``i`` depends
only on ``(seed, i)``. The rotation by α (off by default) draws from its own seed stream
(:func:`datapipe.rotation.rotation_rng`): switching it on changes no other field of a map set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datapipe.estimators import QuadraticEstimators, beam_transfer
from datapipe.fields import GaussianFieldGenerator, box_muller, map_set_rng
from datapipe.fourier import FlatSkyGrid
from datapipe.lens import FourierLenser, deflection_from_kappa
from datapipe.polarization import qu_from_eb_half, qu_to_eb_half
from datapipe.rotation import RotationFieldGenerator, rotate_qu, rotation_rng
from datapipe.settings import QE_MAPS, SimulationSettings
from datapipe.spectra import Spectra, load_spectra
from datapipe.taper import cosine_taper, w2_factor

OBSERVED_TQU = ("t_len", "q_len", "u_len")
#: Seed stream of the QE mean-field simulations (the data use stream 0).
MEAN_FIELD_STREAM = 1
MEAN_FIELD_CHUNK = 16


@dataclass
class _Realization:
    """Intermediate products of a batch: tapered observed maps, untapered primordial maps and truths."""

    observed: dict[str, np.ndarray]
    t_unl: np.ndarray | None
    q_unl: np.ndarray
    u_unl: np.ndarray
    tau: np.ndarray
    kappa_k: np.ndarray
    phi_k: np.ndarray
    alpha: np.ndarray | None


class MapSetSimulator:
    """Simulates map sets for the given settings.

    Parameters
    ----------
    settings : SimulationSettings
        What to simulate and which arrays to return.
    spectra : Spectra, optional
        Theory spectra (default: the cached CAMB spectra of the paper).

    Attributes
    ----------
    taper : ndarray
        (n, n) float64 taper applied to every returned map (the QE maps are reconstructions from tapered maps).
    w2 : float
        Mean of the squared taper.
    """

    def __init__(self, settings: SimulationSettings, spectra: Spectra | None = None):
        self.settings = settings
        self.spectra = spectra if spectra is not None else load_spectra()
        self.grid = FlatSkyGrid(settings.npix, settings.pixel_arcmin)
        self.generator = GaussianFieldGenerator(self.grid, self.spectra)
        self.lenser = FourierLenser(self.grid)
        self.taper = cosine_taper(settings.npix, settings.taper_pixels)
        self.w2 = w2_factor(self.taper)
        self._taper32 = self.taper.astype(np.float32)
        self._beam_half = beam_transfer(self.grid.modlmap_half, settings.beam_arcmin).astype(np.float32)
        pixel_arcmin = settings.pixel_arcmin
        self._noise_sigma_t = np.float32(settings.noise_uk_arcmin / pixel_arcmin)  # μK per pixel
        self.rotation = RotationFieldGenerator(self.grid, settings.alpha_amplitude_deg) if settings.rotation else None
        wanted = set(settings.maps)
        self._need_alpha_qe = bool(wanted & {"rec_alpha", "wf_rec_alpha"})
        self._need_t = bool(wanted & {"t_len", "t_unl"})
        self._need_observed_eb = bool(wanted & {"e_len", "b_len"}) or settings.needs_qe
        self._need_primordial_eb = bool(wanted & {"e_unl", "b_unl"})
        self.estimators = None
        if settings.needs_qe:
            self.estimators = QuadraticEstimators(self.grid, self.spectra, settings)
            if settings.qe_mean_field_sims > 0:
                self._estimate_qe_mean_field(settings.qe_mean_field_sims)

    def _realize(self, indices: list[int], stream: int = 0) -> _Realization:
        """Draw and process the random fields of some map sets up to the tapered observed maps."""
        s = self.settings
        g = self.grid
        nb, n = len(indices), s.npix
        white = np.empty((nb, 4, n, n), dtype=np.float32)
        noise_white = np.zeros((nb, 3, n, n), dtype=np.float32) if self._noise_sigma_t > 0 else None
        null = np.zeros(nb, dtype=bool)
        for j, index in enumerate(indices):
            rng = map_set_rng(s.seed, index, stream)
            null[j] = rng.random() < s.null_fraction
            self.generator.draw_white(rng, out=white[j])
            if noise_white is not None:
                box_muller(rng, noise_white[j])
        fk = self.generator.fields(white)
        null = null[:, None, None]
        tau_k = np.where((null & ("tau" in s.null_fields)) | (not s.tau), 0, fk.tau)
        kappa_k = np.where((null & ("kappa" in s.null_fields)) | (not s.lensing), 0, fk.kappa)
        alpha = None
        if self.rotation is not None:
            alpha_k = self.rotation.draw_fourier([rotation_rng(s.seed, index, stream) for index in indices])
            alpha = g.irfft(np.where(null & ("alpha" in s.null_fields), 0, alpha_k))

        # Primordial T, Q, U (pure E since r = 0).
        q_unl, u_unl = qu_from_eb_half(g, fk.e)
        t_unl = g.irfft(fk.t) if self._need_t else None
        # Rotated by α (T is unchanged), before the modulation and lensing.
        q_rot, u_rot = (q_unl, u_unl) if alpha is None else rotate_qu(q_unl, u_unl, alpha)

        # Truth fields and deflection.
        phi_k, deflection = deflection_from_kappa(g, kappa_k)
        tau = g.irfft(tau_k)
        screen = np.exp(-tau)

        # Observed: modulate by e^{-τ}, lens, beam, noise, taper.
        components = ([t_unl * screen] if self._need_t else []) + [q_rot * screen, u_rot * screen]
        observed = np.stack(components, axis=1)
        if s.lensing:
            for j in range(nb):
                if kappa_k[j].any():
                    observed[j] = self.lenser.lens(observed[j], deflection[j])
        if s.beam_arcmin > 0:
            observed = g.irfft(g.rfft(observed) * self._beam_half)
        if noise_white is not None:
            sigma = np.array([1.0, np.sqrt(2.0), np.sqrt(2.0)], dtype=np.float32) * self._noise_sigma_t
            first = 0 if self._need_t else 1
            observed += noise_white[:, first:] * sigma[first:, None, None]
        observed *= self._taper32
        names = OBSERVED_TQU if self._need_t else OBSERVED_TQU[1:]
        return _Realization(observed=dict(zip(names, np.moveaxis(observed, 1, 0), strict=True)), t_unl=t_unl,
                            q_unl=q_unl, u_unl=u_unl, tau=tau, kappa_k=kappa_k, phi_k=phi_k, alpha=alpha)

    def _estimate_qe_mean_field(self, nsims: int) -> None:
        """Average QE output of ``nsims`` extra simulations (an independent seed stream), subtracted from every
        reconstruction: the taper modulates the maps, and the QEs (the τ one above all) respond to it. The
        rotation QE's mean field is estimated only when its maps are requested."""
        fields = ("kappa", "tau", "alpha") if self._need_alpha_qe else ("kappa", "tau")
        sums = [0.0] * len(fields)
        for start in range(0, nsims, MEAN_FIELD_CHUNK):
            indices = list(range(start, min(start + MEAN_FIELD_CHUNK, nsims)))
            obs = self._realize(indices, stream=MEAN_FIELD_STREAM).observed
            recs = self.estimators.reconstruct_fourier(*qu_to_eb_half(self.grid, obs["q_len"], obs["u_len"]), fields)
            sums = [total + rec.sum(axis=0, dtype=np.complex128) for total, rec in zip(sums, recs, strict=True)]
        self.estimators.set_mean_field(*(total / nsims for total in sums))

    def simulate(self, indices: np.ndarray | list[int], stream: int = 0) -> dict[str, np.ndarray]:
        """Simulate the map sets with the given indices.

        Parameters
        ----------
        indices : sequence of int
            Global map-set indices (each one's randomness depends only on ``(seed, index)``).
        stream : int
            Seed stream: 0 for the pipeline's data sets; other values give independent families of map sets
            (used for the QE mean field and by on-the-fly training for its validation and test sets).

        Returns
        -------
        dict
            name → (len(indices), n, n) float32 array for each name in ``settings.maps``, flipped up–down so
            that row 0 is the top of the sky image.
        """
        g = self.grid
        names = self.settings.maps
        real = self._realize([int(i) for i in indices], stream)
        out: dict[str, np.ndarray] = {name: arr for name, arr in real.observed.items() if name in names}

        if self._need_observed_eb:
            e_k, b_k = qu_to_eb_half(g, real.observed["q_len"], real.observed["u_len"])
            if self.estimators is not None:
                out.update(self.estimators.reconstruct(e_k, b_k, tuple(n_ for n_ in names if n_ in QE_MAPS)))
            if "e_len" in names:
                out["e_len"] = g.irfft(e_k, overwrite=True)
            if "b_len" in names:
                out["b_len"] = g.irfft(b_k, overwrite=True)

        q_unl = real.q_unl * self._taper32
        u_unl = real.u_unl * self._taper32
        if self._need_t:
            out["t_unl"] = real.t_unl * self._taper32
        out["q_unl"], out["u_unl"] = q_unl, u_unl
        if self._need_primordial_eb:
            e_k, b_k = qu_to_eb_half(g, q_unl, u_unl)
            if "e_unl" in names:
                out["e_unl"] = g.irfft(e_k, overwrite=True)
            if "b_unl" in names:
                out["b_unl"] = g.irfft(b_k, overwrite=True)

        if "tru_tau" in names:
            out["tru_tau"] = real.tau * self._taper32
        if "tru_kappa" in names:
            out["tru_kappa"] = g.irfft(real.kappa_k) * self._taper32
        if "tru_phi" in names:
            out["tru_phi"] = g.irfft(real.phi_k) * self._taper32
        if "tru_alpha" in names:
            alpha = real.alpha if real.alpha is not None else np.zeros_like(real.tau)
            out["tru_alpha"] = alpha * self._taper32

        return {name: np.ascontiguousarray(out[name][:, ::-1, :], dtype=np.float32) for name in names}

    def null_flags(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """Which of the map sets are null (the fields in ``settings.null_fields`` zero), without simulating them."""
        return np.array([map_set_rng(self.settings.seed, int(i)).random() < self.settings.null_fraction
                         for i in indices])
