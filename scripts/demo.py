#!/usr/bin/env python
"""`make demo`: the project's main job on a small default; everything it writes goes to ``results/demo/``.

1. Simulates a small data set with the pipeline (paper settings, seed 2021), prints a per-array summary, draws
   map set 1 (``example_map_set.png``; the copy tracked in ``images/`` comes from ``make images``, i.e.
   ``scripts/make_example_figure.py``, which draws the same map set) and checks the data set's statistics: binned
   spectra of every array against theory (``data_check.png``, ``python -m datapipe.check``).
2. Evaluates a network against the quadratic estimator on a freshly simulated test set: the shipped noiseless
   network ``trained_networks/noiseless_netw`` when it exists, else a stand-in trained here through
   ``training/main.py`` (ResUNet-CMB on 32×32 maps for two epochs: it shows the machinery, not the paper's
   results). Prints the r_L and lensing-bias tables and writes ``metrics.json`` and the figures (PNG + PDF).
3. With the shipped network only: simulates one map 4x its side and predicts it tile by tile with
   ``training/predict.py`` (FITS in and out, ``results/demo/large_map/``).

Everything the demo writes lies under ``results/demo/``; it changes no tracked file. ``--update-images`` (``make
demo-images``) then copies the demo figures the README shows into ``images/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datapipe.runner import run_simulation  # noqa: E402
from datapipe.settings import SimulationSettings  # noqa: E402
from datapipe.summary import plot_map_set, summary_table  # noqa: E402

DEMO_DIR = ROOT / "results" / "demo"
NSIMS = 300
#: The example figure: map set EXAMPLE_INDEX of a data set simulated with the paper's settings and EXAMPLE_SEED.
EXAMPLE_SEED = 2021
EXAMPLE_INDEX = 1
FIGURE = DEMO_DIR / "example_map_set.png"
SHIPPED_NETWORK = ROOT / "trained_networks" / "noiseless_netw"
#: Arrays of the evaluation test sets: the network's inputs, the truths and every QE map.
TEST_MAPS = ("q_len", "u_len", "e_unl", "tru_kappa", "tru_tau", "rec_kappa", "rec_tau", "wf_rec_kappa", "wf_rec_tau")
TEST_NSIMS = 64
BIAS_NSIMS = 32
#: The stand-in network: ResUNet-CMB on 32×32 maps (0.3° taper), 300 map sets, two epochs. Batches of one map
#: give 480 optimizer steps, enough for the running batch-norm statistics, which the network uses when it
#: predicts, to settle; with batches of 8 (60 steps) they have not, and every prediction is off by orders of
#: magnitude (test R² ≈ −200) although the training-mode R² of E is 0.88.
TINY_SETTINGS = {"npix": 32, "taper_deg": 0.3}
TINY_NSIMS = 300
TINY_CONFIG = {
    "imagesize": 32,
    "batch_size": 1,
    "epochs": 2,
    "learning_rate": 1e-3,
    "dropval": 0.0,
    "haltpatience": 2,
    "seed": 2021,
}
#: Demo figures the README shows: results/demo/<source> → images/<target> (the example map set: ``make images``).
README_IMAGES = {
    "data_check.png": "demo_data_check.png",
    "r_ell.png": "demo_r_ell.png",
    "spectra.png": "demo_spectra.png",
    "bias_test.png": "demo_bias_test.png",
}


def simulate(path: Path, nsims: int, seed: int, **settings) -> Path:
    """Simulate the evaluation arrays of ``nsims`` noiseless map sets into ``path`` (``window_info.npz`` beside)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    s = SimulationSettings(seed=seed, maps=TEST_MAPS, **settings)
    return run_simulation(s, path, nsims, workers=2, chunk_size=16, overwrite=True, progress=False)


