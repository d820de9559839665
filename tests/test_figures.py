"""The evaluation figures (training/evaluation/figures/) and their theory curves (training/evaluation/theory.py).

Each figure is drawn from the objects the tables print (FieldResult, BiasTestResult); the tests read the plotted
line data back (``Line2D.get_ydata()``, found by ``gid``) and compare it with the numbers ``metrics.json`` stores,
and check that PNG and PDF files are written and not empty. The inputs are a small 32×32 pipeline data set and a
fake "network" (the truth, scaled and with noise added), so no model is trained here.
"""

from __future__ import annotations

import numpy as np
import pytest
from evaluation_helpers import simulate

from datapipe.estimators import QuadraticEstimators
from datapipe.fourier import FlatSkyGrid
from datapipe.plotting import dl_factor
from datapipe.powspec import bin_fourier, bin_theory, binned_power
from training.evaluation import comparison, figures, mapdata, report, theory
from training.evaluation.bias import BiasTestResult
from training.evaluation.figures.bias import DETECTION_SIGMA, detections
from training.evaluation.figures.maps import rms_ratio

OUTPUTS = {"tau": "tru_tau", "kappa": "tru_kappa", "unle": "e_unl"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = simulate(tmp_path_factory.mktemp("figdata") / "maps.npz", 24, seed=11, qe_mean_field_sims=8)
    return mapdata.load_map_data(path)


@pytest.fixture(scope="module")
def results(data):
    rng = np.random.default_rng(5)
    predictions = {}
    for name, truth in OUTPUTS.items():
        t = data.arrays[truth]
        predictions[name] = (0.8 * t + 0.5 * t.std() * rng.standard_normal(t.shape)).astype(np.float32)
    results, skipped = comparison.compare_fields(predictions, OUTPUTS, data)
    assert list(results) == ["tau", "kappa", "unle"] and not skipped
    return results


def _line(fig, gid):
    lines = [line for ax in fig.axes for line in ax.lines if line.get_gid() == gid]
    assert len(lines) == 1, f"{gid}: {len(lines)} lines"
    return lines[0]


def _positive(values):
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values) & (values > 0), values, np.nan)


def _written(paths):
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"
    assert all(p.stat().st_size > 10_000 for p in paths)


# ----------------------------------------------------------------------------------------------------------------
# Theory curves


def test_theory_is_the_binned_input_spectrum_and_the_qe_n0(results, data, spectra):
    grid = FlatSkyGrid(data.npix, data.pixel_arcmin)
    edges = comparison.make_edges()
    keep = np.isin(edges[:-1], results["kappa"].network.bin_lo)
    settings = mapdata.data_settings(data.metadata, data.npix)
    qe = QuadraticEstimators(grid, spectra, settings)
    kappa = results["kappa"].theory
    np.testing.assert_allclose(kappa.signal, bin_theory(grid, spectra.kk, edges)[keep], rtol=1e-12)
    np.testing.assert_allclose(kappa.n0["rec_kappa"], bin_fourier(grid, qe.kappa_noise, edges)[keep], rtol=1e-12)
    np.testing.assert_allclose(kappa.n0["wf_rec_kappa"], kappa.n0["rec_kappa"])  # a Wiener filter keeps N0 and r
    np.testing.assert_allclose(results["tau"].theory.n0["rec_tau"], bin_fourier(grid, qe.tau_noise, edges)[keep])
    f = theory.taper_factor(data.taper)
    expected_r = f * np.sqrt(kappa.signal / (kappa.signal + kappa.n0["rec_kappa"]))
    np.testing.assert_allclose(kappa.r_expected["rec_kappa"], expected_r, rtol=1e-12)
    assert results["unle"].theory.n0 == {} and results["unle"].theory.signal is not None


