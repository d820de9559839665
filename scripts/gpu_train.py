#!/usr/bin/env python
"""Train the reference ResUNet-CMB networks on one GPU within a fixed wall-clock budget.

Runs on a bare machine with Python, JAX, numpy, scipy and h5py but no TensorFlow and no internet (the missing
wheels are installed by ``scripts/gpu_train.sh``). For each requested network it:

1. trains ``ResUNet_CMB`` under ``KERAS_BACKEND=jax`` on fresh simulations streamed from the pipeline
   (``"data_path": "simulate"``, simulation workers on the CPU cores), with the paper's hyperparameters except the
   learning rate (see :data:`LEARNING_RATE`), checkpointing every epoch and stopping itself before the budget
   (``training/main.py --time-limit``); several networks train side by side on the one GPU;
2. simulates a held-out evaluation set with the pipeline (another seed) and runs ``training/evaluate.py`` on it
   (r_L of the network and of the QE, spectra, figures, lensing-bias test);
3. packs what ships into at most 3 files per network under ``--out``: ``<name>.tar`` (config, map means/stds,
   architecture, training log, summary, metrics, figures) and the model-only weights split into
   ``<name>.weights.h5.part<k>`` pieces of at most 15 MiB (for transfer channels that limit file sizes).

Reassemble here with ``python scripts/gpu_unpack.py DIR``.

``--dry-run`` runs the same steps on the CPU with a tiny configuration (32×32 maps, a few steps), as a check
before spending GPU time::

    KERAS_BACKEND=jax python scripts/gpu_train.py --dry-run --out /tmp/gpu_dry --networks noiseless_netw
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Children (training, evaluation) see the GPU; this driver only repacks weights, on the CPU, and must not
# reserve GPU memory.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
os.environ["JAX_PLATFORMS"] = "cpu"

#: Adam's learning rate. The paper's 0.25 was tuned for hundreds of epochs with ReduceLROnPlateau halving it;
#: in a budget of a few epochs it would not have time to decay, so the runs use Keras's usual 1e-3.
LEARNING_RATE = 1e-3
PART_BYTES = 15 * 2**20
#: The reference networks: noise level (μK-arcmin, temperature) and seeds of training and evaluation data.
NETWORKS = {
    "noiseless_netw": {"noise_uk_arcmin": 0.0, "seed": 101, "eval_seed": 1101},
    "noise1uk_netw": {"noise_uk_arcmin": 1.0, "seed": 202, "eval_seed": 2202},
}
SMALL_FILES = ("config.json", "map_means.npz", "map_stds.npz", "model_architecture.json", "training.log",
               "summary.json", "train_stdout.log")
EVAL_ARRAYS = "q_len,u_len,e_unl,tru_kappa,tru_tau,rec_kappa,rec_tau,wf_rec_kappa,wf_rec_tau"


def log(message: str) -> None:
    print(f"[gpu_train {time.strftime('%H:%M:%S')}] {message}", flush=True)


PROBE = """
import json, os, sys
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
import jax, keras, numpy, scipy, pixell, symlens, ducc0
from importlib.metadata import version
print(json.dumps({"python": sys.version.split()[0], "keras": keras.__version__, "backend": keras.backend.backend(),
                  "jax": jax.__version__, "numpy": numpy.__version__, "scipy": scipy.__version__,
                  "pixell": version("pixell"), "ducc0": ducc0.__version__,
                  "devices": [str(d) for d in jax.devices()], "cpus": os.cpu_count()}))
