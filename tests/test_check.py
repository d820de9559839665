"""The data check: expected spectra (datapipe/expected.py), the measurement (datapipe/datacheck.py), the figure
(datapipe/check_figure.py) and the command line ``python -m datapipe.check`` (datapipe/check.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datapipe import check as check_cli
from datapipe.check_figure import plot_data_check
from datapipe.datacheck import check_data_file
from datapipe.expected import ExpectedSpectra, tapered_power
from datapipe.runner import run_simulation
from datapipe.settings import SimulationSettings
from datapipe.taper import cosine_taper

REPO_ROOT = Path(__file__).resolve().parent.parent
MAPS = ("q_len", "u_len", "e_unl", "b_unl", "tru_kappa", "tru_tau", "rec_kappa")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """24 map sets of 32×32 pixels (0.3° taper) with the arrays of every kind: observed, primordial, truth, QE."""
    settings = SimulationSettings(npix=32, taper_deg=0.3, seed=4, maps=MAPS, qe_mean_field_sims=8)
    return run_simulation(settings, tmp_path_factory.mktemp("check") / "maps.npz", 24, progress=False)


@pytest.fixture(scope="module")
def checked(data):
    return check_data_file(data)


def test_tapered_power_keeps_a_flat_spectrum_times_w2():
    taper = cosine_taper(32, 7)
    flat = np.full((32, 32), 3.0)
    np.testing.assert_allclose(tapered_power(flat, taper), 3.0 * np.mean(taper**2), rtol=1e-12)


def test_expected_q_and_u_power_split_ee_and_bb_by_angle(spectra):
    """Q = cos2ψ E + sin2ψ B: mode by mode the powers of Q and U add up to EE + BB."""
    expected = ExpectedSpectra(SimulationSettings(npix=32, taper_deg=0.3, maps=("q_len",)), spectra)
    q, u = expected.expectation("q_len").power, expected.expectation("u_len").power
    total = expected.grid.interp_spectrum(spectra.lensed_ee + spectra.lensed_bb, half=False)
    np.testing.assert_allclose(q + u, total, rtol=1e-10, atol=1e-30)
    assert expected.expectation("rec_kappa").taper_moment == 4 and expected.expectation("q_len").taper_moment == 2
    assert expected.expectation("b_unl").power is None


def test_measured_spectra_agree_with_theory(checked):
    """Observed, primordial and truth arrays match their expected spectra (taper convolved, w2 divided).

    With ~20 non-null map sets and ~20 bins, χ² per bin of an unbiased estimate is 1 ± 0.3 (neighbouring bins
    correlated by the taper widen that a little): < 2.5 holds, while dropping the taper convolution (χ²/bin ≈ 140
    for q_len) or the w2 division (ratio ≈ 2) fails. E loses ~5 % to B through the taper on 1.25° maps, a
    systematic the model leaves out, so e_unl gets a mean-ratio check only.
    """
    for name in ("q_len", "u_len", "tru_kappa", "tru_tau"):
        a = checked.arrays[name]
        assert a.chi2_per_bin < 2.5, (name, a.chi2_per_bin)
        assert abs(a.mean_ratio - 1) < 0.05, (name, a.mean_ratio)
    assert abs(checked.arrays["e_unl"].mean_ratio - 1) < 0.1
    # The QE map has at least its N0: its power is not below C + N0 (on such small maps it is above).
    assert checked.arrays["rec_kappa"].mean_ratio > 0.9
    assert checked.arrays["b_unl"].expected is None and np.isnan(checked.arrays["b_unl"].mean_ratio)


def test_null_map_sets_are_counted_and_left_out(checked, data):
    with np.load(data) as f:
        zero = ~np.any(f["tru_kappa"].reshape(24, -1) != 0, axis=1)
    np.testing.assert_array_equal(checked.null, zero)  # the seed's draw is what the file holds
    assert all(a.nmaps == (~zero).sum() for a in checked.arrays.values())
    found, sigma = checked.null_fraction
    assert found == zero.mean() and sigma == pytest.approx(np.sqrt(0.2 * 0.8 / 24))
    assert checked.w2 == pytest.approx(np.mean(cosine_taper(32, 7) ** 2)) and checked.w2_source == "window_info.npz"


def test_figure_plots_the_table_numbers(checked, tmp_path):
    from datapipe.check_figure import settings_line
    from datapipe.plotting import dl_factor, save_figure

    fig = plot_data_check(checked)
    lines = {line.get_gid(): line for ax in fig.axes for line in ax.lines if line.get_gid()}
    for name, a in checked.arrays.items():
        np.testing.assert_allclose(lines[f"{name}:measured"].get_ydata(), dl_factor(a.ell) * a.measured)
        if a.expected is not None:
            np.testing.assert_allclose(lines[f"{name}:expected"].get_ydata(), dl_factor(a.ell) * a.expected)
            ratio = lines[f"{name}:ratio"].get_ydata()
            shown = np.isfinite(ratio)
            np.testing.assert_allclose(ratio[shown], a.ratio[shown])
    titles = [ax.get_title() for ax in fig.axes]
    assert any(f"{checked.arrays['tru_kappa'].mean_ratio:.2f}" in t for t in titles if t.startswith("tru_kappa"))
    assert fig._suptitle.get_text() == settings_line(checked) and "null fraction" in settings_line(checked)
    written = save_figure(fig, tmp_path / "check.png")
    assert [p.stat().st_size > 10_000 for p in written] == [True, True]


def test_command_line_prints_the_table_and_writes_the_figure(data, tmp_path, capsys):
    copy = tmp_path / data.name
    shutil.copy(data, copy)
    shutil.copy(data.parent / "window_info.npz", tmp_path / "window_info.npz")
    assert check_cli.main([str(copy), "--max-maps", "12", "--delta-l", "300"]) == 0
    out = capsys.readouterr().out
    assert "data check of maps.npz: 12 map sets" in out and "tru_kappa" in out
    png, pdf = tmp_path / "maps_check.png", tmp_path / "maps_check.pdf"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
    # An existing figure is kept without --overwrite.
    before = png.read_bytes()
    assert check_cli.main([str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--overwrite" in err and err.count("\n") == 1
    assert png.read_bytes() == before


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["missing.npz"], "does not exist"),
        (["folder.npz"], "is a folder"),
        (["DATA", "--output", "x.jpg"], ".png"),
        (["DATA", "--max-maps", "1"], "at least 2"),
        (["DATA", "--delta-l", "0"], "--delta-l"),
        (["DATA", "--output", "no/such/folder/c.png"], "does not exist"),
        (["DATA", "--delta-l", "inf"], "--delta-l must be a positive number"),
        (["DATA", "--delta-l", "nan"], "--delta-l must be a positive number"),
        (["DATA", "--output", "a_file/c.png"], "is not a folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(data, tmp_path, capsys, argv, fragment):
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "folder.npz").mkdir()
    argv = [str(data) if a == "DATA" else (str(tmp_path / a) if a.endswith(".npz") else a) for a in argv]
    if "--output" in argv:
        i = argv.index("--output") + 1
        argv[i] = str(tmp_path / argv[i])
    assert check_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err and err.count("\n") == 1
    assert not list(tmp_path.glob("*.png"))


def test_not_a_map_file(tmp_path, capsys):
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    assert check_cli.main([str(tmp_path / "other.npz")]) == 2
    assert "no (nsims, npix, npix) map arrays" in capsys.readouterr().err


def test_runs_as_a_module_and_every_option_is_documented():
    result = subprocess.run([sys.executable, "-m", "datapipe.check", "--help"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "--max-maps" in result.stdout
    from test_docs import documented_options, parser_options

    documented = documented_options(REPO_ROOT / "docs" / "datapipe.md", "Options of the data check")
    assert set(documented) == set(parser_options(check_cli.build_parser()))


@pytest.mark.parametrize(("error", "status", "fragment"), [
    (OSError(28, "No space left on device"), 1, "error: No space left on device; free some space"),
    (KeyboardInterrupt(), 130, "SIGINT received: stopped"),
])
def test_a_full_disk_or_ctrl_c_while_drawing_is_one_line(data, tmp_path, capsys, monkeypatch, error, status,
                                                         fragment):
    import datapipe.plotting

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(datapipe.plotting, "save_figure", fail)
    assert check_cli.main([str(data), "--output", str(tmp_path / "c.png"), "--max-maps", "4"]) == status
    err = capsys.readouterr().err
    assert err.startswith(fragment) and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())