def test_theory_matches_the_measured_truth_spectra(results, data):
    """The input spectrum in each bin is what the truth maps measure (w2-corrected), within the scatter.

    Bin by bin the measured C_L scatters by its standard error σ (from ~20 maps); the taper couples neighbouring
    modes at the few-% level. For the scalar fields τ and κ, pooled over the bins, Σ(measured − theory) / √Σσ² must
    stay within 4. E (from tapered Q/U) also loses ~5 % of its power to B on these 1.25° maps, a systematic larger
    than its tiny scatter, so for every field only the mean ratio is held to 10 %. A misaligned bin mask or a
    missing w2 correction (a factor 2 here) fails both.
    """
    grid = FlatSkyGrid(data.npix, data.pixel_arcmin)
    edges = comparison.make_edges()
    for name, truth in OUTPUTS.items():
        res = results[name]
        live = ~comparison.null_maps(data.arrays[truth])
        measured = binned_power(grid, data.arrays[truth][live], edges=edges, w2=data.w2)
        keep = measured.nmodes > 0
        np.testing.assert_allclose(measured.mean[keep], res.network.cl_true, rtol=1e-6)
        signal, sigma = res.theory.signal, measured.error[keep]
        pull = np.sum(res.network.cl_true - signal) / np.sqrt(np.sum(sigma**2))
        assert name == "unle" or abs(pull) < 4, (name, pull)
        assert abs(np.mean(res.network.cl_true / signal) - 1) < 0.1, name


def test_expected_qe_correlation_bounds_the_measured_one(results):
    """r expected from N0 alone is an upper bound: the measured QE r_L lies below it (up to the scatter)."""
    for name, qe in (("kappa", "rec_kappa"), ("tau", "rec_tau")):
        res = results[name]
        expected, measured, err = res.theory.r_expected[qe], res.qe[qe].r, np.nan_to_num(res.qe[qe].r_err)
        assert np.all((expected > 0) & (expected <= 1))
        assert np.mean(measured - 3 * err <= expected) > 0.9, name
    assert 0.9 < results["kappa"].theory.taper_factor <= 1.0


def test_taper_factor_is_one_without_a_taper_and_below_one_with_one():
    assert theory.taper_factor(None) == 1.0 and theory.taper_factor(np.ones((8, 8))) == pytest.approx(1.0)
    ramp = np.outer(np.linspace(0.1, 1, 16), np.ones(16))
    assert theory.taper_factor(ramp) < 0.99


# ----------------------------------------------------------------------------------------------------------------
# r_L and spectra


def test_r_ell_plots_the_metrics_values(results, tmp_path):
    fig = figures.plot_r_ell(results)
    metrics = report.metrics_dict(results)
    for name in results:
        net = _line(fig, f"{name}:network:r")
        np.testing.assert_allclose(net.get_ydata(), metrics[name]["network"]["r"])
    for name, qe in (("kappa", "rec_kappa"), ("tau", "rec_tau")):
        np.testing.assert_allclose(_line(fig, f"{name}:{qe}:r").get_ydata(), metrics[name]["qe"][qe]["r"])
        expected = _line(fig, f"{name}:{qe}:r_expected").get_ydata()
        np.testing.assert_allclose(expected, metrics[name]["theory"]["qe_r_expected"][qe])
        # wf_rec_* has the r_L of rec_* mode by mode (a Wiener filter rescales each L); within a bin of ΔL = 100 the
        # filter's slope shifts the bin's r by 1 % or so: drawn once, and the legend says so.
        assert not [ln for ax in fig.axes for ln in ax.lines if str(ln.get_gid()).startswith(f"{name}:wf_")]
        np.testing.assert_allclose(metrics[name]["qe"]["wf_" + qe]["r"], metrics[name]["qe"][qe]["r"], atol=0.03)
    assert any("wf_rec_*" in text.get_text() for text in fig.legends[0].get_texts())
    _written(figures.save(fig, tmp_path / "r_ell.png"))