"""


def environment_report() -> dict:
    """Versions and devices, from a child process that sees the GPU; fails fast if a package is missing."""
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=CHILD_ENV, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"environment probe failed:\n{result.stderr[-3000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    log(f"environment: {json.dumps(report)}")
    return report


def network_config(name: str, args: argparse.Namespace, workers: int) -> dict:
    """Training config of one reference network (the paper's keys)."""
    spec = NETWORKS[name]
    simulation = {"noise_uk_arcmin": spec["noise_uk_arcmin"], "seed": spec["seed"], "workers": workers}
    cfg = {
        "model": "ResUNet_CMB", "data_path": "simulate", "output_dir": "run",
        "feat_used": {"qlen": "q_len", "ulen": "u_len"},
        "target_used": {"unle": "e_unl", "tau": "tru_tau", "kappa": "tru_kappa"},
        "trace_used": ["rec_kappa", "rec_tau"], "imagesize": 128, "optimizer": "Adam", "loss": "mse",
        "learning_rate": LEARNING_RATE, "batch_size": 32, "epochs": 500, "haltpatience": 10, "lrpatience": 3,
        "lrfactordelta": 0.5, "dropval": 0.3, "allocate_vram_an": True, "tensboard_log": False, "seed": 43,
        "mixed_precision": args.mixed_precision,
    }
    if args.dry_run:
        cfg.update(imagesize=32, batch_size=4)
        simulation.update(npix=32, taper_deg=0.3, steps_per_epoch=2, val_maps=8, test_maps=8, pilot_maps=16,
                          qe_mean_field_sims=8)
    else:
        simulation.update(steps_per_epoch=args.steps_per_epoch, val_maps=1024, test_maps=512, pilot_maps=512)
    cfg["simulation"] = simulation
    return cfg


def start_training(name: str, cfg: dict, folder: Path, minutes: float, mem_fraction: float) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))
    env = dict(CHILD_ENV, PYTHONUNBUFFERED="1", XLA_PYTHON_CLIENT_MEM_FRACTION=f"{mem_fraction:.2f}")
    cmd = [sys.executable, str(ROOT / "training" / "main.py"), str(folder / "config.json"), "--time-limit",
           f"{minutes:.3f}", "--overwrite"]  # a fresh run, also in a --work folder used before
    log(f"{name}: training for at most {minutes:.2f} min: {' '.join(cmd)}")
    out = open(folder / "train_stdout.log", "w")  # noqa: SIM115 - closed by the caller after wait()
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder)


def simulate_eval_data(name: str, folder: Path, args: argparse.Namespace, workers: int) -> Path:
    spec = NETWORKS[name]
    data = folder / "eval" / "map_sets32.npz"
    data.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(ROOT / "datapipe" / "datapipeline.py"), "--output", str(data), "--overwrite",
           "--quiet", "--seed", str(spec["eval_seed"]), "--noise-uk-arcmin", str(spec["noise_uk_arcmin"]),
           "--maps", EVAL_ARRAYS, "--workers", str(workers)]
    cmd += (["--nsims", "16", "--npix", "32", "--taper-deg", "0.3", "--qe-mean-field-sims", "8"] if args.dry_run
            else ["--nsims", str(args.eval_maps)])
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, env=CHILD_ENV)
    log(f"{name}: evaluation set simulated in {time.monotonic() - t0:.1f} s")
    return data


def evaluate(name: str, folder: Path, data: Path, args: argparse.Namespace) -> None:
    cmd = [sys.executable, str(ROOT / "training" / "evaluate.py"), "--model-dir", str(folder / "run"), "--data",
           str(data), "--output", str(folder / "evaluation"), "--bias-test", "--batch-size", "64",
           "--bias-nsims", "16" if args.dry_run else "128", "--overwrite"]  # also in a --work folder used before
    t0 = time.monotonic()
    with open(folder / "evaluate_stdout.log", "w") as out:
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(CHILD_ENV, PYTHONUNBUFFERED="1"))
    log(f"{name}: evaluate.py exit {result.returncode} after {time.monotonic() - t0:.1f} s")
    print((folder / "evaluate_stdout.log").read_text()[-3000:], flush=True)


def model_only_weights(run: Path, target: Path) -> Path:
    """The trained weights without optimizer state (what ships), from the run's ``model.keras``."""
    import keras

    from training.resunet import load_model

    model = load_model(run / "model.keras", compile=False)
    model.save_weights(target)
    del model
    keras.backend.clear_session()
    return target


