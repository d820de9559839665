"""Quick looks at a data set (datapipe/summary.py): the per-array table and the map-set figure."""

from __future__ import annotations

import numpy as np
import pytest

from datapipe.plotting import symmetric_limit
from datapipe.runner import run_simulation
from datapipe.settings import SimulationSettings
from datapipe.summary import OWN_SCALE_ABOVE, map_set_figure, plot_map_set, settings_title, summary_table

MAPS = ("q_len", "u_len", "e_unl", "tru_kappa", "tru_tau", "rec_kappa", "rec_tau")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    settings = SimulationSettings(npix=32, taper_deg=0.3, seed=3, maps=MAPS, null_fraction=0.0, qe_mean_field_sims=4)
    return run_simulation(settings, tmp_path_factory.mktemp("summary") / "maps.npz", 3, progress=False)


def _maps(rng, scale_qe_tau=20.0):
    base = {name: rng.standard_normal((32, 32)) for name in MAPS}
    base["q_len"] += 3.0  # an offset: the limits must still be symmetric about zero
    base["tru_kappa"] *= 0.05
    base["rec_kappa"] *= 0.06  # within 3× of the truth: shares its scale
    base["tru_tau"] *= 0.003
    base["rec_tau"] *= 0.003 * scale_qe_tau  # 20× the truth: its own scale, said in its title
    return base


def _panels(fig):
    return {ax.get_title().split("\n")[0]: ax for ax in fig.axes if ax.images}


def test_centred_limits_shared_scales_and_the_qe_tau_on_its_own(tmp_path):
    maps = _maps(np.random.default_rng(0))
    fig = map_set_figure(maps, 2.34375, title="t")
    panels = _panels(fig)
    assert len(panels) == len(MAPS)  # one panel per array, and every other axis is a colour bar: no empty frame
    assert all(ax.images or ax.get_label() == "<colorbar>" for ax in fig.axes)
    for ax in panels.values():
        low, high = ax.images[0].get_clim()
        assert low == pytest.approx(-high) and ax.images[0].get_cmap().name == "RdBu_r"
    assert panels["observed $Q$"].images[0].get_clim() == panels["observed $U$"].images[0].get_clim()
    assert panels[r"QE $\kappa$"].images[0].get_clim() == panels[r"true $\kappa$"].images[0].get_clim()
    qe_tau = panels[r"QE $\tau$"]
    times = symmetric_limit(maps["rec_tau"]) / symmetric_limit(maps["tru_tau"])
    assert f"own scale: {times:.0f}× the truth's" in qe_tau.get_title()
    ratio = qe_tau.images[0].get_clim()[1] / panels[r"true $\tau$"].images[0].get_clim()[1]
    assert ratio > OWN_SCALE_ABOVE


def test_a_qe_map_on_the_truths_scale_says_nothing():
    fig = map_set_figure(_maps(np.random.default_rng(1), scale_qe_tau=2.0), 2.34375)
    assert all("own scale" not in ax.get_title() for ax in fig.axes)


def test_plot_map_set_writes_png_and_pdf_with_the_settings_in_the_title(data, tmp_path):
    out = plot_map_set(data, tmp_path / "set.png", index=1)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "set.pdf").read_bytes()[:5] == b"%PDF-"
    from datapipe.writer import read_metadata

    title = settings_title(read_metadata(data), 1)
    assert "taper 0.3°" in title and "32$^2$ pixels" in title and "seed 3" in title


def test_summary_table_lists_every_array(data):
    table = summary_table(data)
    assert all(name in table for name in MAPS) and "(3, 32, 32)" in table
