"""The paper's cosine taper."""

import numpy as np

from datapipe.settings import SimulationSettings
from datapipe.taper import cosine_taper, cosine_window_1d, w2_factor


def test_paper_taper_width_and_w2():
    s = SimulationSettings()
    assert s.taper_pixels == 38  # int(1.5 deg / 2.34375 arcmin) = int(38.4)
    taper = cosine_taper(128, 38)
    # w2 of the paper's taper (pixell's enmap.apod would give 0.393).
    assert abs(w2_factor(taper) - 0.386) < 0.001


def test_window_profile():
    w = cosine_window_1d(128, 38)
    assert w[0] == 0.0 and w[-1] == 0.0
    np.testing.assert_allclose(w, w[::-1])
    r = np.arange(39)
    np.testing.assert_allclose(w[:39], 0.5 * (1 - np.cos(np.pi * r / 38)))
    assert np.all(w[38:90] == 1.0)
    assert np.all(np.diff(w[:39]) > 0)


def test_two_dimensional_taper_is_separable_and_zero_width_is_identity():
    taper = cosine_taper(64, 10)
    w = cosine_window_1d(64, 10)
    np.testing.assert_allclose(taper, np.outer(w, w))
    assert np.all(cosine_taper(32, 0) == 1.0)
