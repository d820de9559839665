"""A small simulated map file and the E/B checks shared by the tests of datapipe.io and datapipe.export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pixell import enmap

from datapipe.runner import run_simulation
from datapipe.settings import SimulationSettings

#: Lensed, τ-modulated maps on a 64² patch (2.5°), no QE: a few seconds to simulate.
SETTINGS = SimulationSettings(npix=64, pixel_arcmin=2.34375, taper_deg=0.5, null_fraction=0.0, seed=5,
                              qe_mean_field_sims=0, maps=("q_len", "u_len", "e_len", "b_len", "tru_kappa", "tru_phi"))
NSIMS = 6


def write_map_file(path: Path) -> Path:
    """Simulate :data:`SETTINGS` into ``path`` (``.npz`` or ``.h5``); ``window_info.npz`` lands beside it."""
    return run_simulation(SETTINGS, path, NSIMS, progress=False)


def nyquist_free(npix: int) -> np.ndarray:
    """(npix, npix) mask of the Fourier modes off the Nyquist row and column (index npix/2 on either axis).

    pixell's wavenumber of a Nyquist mode is one-sided, so its E/B split there is a matter of convention.
    """
    keep = np.ones((npix, npix), dtype=bool)
    keep[npix // 2, :] = False
    keep[:, npix // 2] = False
    return keep


def eb_fourier(q: enmap.ndmap, u: enmap.ndmap) -> tuple[np.ndarray, np.ndarray]:
    """E and B Fourier modes (``normalize="phys"``) of one Q/U pair through pixell, ``iau=False``."""
    tqu = enmap.enmap(np.stack([np.zeros(q.shape), q, u]).astype(np.float64), q.wcs)
    teb = enmap.map2harm(tqu, iau=False, normalize="phys")
    return np.asarray(teb[1]), np.asarray(teb[2])


def fourier(m: enmap.ndmap) -> np.ndarray:
    """Fourier modes of a scalar map, normalized as :func:`eb_fourier`."""
    return np.asarray(enmap.fft(enmap.enmap(np.asarray(m, dtype=np.float64), m.wcs), normalize="phys"))


def b_over_e(q: enmap.ndmap, u: enmap.ndmap) -> float:
    """Total B power over total E power of the Q/U pair, as pixell sees it."""
    e, b = eb_fourier(q, u)
    return float(np.sum(np.abs(b) ** 2) / np.sum(np.abs(e) ** 2))