def test_spectra_plot_theory_and_noise_from_the_metrics(results, tmp_path):
    fig = figures.plot_spectra(results)
    metrics = report.metrics_dict(results)
    for name in results:
        ell = np.array(metrics[name]["network"]["ell"])
        scale = dl_factor(ell)
        np.testing.assert_allclose(_line(fig, f"{name}:signal").get_ydata(),
                                   scale * np.array(metrics[name]["theory"]["signal_cl"]))
        np.testing.assert_allclose(_line(fig, f"{name}:truth").get_ydata(),
                                   scale * np.array(metrics[name]["network"]["cl_true"]))
        noise = np.array(metrics[name]["network"]["noise"], dtype=float)
        np.testing.assert_allclose(_line(fig, f"{name}:network:noise").get_ydata(), _positive(scale * noise))
    for name, qe in (("kappa", "rec_kappa"), ("tau", "rec_tau")):
        n0 = np.array(metrics[name]["theory"]["qe_n0"][qe])
        np.testing.assert_allclose(_line(fig, f"{name}:{qe}:n0").get_ydata(), dl_factor(results[name].qe[qe].ell) * n0)
    # The frame follows the theory curves: the analytic N0 of the τ QE is inside the τ panel.
    ax = _line(fig, "tau:rec_tau:n0").axes
    lo, hi = ax.get_ylim()
    n0_tau = _line(fig, "tau:rec_tau:n0").get_ydata()
    assert lo < np.nanmin(n0_tau) and np.nanmax(n0_tau) < hi
    assert ax.get_yscale() == "log" and "$" in ax.get_ylabel()
    _written(figures.save(fig, tmp_path / "spectra.png"))


def test_metrics_json_holds_the_theory(results):
    entry = report.metrics_dict(results)["kappa"]["theory"]
    assert set(entry["qe_n0"]) == {"rec_kappa", "wf_rec_kappa"}
    assert len(entry["signal_cl"]) == len(report.metrics_dict(results)["kappa"]["network"]["ell"])


# ----------------------------------------------------------------------------------------------------------------
# Maps


def test_map_comparison_shares_a_centred_scale_and_prints_rms_ratios(data, tmp_path):
    index = 1
    truths = {"κ": data.arrays["tru_kappa"][index], "τ": data.arrays["tru_tau"][index]}
    preds = {"κ": 0.7 * truths["κ"], "τ": 50 * truths["τ"]}  # τ badly scaled: flagged, not hidden
    qe_maps = {"κ": ("wf_rec_kappa", data.arrays["wf_rec_kappa"][index]),
               "τ": ("rec_tau", data.arrays["rec_tau"][index])}
    fig = figures.plot_map_comparison(truths, preds, qe_maps, data.pixel_arcmin, index)
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 8
    for row in (images[:4], images[4:]):
        truth_clim = row[0].images[0].get_clim()
        assert truth_clim[0] == pytest.approx(-truth_clim[1])
        assert row[1].images[0].get_clim() == truth_clim and row[2].images[0].get_clim() == truth_clim
    notes = [[t.get_text() for t in ax.texts] for ax in images]
    assert notes[1] == [f"rms / rms(truth) = {rms_ratio(preds['κ'], truths['κ']):.2f}"]
    assert notes[2] == [f"rms / rms(truth) = {rms_ratio(truths['κ'] - preds['κ'], truths['κ']):.2f}"]
    assert "saturated" in notes[5][0] and "saturated" not in notes[1][0], "a 50x prediction must be flagged"
    # The raw τ QE map is far above the truth's range: its own scale, and the title says so.
    tau_qe = images[7]
    assert "own scale" in tau_qe.get_title() and tau_qe.images[0].get_clim() != images[4].images[0].get_clim()
    assert "own scale" not in images[3].get_title()
    labels = [ax.get_ylabel() for ax in fig.axes if not ax.images]  # the colour bars
    assert any("kappa" in label for label in labels) and any("tau" in label for label in labels)
    _written(figures.save(fig, tmp_path / "maps.png"))


# ----------------------------------------------------------------------------------------------------------------
# Bias test


@pytest.fixture()
def bias_result():
    ell = np.linspace(300, 3300, 11)
    cl_tau = 1e-7 * (ell / 1000) ** -2
    rng = np.random.default_rng(2)
    spurious, errors = {}, {}
    for key, level in (("qe_total", 1000), ("qe_minus_n0", 300), ("qe_kappa_part", 100), ("qe_first_order", 100),
                       ("network_total", 3), ("network_kappa_part", 0.01)):
        errors[key] = 0.3 * level * cl_tau
        spurious[key] = level * cl_tau + errors[key] * rng.standard_normal(ell.size)
    spurious["network_kappa_part"][:4] = 0.0  # consistent with zero: upper limits
    return BiasTestResult(ell, ell - 50, ell + 50, cl_tau, spurious, errors, 16, "synthetic")


