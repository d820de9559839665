#!/usr/bin/env python3
"""Peak memory of training from HDF5 and of the simulation writer, for N and 10·N maps.

Memory must not grow with the data set: training streams batches from the ``.h5`` file (training/h5stream.py) and
writes the test-set outputs chunk by chunk; the pipeline streams chunks to disk. Each measured run is a fresh
subprocess whose peak resident set size (``ru_maxrss`` from ``os.wait4``) is read when it ends.

1. Training: two HDF5 files of N and 10·N synthetic map sets (the pipeline's seven arrays, ``imagesize`` pixels,
   random values: memory does not depend on them), then ``training/main.py`` for one epoch on each (80/10/10
   split, batch 32). By default the model is a registered tiny convolutional net, so that an epoch over 10·N maps
   takes seconds; ``--model ResUNet_CMB`` uses the real one (slow on a CPU).
2. Writer: ``datapipe/datapipeline.py --no-qe --nsims W`` and ``--nsims 10·W`` into ``.h5`` files (``--writer-npix``
   pixels, default 64 to keep the files small; 1,000 vs 10,000 map sets by default).

Output: one line per run, then ``WRITER rss_small_mb=… rss_large_mb=… ratio=…`` and, last,
``RESULT rss_small_mb=… rss_large_mb=… ratio=…`` for training (target ratio ≤ 1.2).

Usage::

    python benchmarks/bench_memory.py                     # N = 2000 maps of 32x32; writer 1000 vs 10000 at 64x64
    python benchmarks/bench_memory.py --maps 500 --skip-writer
    python benchmarks/bench_memory.py --compare-npz       # also the in-memory .npz path, for contrast
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ARRAYS = ("q_len", "u_len", "e_unl", "tru_kappa", "tru_tau", "rec_kappa", "rec_tau")

DRIVER = """
import sys
sys.path.insert(0, {root!r})
from training.runtime import configure_gpu_memory

configure_gpu_memory(True)
import keras

from training.resunet import register_model


@register_model
def BenchTinyNet(params):  # noqa: N802 - a model name
    n = params.imagesize
    qlen = keras.Input((n, n, 1), name="qlen")
    ulen = keras.Input((n, n, 1), name="ulen")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(keras.layers.Concatenate()([qlen, ulen]))
    outputs = [keras.layers.Conv2D(1, 3, padding="same", name=name)(x) for name in ("tau", "unle", "kappa")]
    return keras.Model([qlen, ulen], outputs)


from training.main import main

