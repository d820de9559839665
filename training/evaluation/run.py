"""The whole evaluation of a network folder on a data file: predictions, tables, ``metrics.json``, figures."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluation.bias import bias_settings, run_bias_test, simulate_bias_maps
from training.evaluation.comparison import AVERAGE_RANGES, QE_MAPS, FieldResult, compare_fields, make_edges, null_maps
from training.evaluation.errors import EvaluationError
from training.evaluation.mapdata import MapData, check_compatible, data_settings, inspect_data, load_map_data
from training.evaluation.network import load_network, predict
from training.evaluation.report import format_bias_table, format_table, metrics_dict, write_json

FIGURES = {
    "maps": "map_comparison.png",
    "r_ell": "r_ell.png",
    "spectra": "spectra.png",
    "bias": "bias_test.png",
}


#: Upper bounds of the integer options (inclusive).
OPTION_LIMITS = {"batch_size": (1, 65536), "max_maps": (1, 10**9), "map_index": (0, 10**9),
                 "bias_nsims": (2, 100000), "bias_seed": (0, 2**63 - 1)}


def check_options(**values: int | None) -> None:
    """Check integer options against :data:`OPTION_LIMITS` (``None``: not given).

    Raises
    ------
    EvaluationError
        Naming the option (as on the command line), its allowed range and the bad value.
    """
    for key, value in values.items():
        low, high = OPTION_LIMITS[key]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or not low <= value <= high:
            option = "--" + key.replace("_", "-")
            raise EvaluationError(f"{option} must be an integer from {low} to {high} (got {value!r})")


def check_earlier_results(output: Path, map_figure: str | Path | None) -> None:
    """Refuse to replace the results of an earlier evaluation (in ``output``, or a ``map_figure``).

    Raises
    ------
    EvaluationError
        Naming the files, and ``--overwrite``.
    """
    names = ["metrics.json", "table.txt", "predictions.npz"]
    names += [n for png in FIGURES.values() for n in (png, str(Path(png).with_suffix(".pdf")))]
    present = [str(output / n) for n in names if (output / n).exists()]
    if map_figure is not None:
        present += [str(p) for p in (Path(map_figure).with_suffix(".png"), Path(map_figure).with_suffix(".pdf"))
                    if p.exists()]
    if present:
        more = f" and {len(present) - 3} more" if len(present) > 3 else ""
        raise EvaluationError(f"{', '.join(present[:3])}{more} already exist (an earlier evaluation); pass "
                              "--overwrite to replace them or choose another --output")


def _save(fig: Any, path: Path) -> list[str]:
    """Write a figure (PNG and PDF) and return the names of the files written."""
    from training.evaluation import figures

    return [p.name for p in figures.save(fig, path)]


def pick_map_index(results: Mapping[str, FieldResult], data: MapData) -> int:
    """The first map set whose truth maps are all non-zero (not a null map set), else 0."""
    masks = [~null_maps(data.arrays[r.truth]) for r in results.values()]
    if not masks:
        return 0
    good = np.flatnonzero(np.logical_and.reduce(masks))
    return int(good[0]) if good.size else 0


def run_evaluation(
    model_dir: str | Path,
    data_path: str | Path,
    output: str | Path,
    *,
    max_maps: int | None = None,
    batch_size: int = 16,
    edges: np.ndarray | None = None,
    map_index: int | None = None,
    map_figure: str | Path | None = None,
    pixel_arcmin: float | None = None,
    bias_test: bool = False,
    bias_data: str | Path | None = None,
    bias_nsims: int = 64,
    bias_seed: int | None = None,
    save_predictions: bool = False,
    overwrite: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    """Evaluate a network folder on a data file and write ``metrics.json``, ``table.txt`` and the figures.

    Each figure is written as a PNG and a vector PDF of the same stem (:data:`FIGURES` names the PNGs).

    Parameters
    ----------
    model_dir : str or pathlib.Path
        Network folder (see :func:`load_network`).
    data_path : str or pathlib.Path
        Pipeline data file with the network's input maps and, for the metrics, the truth and QE maps.
    output : str or pathlib.Path
        Folder for the outputs (created).
    max_maps : int, optional
        Use only the first ``max_maps`` map sets.
    batch_size : int
        Maps per forward pass.
    edges : ndarray, optional
        Multipole bin edges (default ΔL = 100 from 20 to 3500).
    map_index : int, optional
        Map set shown in the map figure (default: the first with non-zero truths).
    map_figure : str or pathlib.Path, optional
        Also write the map figure here (e.g. ``images/ResUNet-CMB_map_results.png``).
    pixel_arcmin : float, optional
        Pixel size for data without metadata.
    bias_test : bool
        Run the lensing-bias test.
    bias_data : str or pathlib.Path, optional
        Read its τ-free lensed maps from this file instead of simulating them.
    bias_nsims : int
        Map sets simulated for the bias test (or read from ``bias_data``: the first ``bias_nsims``).
    bias_seed : int, optional
        Their seed (default: the data's seed + 1).
    save_predictions : bool
        Also write ``predictions.npz`` (``<output>_pred`` in physical units).
    overwrite : bool
        Replace the results of an earlier evaluation in ``output`` (and ``map_figure``); False: refuse them.
    log : callable
        Where the table and notes go (default ``print``).

    Returns
    -------
    dict
        The content of ``metrics.json``.

    Raises
    ------
    EvaluationError
        On bad input, or when nothing can be evaluated (no truth array and no bias test).
    """
    from training.artifacts import check_output_folder
    from training.evaluation import figures
    from training.runtime import load_keras

    output = Path(output)
    check_options(batch_size=batch_size, max_maps=max_maps, map_index=map_index, bias_nsims=bias_nsims,
                  bias_seed=bias_seed)
    edges = make_edges() if edges is None else np.asarray(edges, dtype=float)
    # Where the results go, before any prediction: a folder that cannot be written fails now.
    check_output_folder(output, "--output")
    if map_figure is not None:
        check_output_folder(Path(map_figure).parent, "--map-figure")
    if not overwrite:
        check_earlier_results(output, map_figure)
    shapes = inspect_data(data_path)
    if bias_data is not None:
        inspect_data(bias_data)
    load_keras()  # without TensorFlow's start-up messages
    network = load_network(model_dir)
    check_compatible(network, shapes, data_path)
    wanted = [*network.inputs.values()]
    for truth in network.outputs.values():
        wanted += [truth, *QE_MAPS.get(truth, ())]
    data = load_map_data(data_path, wanted, max_maps, pixel_arcmin)
    if map_index is not None and not 0 <= map_index < data.nmaps:
        raise EvaluationError(f"--map-index {map_index} is outside the {data.nmaps} map sets read")
    notes = [*network.notes, *data.notes]
    for note in notes:
        log(f"note: {note}")
    log(f"network: {network.folder} ({network.source}); data: {data.path} ({data.nmaps} map sets of "
        f"{data.npix}x{data.npix}, {data.pixel_arcmin}' pixels, w2 = {data.w2:.4f} from {data.w2_source})")

    predictions = predict(network, data.arrays, batch_size)
    results, skipped = compare_fields(predictions, network.outputs, data, edges)
    for line in skipped:
        log(f"note: {line}")
    if not results and not bias_test:
        raise EvaluationError(
            f"nothing to evaluate: {data.path} has none of the truth arrays {', '.join(network.outputs.values())}"
        )
    output.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    metrics: dict[str, Any] = {
        "model_dir": str(network.folder),
        "network_files": network.source,
        "inputs": network.inputs,
        "outputs": network.outputs,
        "data": str(data.path),
        "nmaps": data.nmaps,
        "npix": data.npix,
        "pixel_arcmin": data.pixel_arcmin,
        "w2": data.w2,
        "w2_source": data.w2_source,
        "bins": {"edges": edges.tolist(), "rule": "bin_lo <= |L| < bin_hi; bins without Fourier modes are dropped"},
        "r_average_ranges": [list(r) for r in AVERAGE_RANGES],
        "fields": metrics_dict(results),
        "skipped": skipped,
        "notes": notes,
        "bias_test": None,
        "files": written,
    }
    if results:
        table = format_table(results)
        log(table)
        index = pick_map_index(results, data) if map_index is None else map_index
        truths = {r.label: data.arrays[r.truth][index] for r in results.values()}
        preds = {r.label: predictions[name][index] for name, r in results.items()}
        qe_maps = {}
        for r in results.values():
            # The Wiener-filtered QE map, if there is one, shares the truth's colour scale best.
            for qe_name in reversed(QE_MAPS.get(r.truth, ())):
                if qe_name in r.qe and r.label not in qe_maps:
                    qe_maps[r.label] = (qe_name, data.arrays[qe_name][index])
        units = {r.label: r.units for r in results.values()}
        fig = figures.plot_map_comparison(truths, preds, qe_maps, data.pixel_arcmin, index, units)
        written += _save(fig, output / FIGURES["maps"])
        if map_figure is not None:
            figures.save(fig, Path(map_figure))
        written += _save(figures.plot_r_ell(results), output / FIGURES["r_ell"])
        written += _save(figures.plot_spectra(results), output / FIGURES["spectra"])
        metrics["map_index"] = index
    else:
        table = ""

    if bias_test:
        if bias_data is not None:
            names = [*network.inputs.values(), "tru_kappa", "rec_tau"]
            bias = load_map_data(bias_data, names, bias_nsims, pixel_arcmin)
            for note in bias.notes:
                log(f"note: {note}")
            if "tru_tau" in bias.arrays and not null_maps(bias.arrays["tru_tau"]).all():
                log(f"note: {bias_data} has non-zero tru_tau; the bias test expects maps made with --no-tau")
            settings = data_settings(bias.metadata, bias.npix)
            bias_arrays, taper, source = bias.arrays, bias.taper, str(bias.path)
        else:
            settings = bias_settings(data, bias_seed, list(network.inputs.values()))
            log(f"bias test: simulating {bias_nsims} lensed map sets with τ = 0 (seed {settings.seed})")
            bias_arrays, taper = simulate_bias_maps(settings, bias_nsims)
            source = f"simulated, seed {settings.seed}"
        result = run_bias_test(bias_arrays, settings, taper, edges, network, batch_size, source)
        bias_table = format_bias_table(result)
        log(bias_table)
        table = f"{table}\n\n{bias_table}" if table else bias_table
        written += _save(figures.plot_bias_test(result), output / FIGURES["bias"])
        metrics["bias_test"] = result.to_dict()

    if save_predictions:
        from training.artifacts import save_npz

        save_npz(output / "predictions.npz", {f"{k}_pred": v for k, v in predictions.items()})
        written.append("predictions.npz")
    from training.artifacts import save_text

    save_text(output / "table.txt", table + "\n")
    written += ["table.txt", "metrics.json"]
    write_json(output / "metrics.json", metrics)
    log(f"wrote {', '.join(written)} to {output}")
    return metrics