def pack(name: str, folder: Path, out: Path, weights: bool = True) -> list[str]:
    """Write ``<name>.tar`` (and, with ``weights``, the weight pieces) into ``out``; return the file names."""
    run = folder / "run"
    staging = folder / "ship"
    staging.mkdir(exist_ok=True)
    for fname in SMALL_FILES:
        for src in (run / fname, folder / fname):
            if src.exists():
                shutil.copy2(src, staging / fname)
                break
    for extra in ("evaluation", "evaluate_stdout.log"):
        src = folder / extra
        if src.is_dir():
            shutil.copytree(src, staging / extra, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("predictions.npz"))
        elif src.exists():
            shutil.copy2(src, staging / extra)
    written = []
    tar_path = out / f"{name}.tar"
    partial = out / f".{name}.tar.tmp"
    with tarfile.open(partial, "w") as tar:
        tar.add(staging, arcname=name)
    os.replace(partial, tar_path)
    written.append(tar_path.name)
    if weights and (run / "model.keras").exists():
        weights = model_only_weights(run, folder / "model.weights.h5")
        data = weights.read_bytes()
        for k in range(0, len(data), PART_BYTES):
            part = out / f"{name}.weights.h5.part{k // PART_BYTES}"
            part.write_bytes(data[k : k + PART_BYTES])
            written.append(part.name)
    log(f"{name}: packed {written}")
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="folder for the files that come back ($OUT)")
    p.add_argument("--work", type=Path, default=Path("/tmp/gpu_work"), help="scratch folder")
    p.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated names from NETWORKS")
    p.add_argument("--budget-min", type=float, default=9.0, help="wall time for the whole script, minutes")
    p.add_argument("--reserve-min", type=float, default=2.0,
                   help="part of the budget kept for final outputs, evaluation and packing, minutes")
    p.add_argument("--steps-per-epoch", type=int, default=400, help="training batches per epoch")
    p.add_argument("--eval-maps", type=int, default=2048, help="map sets of each evaluation set")
    p.add_argument("--mixed-precision", default="mixed_bfloat16", help="Keras dtype policy ('null' for float32)")
    p.add_argument("--dry-run", action="store_true", help="tiny CPU configuration (checks the whole script)")
    args = p.parse_args(argv)
    if args.mixed_precision in ("null", "none", "float32"):
        args.mixed_precision = None
    start = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.networks.split(",") if n]
    unknown = [n for n in names if n not in NETWORKS]
    if unknown:
        print(f"error: unknown network(s) {unknown}; choose from {list(NETWORKS)}", file=sys.stderr)
        return 2
    report = environment_report()
    cpus = os.cpu_count() or 2
    workers = max(1, (cpus - len(names)) // len(names)) if not args.dry_run else 1
    minutes = (args.budget_min - args.reserve_min) - (time.monotonic() - start) / 60
    procs = {}
    for name in names:
        cfg = network_config(name, args, workers)
        procs[name] = start_training(name, cfg, args.work / name, minutes, 0.9 / len(names))
    status = {}
    for name, proc in procs.items():
        code = proc.wait()
        status[name] = code
        log(f"{name}: training exit {code} after {(time.monotonic() - start) / 60:.2f} min")
        print((args.work / name / "train_stdout.log").read_text()[-4000:], flush=True)
    def finish(name: str) -> None:
        folder = args.work / name
        pack(name, folder, args.out)  # first the trained network, in case the evaluation runs out of time
        if status[name] == 0:
            try:
                data = simulate_eval_data(name, folder, args, max(1, (cpus - 1) // len(names)))
                evaluate(name, folder, data, args)
            except subprocess.CalledProcessError as exc:
                log(f"{name}: evaluation data failed: {exc}")
            pack(name, folder, args.out, weights=False)

    # The networks are evaluated side by side, like they trained.
    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(finish, names))
    (args.out / "gpu_run.json").write_text(json.dumps({"environment": report, "exit": status,
                                                        "wall_min": (time.monotonic() - start) / 60,
                                                        "workers_per_network": workers,
                                                        "learning_rate": LEARNING_RATE,
                                                        "mixed_precision": args.mixed_precision}, indent=1))
    log(f"done in {(time.monotonic() - start) / 60:.2f} min")
    return 0 if all(code == 0 for code in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
