#!/usr/bin/env python
"""`make demo`: the project's main job on a small default.

1. Simulates a small data set with the pipeline (paper settings), prints a per-array summary and draws one map set
   to ``images/example_map_set.png``.
2. Evaluates a network against the quadratic estimator on a freshly simulated test set: the shipped noiseless
   network ``trained_networks/noiseless_netw`` when it exists, else a tiny ResUNet-CMB trained here for about a
   minute on the CPU (32×32 maps; it shows the machinery, not the paper's results). Prints the r_L table and the
   lensing-bias table and writes ``metrics.json`` and the figures to ``results/demo/``.
"""

from __future__ import annotations

import contextlib
import json
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
SHIPPED_NETWORK = ROOT / "trained_networks" / "noiseless_netw"
#: Arrays of the evaluation test sets: the network's inputs, the truths and every QE map.
TEST_MAPS = ("q_len", "u_len", "e_unl", "tru_kappa", "tru_tau", "rec_kappa", "rec_tau", "wf_rec_kappa", "wf_rec_tau")
TEST_NSIMS = 64
BIAS_NSIMS = 32
#: The stand-in network: ResUNet-CMB on 32×32 maps (0.3° taper), 300 map sets, two epochs (about a minute here).
TINY_SETTINGS = {"npix": 32, "taper_deg": 0.3}
TINY_NSIMS = 300
TINY_CONFIG = {
    "imagesize": 32,
    "batch_size": 8,
    "epochs": 2,
    "learning_rate": 1e-3,
    "dropval": 0.0,
    "haltpatience": 2,
    "seed": 2021,
}


def simulate(path: Path, nsims: int, seed: int, **settings) -> Path:
    """Simulate the evaluation arrays of ``nsims`` noiseless map sets into ``path`` (``window_info.npz`` beside)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    s = SimulationSettings(seed=seed, maps=TEST_MAPS, **settings)
    return run_simulation(s, path, nsims, workers=2, chunk_size=16, overwrite=True, progress=False)


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
    r2 = ", ".join(f"{k} {v:.2f}" for k, v in summary["test_r2"].items())
    print(f"[demo] trained in {time.monotonic() - start:.0f} s ({summary['epochs_run']} epochs on "
          f"{summary['maps']['train']} map sets); test R²: {r2}")
    return folder / "network"


def main() -> int:
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    data = DEMO_DIR / "map_sets32.npz"
    print(f"[demo] simulating {NSIMS} map sets (paper settings, noiseless) -> {data}")
    run_simulation(SimulationSettings(seed=2021), data, NSIMS, workers=2, chunk_size=16, overwrite=True)
    print(summary_table(data))
    figure = plot_map_set(data, ROOT / "images" / "example_map_set.png", index=1)
    print(f"[demo] wrote {figure}")

    from training.runtime import load_keras

    load_keras()  # before anything imports Keras: without TensorFlow's start-up messages
    if (SHIPPED_NETWORK / "model_architecture.json").is_file() or (SHIPPED_NETWORK / "model.keras").is_file():
        network = SHIPPED_NETWORK
        npix = shipped_imagesize(network)
        print(f"[demo] evaluating the shipped network {network.relative_to(ROOT)} on a fresh test set")
        test = simulate(DEMO_DIR / "test_set" / "map_sets32.npz", TEST_NSIMS, seed=2022, npix=npix)
    else:
        print(f"[demo] no shipped network in {SHIPPED_NETWORK.relative_to(ROOT)} yet: training a tiny ResUNet-CMB "
              f"({TINY_NSIMS} map sets of 32x32, {TINY_CONFIG['epochs']} epochs) for about a minute on the CPU. "
              "Its numbers show the machinery, not the paper's results.")
        network = train_tiny_network(DEMO_DIR / "tiny")
        test = simulate(DEMO_DIR / "test_set" / "map_sets32.npz", TEST_NSIMS, seed=2022, **TINY_SETTINGS)

    from training.config import TrainingError
    from training.evaluate import run_evaluation

    try:
        run_evaluation(network, test, DEMO_DIR, bias_test=True, bias_nsims=BIAS_NSIMS)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