def simulate_example_data(path: Path, nsims: int, *, workers: int = 2, progress: bool = True, **settings) -> Path:
    """Simulate the demo's data set: ``nsims`` map sets, paper settings (unless overridden) and seed 2021.

    Parameters
    ----------
    path : pathlib.Path
        Output ``.npz`` file (``window_info.npz`` is written beside it); an existing file is replaced.
    nsims : int
        Number of map sets. Map set ``i`` depends only on (seed, ``i``), so any ``nsims > EXAMPLE_INDEX`` gives the
        same example map set.
    workers : int
        Worker processes (the output does not depend on them).
    progress : bool
        Show a progress bar.
    **settings
        Overrides of :class:`datapipe.settings.SimulationSettings` (e.g. ``npix=32`` in the tests).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    return run_simulation(SimulationSettings(seed=EXAMPLE_SEED, **settings), path, nsims, workers=workers,
                          chunk_size=16, overwrite=True, progress=progress)


def draw_example(data: Path, output: Path, pdf: bool = True) -> Path:
    """Draw map set ``EXAMPLE_INDEX`` of ``data`` (observed Q/U, primordial E, true and QE κ and τ) to ``output``.

    Parameters
    ----------
    data : pathlib.Path
        Pipeline output holding at least ``EXAMPLE_INDEX + 1`` map sets.
    output : pathlib.Path
        PNG to write; its folder is created.
    pdf : bool
        Also write a vector PDF beside it.

    Returns
    -------
    pathlib.Path
        ``output``.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    return plot_map_set(data, output, index=EXAMPLE_INDEX, pdf=pdf)


def check_data(data: Path, folder: Path) -> None:
    """Print the data check of the demo's data set and draw ``data_check.png`` (as ``python -m datapipe.check``)."""
    from datapipe.check import main as check_main

    status = check_main([str(data), "--output", str(Path(folder) / "data_check.png"), "--overwrite"])
    if status != 0:
        raise SystemExit(f"[demo] the data check failed (exit {status})")


def shipped_imagesize(folder: Path) -> int:
    """Map side of a shipped network (its summary.json config, else the paper's 128)."""
    try:
        return int(json.loads((folder / "summary.json").read_text())["config"]["imagesize"])
    except (OSError, ValueError, KeyError, TypeError):
        return 128


def train_tiny_network(folder: Path) -> Path:
    """Train the stand-in network through ``training/main.py``; its log goes to ``folder/train_output.txt``."""
    from training import main as training_main

    data = simulate(folder / "train" / "map_sets32.npz", TINY_NSIMS, seed=2023, **TINY_SETTINGS)
    config = folder / "config.json"
    config.write_text(json.dumps({**TINY_CONFIG, "data_path": str(data), "output_dir": str(folder / "network")}))
    start = time.monotonic()
    with open(folder / "train_output.txt", "w") as log, contextlib.redirect_stdout(log):
        status = training_main.main([str(config), "--overwrite"])  # replaces the tiny network of an earlier demo
    if status != 0:
        raise SystemExit(f"[demo] training failed (exit {status}); see {folder / 'train_output.txt'}")
    summary = json.loads((folder / "network" / "summary.json").read_text())
    r2 = summary["test_r2"]
    symbols = {"unle": "E", "tau": "τ", "kappa": "κ"}
    scores = ", ".join(f"{symbols.get(k, k)} {v:.2f}" for k, v in r2.items())
    learnt = [symbols.get(k, k) for k, v in r2.items() if v > 0]
    verdict = (f"It has learnt {' and '.join(learnt)} a little" if learnt else "It has learnt none of its outputs")
    print(f"[demo] stand-in network: {summary['model']} ({summary['parameters']:,} parameters) trained here for "
          f"{summary['epochs_run']} epochs on {summary['maps']['train']} map sets of 32x32 in "
          f"{time.monotonic() - start:.0f} s; test R²: {scores}. {verdict}: it shows the machinery, not the paper's "
          "results (training curves: tiny/network/training_curves.png).")
    return folder / "network"


def predict_large_map(network: Path, npix: int) -> int:
    """Simulate one untapered map set 4x the network's side and predict it tile by tile (FITS in and out)."""
    from pixell import enmap

    from datapipe.fourier import FlatSkyGrid
    from datapipe.simulate import MapSetSimulator
    from training import predict as training_predict

    settings = SimulationSettings(npix=4 * npix, taper_deg=0.0, null_fraction=0.0, seed=2024, maps=("q_len", "u_len"),
                                  qe_mean_field_sims=0)
    maps = MapSetSimulator(settings).simulate([0])
    wcs = FlatSkyGrid(settings.npix, settings.pixel_arcmin).wcs
    folder = DEMO_DIR / "large_map"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("q_len", "u_len"):  # the pipeline's arrays are flipped up-down; FITS enmaps are not
        enmap.write_map(str(folder / f"{name}.fits"), enmap.enmap(maps[name][0][::-1], wcs))
    side_deg = settings.npix * settings.pixel_arcmin / 60
    print(f"[demo] predicting one {settings.npix}x{settings.npix} map ({side_deg:.0f} deg on a side) tile by tile -> "
          f"{folder / 'predicted'}")
    return training_predict.main(["--model-dir", str(network), "--q", str(folder / "q_len.fits"), "--u",
                                  str(folder / "u_len.fits"), "--output", str(folder / "predicted"), "--overwrite"])