def test_bias_figure_plots_detections_and_upper_limits_from_the_table_numbers(bias_result, tmp_path):
    fig = figures.plot_bias_test(bias_result)
    stored = bias_result.to_dict()
    for key in bias_result.spurious:
        ratio = np.array(stored["ratio_to_cl_tau"][key], dtype=float)
        error = np.array(stored["spurious_power_error"][key]) / np.array(stored["cl_tau_theory"])
        detected, upper = detections(ratio, error)
        np.testing.assert_allclose(_line(fig, f"{key}:ratio").get_ydata(), detected)
        if key != "qe_first_order":
            np.testing.assert_allclose(_line(fig, f"{key}:upper").get_ydata(), upper)
    low = _line(fig, "network_kappa_part:upper").get_ydata()
    assert np.all(np.isfinite(low[:4])) and np.all(low[:4] > 0)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_ylim()[0] > 0
    # The legend sits outside the axes, below them.
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    assert fig.legends[0].get_window_extent(renderer).y1 <= ax.get_window_extent(renderer).y0
    assert all("$" in t.get_text() for t in fig.legends[0].get_texts() if "C_L" in t.get_text())
    _written(figures.save(fig, tmp_path / "bias.png"))


def test_detections_split_at_two_sigma():
    detected, upper = detections(np.array([10.0, 1.0, -1.0]), np.array([1.0, 1.0, 1.0]))
    assert DETECTION_SIGMA == 2.0
    np.testing.assert_array_equal(np.isfinite(detected), [True, False, False])
    np.testing.assert_allclose(upper[1:], [3.0, 1.0])


def test_png_resolution_is_at_least_150_dpi(results, tmp_path):
    from PIL import Image

    path = figures.save(figures.plot_r_ell(results), tmp_path / "r.png")[0]
    with Image.open(path) as image:
        dpi = image.info.get("dpi", (0, 0))[0]
        assert dpi >= 149 and image.size[0] >= 7 * 150
    with pytest.raises(ValueError):
        figures.save(figures.plot_r_ell(results), tmp_path / "low.png", dpi=100)


def test_binned_power_and_bin_fourier_use_the_same_modes():
    grid = FlatSkyGrid(32, 2.34375)
    edges = comparison.make_edges()
    spectrum = binned_power(grid, np.zeros((1, 32, 32)), edges=edges)
    np.testing.assert_allclose(bin_fourier(grid, grid.modlmap, edges), spectrum.ell, rtol=1e-12)


def test_a_fourth_field_without_theory_is_drawn_generically(results, tmp_path):
    """Another field (here a copy of κ labelled as the rotation angle α) gets its own panel, labelled from
    FIELD_INFO's symbol and units, and no theory curves when none is known: four panels in a 2 × 2 grid."""
    import dataclasses

    alpha = dataclasses.replace(results["kappa"], output="cbf", truth="tru_alpha", label="α", units="rad",
                                qe={"rec_alpha": results["kappa"].qe["rec_kappa"]}, theory=None)
    four = {**results, "cbf": alpha}
    for plot in (figures.plot_r_ell, figures.plot_spectra):
        fig = plot(four)
        panels = [ax for ax in fig.axes if ax.get_title()]
        assert len(panels) == 4 and r"$\alpha$" in panels[3].get_title()
        assert {round(ax.get_position().x0, 2) for ax in panels} == {round(panels[0].get_position().x0, 2),
                                                                      round(panels[1].get_position().x0, 2)}
        assert not [ln for ln in panels[3].lines if str(ln.get_gid()).endswith((":n0", ":signal", ":r_expected"))]
    assert "[rad$^2$]" in panels[3].get_ylabel()
    _written(figures.save(fig, tmp_path / "four.png"))