sys.exit(main(sys.argv[1:]))
"""


def peak_rss_mb(command: list[str], cwd: Path) -> tuple[float, float]:
    """Run ``command`` in a fresh subprocess and return its peak RSS (MB) and wall time (s).

    Raises
    ------
    RuntimeError
        If the command fails (its output is shown).
    """
    start = time.monotonic()
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{output[-3000:]}")
    return usage.ru_maxrss / 1024.0, time.monotonic() - start  # ru_maxrss is in kB on Linux


def write_h5_maps(path: Path, nsims: int, npix: int, seed: int = 0, chunk: int = 1000) -> int:
    """Write ``nsims`` random float32 map sets (the pipeline's arrays and layout) chunk by chunk; return bytes."""
    import h5py

    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        datasets = {name: f.create_dataset(name, (nsims, npix, npix), "f4", chunks=(16, npix, npix))
                    for name in ARRAYS}
        for start in range(0, nsims, chunk):
            stop = min(start + chunk, nsims)
            for ds in datasets.values():
                ds[start:stop] = rng.standard_normal((stop - start, npix, npix), dtype=np.float32)
        f.attrs["metadata"] = json.dumps({"nsims": nsims, "synthetic": True})
    return 4 * nsims * npix * npix * len(ARRAYS)


def train_rss(folder: Path, data: Path, args: argparse.Namespace, tag: str) -> tuple[float, float]:
    """Peak RSS (MB) and wall time (s) of one training epoch from ``data``."""
    config = {"data_path": str(data), "output_dir": str(folder / f"out_{tag}"), "imagesize": args.imagesize,
              "batch_size": args.batch_size, "epochs": 1, "learning_rate": 1e-3, "dropval": 0.0,
              "model": "BenchTinyNet" if args.model == "tiny" else args.model}
    (folder / f"{tag}.json").write_text(json.dumps(config))
    driver = folder / "driver.py"
    driver.write_text(DRIVER.format(root=str(ROOT)))
    return peak_rss_mb([sys.executable, str(driver), str(folder / f"{tag}.json")], folder)


def writer_rss(folder: Path, nsims: int, npix: int) -> tuple[float, float]:
    """Peak RSS (MB) and wall time (s) of ``datapipeline.py --no-qe --nsims nsims`` into an ``.h5`` file."""
    out = folder / f"sims_{nsims}.h5"
    taper = min(1.5, 0.2 * npix * 2.34375 / 60.0)  # the paper's taper unless the map is too small for it
    command = [sys.executable, str(ROOT / "datapipe" / "datapipeline.py"), "--nsims", str(nsims), "--no-qe",
               "--npix", str(npix), "--taper-deg", f"{taper:.4f}", "--output", str(out), "--quiet"]
    try:
        return peak_rss_mb(command, folder)
    finally:
        out.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--maps", type=int, default=2000, help="N: maps in the small training file (large: 10 N)")
    parser.add_argument("--imagesize", type=int, default=32, help="map side in pixels for training")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch size")
    parser.add_argument("--model", default="tiny", help="'tiny' (a small conv net) or a registered model name")
    parser.add_argument("--writer-nsims", type=int, default=1000, help="W: map sets of the small writer run")
    parser.add_argument("--writer-npix", type=int, default=64, help="pixels per side for the writer runs")
    parser.add_argument("--skip-writer", action="store_true", help="measure training only")
    parser.add_argument("--compare-npz", action="store_true", help="also train from .npz files (loaded in memory)")
    parser.add_argument("--workdir", type=Path, help="folder for the temporary files (default: a temporary folder)")
    args = parser.parse_args(argv)

    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND', 'tensorflow')}", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="bench_memory-", dir=args.workdir))
    try:
        writer = None
        if not args.skip_writer:
            writer = []
            for nsims in (args.writer_nsims, 10 * args.writer_nsims):
                rss, wall = writer_rss(folder, nsims, args.writer_npix)
                size = 4 * nsims * args.writer_npix**2 * 5 / 1e6
                side = f"{args.writer_npix}x{args.writer_npix}"
                print(f"writer   --nsims {nsims:>6} --no-qe ({side}, {size:,.0f} MB .h5): peak RSS {rss:7.1f} MB, "
                      f"{wall:6.1f} s", flush=True)
                writer.append(rss)
        training = []
        for factor in (1, 10):
            nsims = factor * args.maps
            data = folder / f"maps_{nsims}.h5"
            size = write_h5_maps(data, nsims, args.imagesize) / 1e6
            rss, wall = train_rss(folder, data, args, f"h5_{nsims}")
            print(f"training {nsims:>6} maps from .h5 ({args.imagesize}x{args.imagesize}, {size:,.0f} MB): "
                  f"peak RSS {rss:7.1f} MB, {wall:6.1f} s (one epoch, model {args.model})", flush=True)
            training.append(rss)
            if args.compare_npz:
                import h5py

                npz = folder / f"maps_{nsims}.npz"
                with h5py.File(data) as f:
                    np.savez(npz, **{name: f[name][...] for name in ARRAYS})
                rss_npz, wall_npz = train_rss(folder, npz, args, f"npz_{nsims}")
                print(f"training {nsims:>6} maps from .npz (in memory, for contrast): peak RSS {rss_npz:7.1f} MB, "
                      f"{wall_npz:6.1f} s", flush=True)
                npz.unlink()
            data.unlink()
        if writer is not None:
            print(f"WRITER rss_small_mb={writer[0]:.1f} rss_large_mb={writer[1]:.1f} ratio={writer[1] / writer[0]:.3f}")
        print(f"RESULT rss_small_mb={training[0]:.1f} rss_large_mb={training[1]:.1f} "
              f"ratio={training[1] / training[0]:.3f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