def example_step(folder: Path = DEMO_DIR, nsims: int = NSIMS, *, workers: int = 2, progress: bool = True,
                 **settings) -> tuple[Path, Path]:
    """Step 1 of the demo: simulate the data set into ``folder``, print its summary, draw the example figure there.

    Parameters
    ----------
    folder : pathlib.Path
        Output folder (``results/demo/`` in the demo); created if needed.
    nsims : int
        Number of map sets (more than ``EXAMPLE_INDEX``).
    workers : int
        Worker processes of the simulation.
    progress : bool
        Show a progress bar.
    **settings
        Overrides of the paper's simulation settings (the tests use 32×32 maps).

    Returns
    -------
    tuple of pathlib.Path
        The data file ``folder/map_sets32.npz`` and the figure ``folder/example_map_set.png``.
    """
    data = Path(folder) / "map_sets32.npz"
    print(f"[demo] simulating {nsims} map sets (paper settings, noiseless) -> {data}")
    simulate_example_data(data, nsims, workers=workers, progress=progress, **settings)
    print(summary_table(data))
    figure = draw_example(data, Path(folder) / FIGURE.name)
    print(f"[demo] wrote the example map set figure to {figure}")
    return data, figure


def update_images() -> None:
    """Copy the demo figures the README shows from ``results/demo/`` into ``images/``."""
    missing = [name for name in README_IMAGES if not (DEMO_DIR / name).is_file()]
    if missing:
        raise SystemExit(f"[demo] {', '.join(missing)} not in {DEMO_DIR}: run the demo first")
    for source, target in README_IMAGES.items():
        shutil.copyfile(DEMO_DIR / source, ROOT / "images" / target)
        print(f"[demo] images/{target} <- results/demo/{source}")


def build_parser() -> argparse.ArgumentParser:
    """The demo's command line (``make demo``; ``make demo-images`` adds ``--update-images``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update-images", action="store_true",
                        help="after the demo, copy the README's demo figures from results/demo/ into images/")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.monotonic()
    data, _ = example_step(DEMO_DIR, NSIMS)
    check_data(data, DEMO_DIR)

    from training.runtime import load_keras

    load_keras()  # before anything imports Keras: without TensorFlow's start-up messages
    if (SHIPPED_NETWORK / "model_architecture.json").is_file() or (SHIPPED_NETWORK / "model.keras").is_file():
        network = SHIPPED_NETWORK
        npix = shipped_imagesize(network)
        print(f"[demo] evaluating the shipped network {network.relative_to(ROOT)} on a fresh test set")
        test = simulate(DEMO_DIR / "test_set" / "map_sets32.npz", TEST_NSIMS, seed=2022, npix=npix)
    else:
        print(f"[demo] no shipped network in {SHIPPED_NETWORK.relative_to(ROOT)} yet: training a stand-in "
              f"ResUNet-CMB on {TINY_NSIMS} map sets of 32x32 for {TINY_CONFIG['epochs']} epochs (a few minutes "
              "on a CPU)")
        network = train_tiny_network(DEMO_DIR / "tiny")
        test = simulate(DEMO_DIR / "test_set" / "map_sets32.npz", TEST_NSIMS, seed=2022, **TINY_SETTINGS)

    from training.config import TrainingError
    from training.evaluation.run import run_evaluation

    try:
        run_evaluation(network, test, DEMO_DIR, bias_test=True, bias_nsims=BIAS_NSIMS)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if network == SHIPPED_NETWORK:  # the stand-in network's maps would show the machinery only
        status = predict_large_map(network, npix)
        if status != 0:
            return status
    print(f"[demo] done in {time.monotonic() - start:.0f} s; everything is in {DEMO_DIR}")
    if args.update_images:
        update_images()
    return 0


if __name__ == "__main__":
    sys.exit(main())
