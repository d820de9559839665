"""Shared inputs of the evaluation tests: small pipeline data sets and one tiny trained network per session.

The network is the small stand-in of ``tests/training_helpers.py`` (ResUNet-CMB's inputs and outputs, a few
hundred parameters) trained through ``training/main.py`` for one epoch on 40 map sets of 32×32 pixels. It predicts
nothing useful; the tests check the machinery around it, which does not depend on the architecture (it is saved
and loaded like any Keras model). It is trained once per pytest process and shared by ``test_evaluate.py`` and
``test_notebook.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from training_helpers import tiny_model

from datapipe.runner import run_simulation
from datapipe.settings import SimulationSettings

NPIX = 32
TAPER_DEG = 0.3
EVAL_MAPS = ("q_len", "u_len", "e_unl", "tru_kappa", "tru_tau", "rec_kappa", "rec_tau", "wf_rec_kappa", "wf_rec_tau")
TINY_CONFIG = {
    "imagesize": NPIX,
    "batch_size": 4,
    "epochs": 1,
    "learning_rate": 1e-3,
    "dropval": 0.0,
    "training_split": 0.8,
    "val_split": 0.1,
    "test_split": 0.1,
    "trace_used": ["rec_kappa", "rec_tau"],
    "seed": 3,
    "model": "tiny_model",
}

_cache: dict[str, Path] = {}


def simulate(path: Path, nsims: int, seed: int, maps=EVAL_MAPS, **settings) -> Path:
    """Write a 32×32 pipeline data set (``window_info.npz`` beside it) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    s = SimulationSettings(**{"npix": NPIX, "taper_deg": TAPER_DEG, "seed": seed, "maps": tuple(maps), **settings})
    return run_simulation(s, path, nsims, progress=False)


def tiny_network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the session's tiny trained network (trained on first use)."""
    if "network" not in _cache:
        from training import main as tmain
        from training import resunet

        folder = tmp_path_factory.mktemp("tiny_network")
        simulate(folder / "train" / "maps.npz", 40, seed=1)
        cfg = dict(TINY_CONFIG, data_path="train/maps.npz", output_dir="net")
        (folder / "config.json").write_text(json.dumps(cfg))
        with pytest.MonkeyPatch.context() as mp:
            mp.setitem(resunet.MODELS, "tiny_model", tiny_model)
            assert tmain.main([str(folder / "config.json")]) == 0
        _cache["network"] = folder / "net"
    return _cache["network"]


def eval_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh 32×32 evaluation data set (16 map sets, every QE array) made by the pipeline."""
    if "data" not in _cache:
        _cache["data"] = simulate(tmp_path_factory.mktemp("eval_data") / "maps.npz", 16, seed=2)
    return _cache["data"]
