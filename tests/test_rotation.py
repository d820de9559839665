"""The cosmic polarization rotation: α spectrum and units, its seed stream, and the rotation of Q/U (sign included)."""

import numpy as np
import pytest
from pixell import enmap

from datapipe.fields import map_set_rng
from datapipe.fourier import FlatSkyGrid
from datapipe.polarization import qu_from_eb_half, qu_to_eb_half
from datapipe.powspec import bin_theory, binned_power, linear_bins
from datapipe.rotation import (
    ALPHA_LMAX,
    PAPER_AMPLITUDE_DEG,
    RotationFieldGenerator,
    alpha_spectrum,
    rotate_qu,
    rotation_rng,
)

NSIGMA = 5.0  # per-bin tolerance in units of the cosmic-variance error (fixed seeds: deterministic)


def _pure_e_qu(grid: FlatSkyGrid, spectra, nmaps: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q, U and E maps (float64) of Gaussian pure-E fields with the unlensed C^EE, without Nyquist modes (where
    pixell's one-sided wavenumbers and our E/B differ)."""
    rng = np.random.default_rng(seed)
    amp = np.sqrt(grid.interp_spectrum(spectra.ee)) / grid.npix
    amp[grid.npix // 2, :] = 0.0
    amp[:, -1] = 0.0
    e_k = np.fft.rfft2(rng.standard_normal((nmaps, grid.npix, grid.npix))) * amp
    q, u = qu_from_eb_half(grid, e_k)
    return q, u, grid.irfft(e_k)


def test_amplitude_is_in_degrees_and_the_spectrum_scale_invariant():
    ell = np.array([1.0, 2.0, 100.0, 3000.0, 9000.0, 9001.0])
    cl = alpha_spectrum(ell, PAPER_AMPLITUDE_DEG)
    dl = ell * (ell + 1) * cl / (2 * np.pi)
    # L(L+1)C_L/2π = A² with A = 0.12° = 2.094e-3 rad, in rad², over 2 <= L <= 9000, zero outside.
    np.testing.assert_allclose(dl[1:5], np.deg2rad(0.12) ** 2, rtol=1e-12)
    assert dl[0] == 0 and dl[5] == 0
    np.testing.assert_allclose(alpha_spectrum(ell, 2 * PAPER_AMPLITUDE_DEG), 4 * cl, rtol=1e-12)


def test_alpha_realizations_have_the_theory_spectrum():
    g = FlatSkyGrid(64, 2.34375)
    gen = RotationFieldGenerator(g, 0.5)
    nmaps = 300
    alpha = g.irfft(gen.draw_fourier([rotation_rng(4, i) for i in range(nmaps)])).astype(np.float64)
    edges = linear_bins(150, 4500, 300)
    measured = binned_power(g, alpha, edges=edges)
    theory = bin_theory(g, alpha_spectrum(np.arange(ALPHA_LMAX + 2), 0.5), edges)
    # Cosmic variance of the mean of nmaps spectra: sqrt(2 / (full-plane modes × nmaps)).
    sigma = np.sqrt(2.0 / (measured.nmodes * nmaps))
    ratio = measured.mean / theory
    assert np.all(np.abs(ratio - 1) < NSIGMA * sigma), (ratio, sigma)


def test_rotation_stream_is_independent_of_the_map_set_streams():
    first = rotation_rng(7, 3).random(4)
    assert np.array_equal(first, rotation_rng(7, 3).random(4))
    others = [map_set_rng(7, 3).random(4)] + [map_set_rng(7, 3, k).random(4) for k in range(1, 6)]
    others += [rotation_rng(7, 4).random(4), rotation_rng(8, 3).random(4), rotation_rng(7, 3, 2).random(4)]
    assert not any(np.allclose(first, other) for other in others)


@pytest.mark.parametrize("angle", [0.3, -0.1, 1e-3])
def test_uniform_rotation_of_a_pure_e_map_gives_b_equal_e_sin_2alpha(spectra, angle):
    g = FlatSkyGrid(64, 2.34375)
    q, u, e = _pure_e_qu(g, spectra, 2, seed=1)
    q_rot, u_rot = rotate_qu(q, u, angle)
    e_k, b_k = qu_to_eb_half(g, q_rot, u_rot)
    # Exact for a uniform α: (E + iB) → e^{2iα}(E + iB) with B = 0 before (to the float32 precision of our
    # E/B angle factors).
    scale = np.abs(e).max()
    np.testing.assert_allclose(g.irfft(b_k), e * np.sin(2 * angle), atol=1e-6 * scale)
    np.testing.assert_allclose(g.irfft(e_k), e * np.cos(2 * angle), atol=1e-6 * scale)
    # pixell's own E/B (iau=False, our convention) agrees, sign included.
    shape, wcs = g.geometry
    teb_k = enmap.map2harm(enmap.enmap(np.stack([0 * q[0], q_rot[0], u_rot[0]]), wcs), iau=False, normalize="phys")
    teb = enmap.ifft(teb_k, normalize="phys").real
    np.testing.assert_allclose(teb[2], e[0] * np.sin(2 * angle), atol=1e-6 * scale)


def test_small_anisotropic_rotation_is_first_order_in_alpha(spectra):
    """B of a rotated pure-E map is the B of the first-order change δ(Q + iU) = 2iα(Q + iU), up to O(α²)."""
    g = FlatSkyGrid(64, 2.34375)
    q, u, _ = _pure_e_qu(g, spectra, 4, seed=2)
    alpha_unit = g.irfft(RotationFieldGenerator(g, 1.0).draw_fourier([rotation_rng(1, i) for i in range(4)]))
    alpha_unit = alpha_unit / alpha_unit.std()
    residuals = []
    for rms in (1e-3, 1e-2):
        alpha = rms * alpha_unit
        _, b_exact = qu_to_eb_half(g, *rotate_qu(q, u, alpha))
        _, b_linear = qu_to_eb_half(g, q - 2 * alpha * u, u + 2 * alpha * q)
        b_exact, b_linear = g.irfft(b_exact), g.irfft(b_linear)
        # B is first order in α: its size is ≈ 2 α_rms × E_rms.
        assert 0.5 < b_exact.std() / (2 * rms * np.hypot(q, u).std()) < 2
        residuals.append(np.abs(b_exact - b_linear).max() / np.abs(b_exact).max())
    # The first-order error is O(α²) relative to B ∝ α: ~α_rms × (peak α), and it scales as α.
    assert residuals[0] < 0.02 and residuals[1] < 0.2
    assert residuals[1] / residuals[0] == pytest.approx(10, rel=0.05)
