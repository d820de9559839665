"""Tests of training/evaluate.py: taper correction, loading and rescaling, the CLI end to end, the bias test and
bad input. One tiny network (tests/evaluation_helpers.py) is trained per session and shared."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from evaluation_helpers import NPIX, eval_data, simulate, tiny_network

from datapipe.fields import GaussianFieldGenerator
from datapipe.fourier import FlatSkyGrid
from datapipe.powspec import bin_theory, linear_bins
from datapipe.taper import cosine_taper
from datapipe.writer import read_metadata
from training import evaluate as evaluate_cli
from training.evaluation import bias as biasmod
from training.evaluation import comparison, mapdata
from training.evaluation import network as netmod
from training.evaluation.crosscorr import DEFAULT_EDGES, reconstruction_stats

REPO_ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> Path:
    return tiny_network(tmp_path_factory)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return eval_data(tmp_path_factory)


def _strict_json(path: Path):
    def reject(token):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)


def _copy_data(src: Path, folder: Path, keep=None, window: bool = True) -> Path:
    """A copy of a data set with only the ``keep`` arrays (all by default), with or without window_info.npz."""
    folder.mkdir(parents=True, exist_ok=True)
    with np.load(src) as f:
        arrays = {k: f[k] for k in f.files if keep is None or k in keep or k == "metadata"}
    np.savez(folder / src.name, **arrays)
    if window:
        shutil.copy(src.parent / "window_info.npz", folder / "window_info.npz")
    return folder / src.name


# --------------------------------------------------------------------------------------------------------------
# Taper correction


def test_w2_correction_recovers_the_spectrum_of_a_tapered_gaussian_field(spectra, tmp_path):
    n, pix, nmaps = 64, 2.34375, 60
    grid = FlatSkyGrid(n, pix)
    white = np.random.default_rng(11).standard_normal((nmaps, 4, n, n)).astype(np.float32)
    kappa = grid.irfft(GaussianFieldGenerator(grid, spectra).fields(white).kappa).astype(np.float64)
    taper = cosine_taper(n, int(0.5 * 60 / pix))
    # The data set as the pipeline would write it, but without window_info.npz: w2 is rebuilt from the metadata.
    meta = {"settings": {"npix": n, "pixel_arcmin": pix, "taper_deg": 0.5}}
    np.savez(tmp_path / "maps.npz", tru_kappa=(kappa * taper)[:, ::-1].astype(np.float32),
             metadata=np.array(json.dumps(meta)))
    maps = mapdata.load_map_data(tmp_path / "maps.npz")
    assert maps.w2_source == "metadata"
    np.testing.assert_allclose(maps.w2, np.mean(taper**2), rtol=1e-12)

    edges = linear_bins(500, 3000, 500)
    tapered = maps.arrays["tru_kappa"]
    corrected = reconstruction_stats(tapered, tapered, pix, maps.w2, edges)
    raw = reconstruction_stats(tapered, tapered, pix, 1.0, edges)
    theory = bin_theory(grid, spectra.kk, edges)[: len(corrected.ell)]
    # Cosmic variance of a bin: 2/N per mode pair, with the taper's effective mode count N w2²/w4.
    w4 = np.mean(taper**4)
    sigma = np.sqrt(2.0 / (corrected.nmodes * nmaps * maps.w2**2 / w4))
    z = (corrected.cl_true / theory - 1) / sigma
    assert np.all(np.abs(z) < 4), z
    # Without the correction the power is low by w2, far outside the same tolerance.
    assert np.all(np.abs(raw.cl_true / theory - 1) / sigma > 4)


def test_taper_from_window_file_metadata_or_none(data, tmp_path):
    from_window = mapdata.load_map_data(data)
    assert from_window.w2_source == "window_info.npz"
    assert from_window.w2 == pytest.approx(read_metadata(data)["w2"], rel=1e-12)
    rebuilt = mapdata.load_map_data(_copy_data(data, tmp_path / "nowindow", window=False))
    assert rebuilt.w2_source == "metadata"
    assert rebuilt.w2 == pytest.approx(from_window.w2, rel=1e-12)
    np.testing.assert_allclose(rebuilt.taper, from_window.taper, atol=1e-12)

    # A window file of another map size is ignored with a note.
    other = tmp_path / "wrong"
    copy = _copy_data(data, other, window=False)
    np.savez(other / "window_info.npz", taper=np.ones((8, 8)), w2=np.float64(1.0))
    wrong = mapdata.load_map_data(copy)
    assert wrong.w2_source == "metadata" and any("8x8" in note for note in wrong.notes)

    # No metadata and no window file: no correction, and a note says so.
    bare = tmp_path / "bare"
    bare.mkdir()
    with np.load(data) as f:
        np.savez(bare / "maps.npz", q_len=f["q_len"])
    plain = mapdata.load_map_data(bare / "maps.npz")
    assert plain.w2 == 1.0 and plain.w2_source == "none"
    assert any("w2 = 1" in note for note in plain.notes) and any("--pixel-arcmin" in note for note in plain.notes)


def test_partial_reads_match_the_full_arrays(data, tmp_path):
    full = mapdata.load_map_data(data, ["q_len", "tru_tau"])
    head = mapdata.load_map_data(data, ["q_len", "tru_tau", "no_such_array"], max_maps=5)
    assert head.nmaps == 5 and head.missing == ["no_such_array"]
    # The same map sets written as HDF5 (map set i depends only on the seed and i).
    h5_path = simulate(tmp_path / "maps.h5", 5, seed=read_metadata(data)["seed"])
    h5 = mapdata.load_map_data(h5_path, ["q_len", "tru_tau"], max_maps=3)
    assert h5.w2_source == "window_info.npz" and h5.w2 == full.w2
    for name in ("q_len", "tru_tau"):
        np.testing.assert_array_equal(head.arrays[name], full.arrays[name][:5])
        np.testing.assert_array_equal(h5.arrays[name], full.arrays[name][:3])


# --------------------------------------------------------------------------------------------------------------
# Loading the network and rescaling its predictions


def test_predictions_in_physical_units_match_the_training_run(network):
    net = netmod.load_network(network)
    assert net.source == "model_architecture.json + model.weights.h5"
    assert net.inputs == {"qlen": "q_len", "ulen": "u_len"} and net.imagesize == NPIX
    with np.load(network / "test_data.npz") as f:
        test = {k.removesuffix("_test"): f[k] for k in f.files}
    with np.load(network / "predictions.npz") as f:
        expected = {k.removesuffix("_pred"): f[k] for k in f.files}
    got = netmod.predict(net, test, batch_size=3)
    assert sorted(got) == sorted(expected)
    for name, pred in got.items():
        # The training run predicted with the in-memory model; this one was rebuilt from the JSON and weights.
        np.testing.assert_allclose(pred, expected[name], rtol=1e-4, atol=1e-5 * np.std(expected[name]))


@pytest.mark.parametrize("layout", ["shipped", "keras_only"])
def test_other_network_folder_layouts(network, tmp_path, layout):
    folder = tmp_path / layout
    folder.mkdir()
    for name in ("map_means.npz", "map_stds.npz"):
        shutil.copy(network / name, folder / name)
    if layout == "shipped":  # architecture + weights under another name, no summary.json
        shutil.copy(network / "model_architecture.json", folder / "model_architecture.json")
        shutil.copy(network / "model.weights.h5", folder / "noiseless_netw.weights.h5")
    else:
        shutil.copy(network / "model.keras", folder / "model.keras")
        shutil.copy(network / "summary.json", folder / "summary.json")
    net = netmod.load_network(folder)
    assert net.outputs == {"tau": "tru_tau", "unle": "e_unl", "kappa": "tru_kappa"}
    assert (layout == "shipped") == any("summary.json" in note for note in net.notes)
    reference = netmod.load_network(network)
    with np.load(network / "test_data.npz") as f:
        maps = {"q_len": f["q_len_test"], "u_len": f["u_len_test"]}
    got, ref = netmod.predict(net, maps), netmod.predict(reference, maps)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-6 * np.std(ref[name]))


# --------------------------------------------------------------------------------------------------------------
# The command line end to end


@pytest.fixture(scope="module")
def cli_run(network, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation")
    argv = ["--model-dir", str(network), "--data", str(data), "--output", str(out / "eval"), "--save-predictions",
            "--map-figure", str(out / "extra" / "maps.png"), "--bias-test", "--bias-nsims", "16", "--batch-size", "5"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = evaluate_cli.main(argv)
    return rc, out, stdout.getvalue()


def test_cli_writes_every_file(cli_run):
    rc, out, _ = cli_run
    assert rc == 0
    for name in ("map_comparison.png", "r_ell.png", "spectra.png", "bias_test.png"):
        assert (out / "eval" / name).read_bytes()[:8] == PNG_MAGIC, name
    assert (out / "extra" / "maps.png").read_bytes()[:8] == PNG_MAGIC
    metrics = _strict_json(out / "eval" / "metrics.json")
    assert sorted(metrics["files"]) == sorted(p.name for p in (out / "eval").iterdir())
    with np.load(out / "eval" / "predictions.npz") as f:
        assert sorted(f.files) == ["kappa_pred", "tau_pred", "unle_pred"]
        assert f["tau_pred"].shape == (metrics["nmaps"], NPIX, NPIX)


def test_metrics_pair_each_field_with_its_truth_and_qe(cli_run, data):
    _, out, printed = cli_run
    metrics = _strict_json(out / "eval" / "metrics.json")
    fields = metrics["fields"]
    assert list(fields) == ["tau", "kappa", "unle"]
    assert sorted(fields["tau"]["qe"]) == ["rec_tau", "wf_rec_tau"]
    assert sorted(fields["kappa"]["qe"]) == ["rec_kappa", "wf_rec_kappa"]
    assert fields["unle"]["qe"] == {}
    maps = mapdata.load_map_data(data)
    for name, truth, qe in (("kappa", "tru_kappa", "rec_kappa"), ("tau", "tru_tau", "rec_tau")):
        live = ~comparison.null_maps(maps.arrays[truth])
        entry = fields[name]
        assert entry["nmaps"] == live.sum() and entry["null_maps_left_out"] == (~live).sum()
        # The QE statistics are those of the QE map against its own truth, on the non-null map sets.
        direct = reconstruction_stats(maps.arrays[truth][live], maps.arrays[qe][live], maps.pixel_arcmin, maps.w2)
        np.testing.assert_allclose(entry["qe"][qe]["r"], direct.r, rtol=1e-10)
        np.testing.assert_allclose(entry["qe"][qe]["cl_true"], direct.cl_true, rtol=1e-10)
        nbins = len(entry["network"]["ell"])
        for key in ("r", "r_err", "cl_true", "cl_rec", "cl_cross", "cl_residual", "noise", "bin_lo", "bin_hi"):
            assert len(entry["network"][key]) == nbins, key
    edges = metrics["bins"]["edges"]
    np.testing.assert_array_equal(edges, DEFAULT_EDGES)  # ΔL = 100 from L = 20
    # The printed table holds the averages written to metrics.json.
    row = next(line for line in printed.splitlines() if "QE rec_kappa" in line)
    expected = fields["kappa"]["qe"]["rec_kappa"]["mean_r"]
    assert [float(v) for v in row.split()[-2:]] == pytest.approx([expected["100-1000"], expected["1000-2000"]],
                                                                 abs=5e-4)
    assert (out / "eval" / "table.txt").read_text().startswith("mean r_L")


def test_bias_test_on_a_tiny_configuration(cli_run, data):
    _, out, printed = cli_run
    bias = _strict_json(out / "eval" / "metrics.json")["bias_test"]
    assert bias["nmaps"] == 16 and "lensing-bias test" in printed
    assert set(bias["spurious_power"]) == set(biasmod.BIAS_ROWS)
    ell = np.array(bias["ell"])
    sel = (ell > 300) & (ell < 3000)
    part = np.array(bias["spurious_power"]["qe_kappa_part"])[sel]
    part_err = np.array(bias["spurious_power_error"]["qe_kappa_part"])[sel]
    first = np.array(bias["spurious_power"]["qe_first_order"])[sel]
    first_err = np.array(bias["spurious_power_error"]["qe_first_order"])[sel]
    # The τ QE's response to κ, measured on τ-free lensed maps, agrees with the first-order prediction R² C^κκ
    # within the scatter over map sets (pooled over the bins).
    assert abs(part.sum() - first.sum()) < 4 * np.sqrt(np.sum(part_err**2) + np.sum(first_err**2))
    # And the τ QE reports far more τ power than the true τ spectrum, although τ = 0.
    assert np.all(np.array(bias["ratio_to_cl_tau"]["qe_total"])[sel] > 10)


def test_bias_maps_are_lensed_and_tau_free(data):
    maps = mapdata.load_map_data(data, ["q_len"])
    settings = biasmod.bias_settings(maps, names=["q_len", "u_len"])
    assert (settings.npix, settings.taper_deg, settings.seed) == (NPIX, 0.3, read_metadata(data)["seed"] + 1)
    arrays, taper = biasmod.simulate_bias_maps(settings, 4)
    assert np.all(arrays["tru_tau"] == 0)
    assert np.all(np.std(arrays["tru_kappa"], axis=(1, 2)) > 0)  # no null map sets
    np.testing.assert_allclose(taper, maps.taper)


def test_bias_test_reads_maps_made_with_no_tau(network, data, tmp_path, capsys):
    bias_file = simulate(tmp_path / "bias" / "notau.npz", 6, seed=5, tau=False,
                         maps=("q_len", "u_len", "tru_kappa", "tru_tau", "rec_tau"))
    rc = evaluate_cli.main(["--model-dir", str(network), "--data", str(data), "--output", str(tmp_path / "out"),
                  "--max-maps", "4", "--bias-test", "--bias-data", str(bias_file)])
    assert rc == 0
    bias = _strict_json(tmp_path / "out" / "metrics.json")["bias_test"]
    assert bias["nmaps"] == 6 and bias["source"] == str(bias_file)
    assert "non-zero tru_tau" not in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------------------
# Bad input


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_missing_model_folder_fails_fast_from_the_command_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "training" / "evaluate.py"), "--model-dir", str(tmp_path / "nope"),
         "--data", str(tmp_path / "data.npz")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0], result.stderr


@pytest.mark.parametrize(
    "remove, message",
    [
        ({"*"}, "has neither model_architecture.json"),
        ({"map_stds.npz"}, "lacks map_stds.npz"),
    ],
)
def test_incomplete_model_folder(network, data, tmp_path, capsys, remove, message):
    folder = tmp_path / "net"
    shutil.copytree(network, folder, ignore=shutil.ignore_patterns("checkpoint"))
    for pattern in remove:
        if pattern == "*":
            for name in ("model_architecture.json", "model.weights.h5", "model.keras"):
                (folder / name).unlink()
        else:
            (folder / pattern).unlink()
    assert evaluate_cli.main(["--model-dir", str(folder), "--data", str(data), "--output", str(tmp_path / "o")]) == 2
    line = _error(capsys)
    assert message in line and "it has:" in line


def test_map_size_mismatch(network, tmp_path, capsys):
    small = simulate(tmp_path / "small" / "maps.npz", 2, seed=4, maps=("q_len", "u_len", "tru_tau"), npix=16)
    assert evaluate_cli.main(["--model-dir", str(network), "--data", str(small)]) == 2
    assert "takes 32x32 maps" in _error(capsys)


@pytest.mark.parametrize(
    "keep, rc, expected",
    [
        (("tru_tau", "tru_kappa"), 2, "lacks the network's input array(s) q_len, u_len"),
        (("q_len", "u_len"), 2, "nothing to evaluate"),
        (("q_len", "u_len", "tru_tau", "e_unl", "rec_tau"), 0, "truth array 'tru_kappa' not in the data"),
    ],
)
def test_data_missing_arrays(network, data, tmp_path, capsys, keep, rc, expected):
    partial = _copy_data(data, tmp_path / "partial", keep=keep)
    out = tmp_path / "out"
    assert evaluate_cli.main(["--model-dir", str(network), "--data", str(partial), "--output", str(out)]) == rc
    captured = capsys.readouterr()
    if rc == 2:
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], captured.err
        assert not (out / "metrics.json").exists()
    else:
        assert expected in captured.out
        metrics = _strict_json(out / "metrics.json")
        assert sorted(metrics["fields"]) == ["tau", "unle"]
        assert list(metrics["fields"]["tau"]["qe"]) == ["rec_tau"]
        assert any("tru_kappa" in line for line in metrics["skipped"])


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--max-maps", "0"], "--max-maps must be an integer from 1 to"),
        (["--delta-l", "0"], "multipole bins"),
        (["--map-index", "99"], "--map-index 99 is outside"),
        (["--bias-data", "x.npz"], "--bias-data needs --bias-test"),
        (["--batch-size", "0"], "--batch-size must be an integer from 1 to 65536"),
        # Non-finite and absurd values (each was a traceback, or a run with wrong numbers).
        (["--lmax", "inf"], "multipole bins need finite"),
        (["--lmin", "nan"], "multipole bins need finite"),
        (["--delta-l", "1e-9"], "makes more than 10000 bins"),
        (["--pixel-arcmin", "inf"], "pixel size must be a number in (0, 60] arcmin (got inf)"),
        (["--pixel-arcmin", "nan"], "pixel size must be a number in (0, 60] arcmin (got nan)"),
        (["--map-index", "-1"], "--map-index must be an integer from 0 to"),
        (["--bias-test", "--bias-nsims", "10000000"], "--bias-nsims must be an integer from 2 to 100000"),
        (["--bias-test", "--bias-seed", "-4"], "--bias-seed must be an integer from 0 to"),
        (["--pixel-arcmin", "0"], "pixel size must be a number in (0, 60] arcmin"),
        (["--pixel-arcmin", "-2.3"], "pixel size must be a number in (0, 60] arcmin"),
        (["--bias-test", "--bias-nsims", "1"], "--bias-nsims must be an integer from 2 to 100000"),
        (["--bias-test", "--bias-nsims", "0"], "--bias-nsims must be an integer from 2 to 100000"),
        (["--bias-test", "--bias-nsims", "-8"], "--bias-nsims must be an integer from 2 to 100000"),
        (["--lmin", "3000", "--lmax", "100"], "0 <= lmin < lmax"),
        (["--lmin", "-20"], "0 <= lmin < lmax"),
        (["--lmin", "500", "--lmax", "500"], "0 <= lmin < lmax"),
        (["--lmin", "100", "--lmax", "150"], "0 < delta_l <= lmax - lmin"),
    ],
)
def test_bad_options(network, data, tmp_path, capsys, monkeypatch, extra, expected):
    from training.evaluation import run as evaluation_run

    def predicted(*args, **kwargs):
        raise AssertionError("predicted before the options were checked")

    monkeypatch.setattr(evaluation_run, "predict", predicted)
    argv = ["--model-dir", str(network), "--data", str(data), "--output", str(tmp_path / "o"), *extra]
    assert evaluate_cli.main(argv) == 2
    assert expected in _error(capsys)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("where", ["/proc/self/sub/eval", "file", "figure"])
def test_an_output_that_cannot_be_written_fails_before_predicting(network, data, tmp_path, capsys, monkeypatch,
                                                                  where):
    from training.evaluation import run as evaluation_run

    def predicted(*args, **kwargs):
        raise AssertionError("predicted before the output was checked")

    monkeypatch.setattr(evaluation_run, "predict", predicted)
    (tmp_path / "plain").write_text("a file")
    output, extra, fragment = where, [], "cannot be made: /proc/"
    if where == "file":
        output, fragment = str(tmp_path / "plain" / "eval"), "plain is not a folder; choose another --output"
    elif where == "figure":
        output, extra = str(tmp_path / "o"), ["--map-figure", str(tmp_path / "plain" / "maps.png")]
        fragment = "plain is not a folder; choose another --map-figure"
    assert evaluate_cli.main(["--model-dir", str(network), "--data", str(data), "--output", output, *extra]) == 2
    assert fragment in _error(capsys)


def test_an_earlier_evaluation_is_kept_without_overwrite(cli_run, network, data, capsys):
    _, out, _ = cli_run
    before = {p.name: p.stat().st_mtime_ns for p in (out / "eval").iterdir()}
    base = ["--model-dir", str(network), "--data", str(data), "--max-maps", "4"]
    assert evaluate_cli.main([*base, "--output", str(out / "eval")]) == 2
    err = _error(capsys)
    assert "metrics.json" in err and "already exist (an earlier evaluation); pass --overwrite" in err
    assert {p.name: p.stat().st_mtime_ns for p in (out / "eval").iterdir()} == before
    figure = ["--map-figure", str(out / "extra" / "maps.png")]
    assert evaluate_cli.main([*base, "--output", str(out / "new"), *figure]) == 2
    assert "extra/maps.png" in _error(capsys) and not (out / "new").exists()


def test_a_full_disk_while_writing_the_results_is_one_line(network, data, tmp_path, capsys, monkeypatch):
    import errno

    from training import artifacts

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(artifacts, "save_text", full)
    out = tmp_path / "o"
    assert evaluate_cli.main(["--model-dir", str(network), "--data", str(data), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: No space left on device ({out / 'table.txt'}); free some space or choose another --output\n"
    assert not (out / "metrics.json").exists()


def test_sigterm_while_writing_the_results_is_one_line(network, data, tmp_path, capsys, monkeypatch):
    """SIGTERM from a batch scheduler while the results are written: exit 143 and one line; every file left in the
    output folder is complete (no temporary part) and the signal handler is restored."""
    import signal
    import time

    from training import artifacts

    real_save_text = artifacts.save_text

    def terminate(path, text):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises here
        return real_save_text(path, text)

    monkeypatch.setattr(artifacts, "save_text", terminate)
    handler = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "o"
    assert evaluate_cli.main(["--model-dir", str(network), "--data", str(data), "--output", str(out)]) == 143
    err = capsys.readouterr().err
    assert err == "SIGTERM received: stopped; each file written so far is complete, the rest were not written\n"
    assert not (out / "table.txt").exists() and not (out / "metrics.json").exists()
    assert not [path.name for path in out.rglob("*") if path.name.startswith(artifacts.PARTIAL_PREFIX)]
    assert signal.getsignal(signal.SIGTERM) == handler


def test_errors_after_keras_loads_are_one_line_from_the_command_line(network, tmp_path):
    """TensorFlow's start-up messages are hidden: a map-size mismatch, found once Keras is loaded, is the only
    line on stderr."""
    small = simulate(tmp_path / "small" / "maps.npz", 2, seed=4, maps=("q_len", "u_len", "tru_tau"), npix=16)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "training" / "evaluate.py"), "--model-dir", str(network), "--data",
         str(small), "--output", str(tmp_path / "o")], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "takes 32x32 maps" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_missing_data_file(network, tmp_path, capsys):
    assert evaluate_cli.main(["--model-dir", str(network), "--data", str(tmp_path / "none.npz")]) == 2
    assert "data file" in _error(capsys)
