#!/usr/bin/env python3
"""Speed of ResUNet-CMB training and inference on the active Keras backend and device.

Builds the full-size model (128×128 maps, 5,292,367 parameters), counts its forward FLOPs per map from the layers,
and times ``model.fit`` and ``model.predict`` on random maps (the speed does not depend on the values). The last
line is machine-readable::

    RESULT backend=<b> device=<d> train_sps=<x> predict_sps=<y> train_tflops=<z>

``train_sps`` and ``predict_sps`` are maps (samples) per second; ``train_tflops`` is the achieved training
throughput, taking a training step as 3× the forward FLOPs (forward pass + backward pass ≈ 2× forward).

Usage::

    python benchmarks/bench_training.py            # batch 32, 20 timed steps
    python benchmarks/bench_training.py --quick    # batch 4, 2 timed steps (CPU smoke run)
    KERAS_BACKEND=jax python benchmarks/bench_training.py
    python benchmarks/bench_training.py --on-the-fly [--quick]   # training fed by on-the-fly simulations

With ``--on-the-fly`` the maps come from :class:`training.data.simstream.SimulationStream` (the pipeline's simulations,
made by worker processes on all cores) instead of random arrays; the benchmark first times the stream alone, then
training from it, and its last line is ``RESULT stream_sps=<x> train_sps=<y>``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# A training step costs about three forward passes (the backward pass about two).
TRAIN_FLOPS_PER_FORWARD = 3


def layer_flops(layer: Any) -> int:
    """Forward FLOPs of one layer for one sample, from its input and output shapes.

    Counting: Conv2D 2·k_h·k_w·C_in·C_out·H_out·W_out (multiply-adds) plus one add per output for the bias;
    BatchNormalization 2 per element (scale and shift, inference form); Activation and Add 1 per output element
    (per extra input for Add); Dropout, UpSampling2D, Concatenate and inputs 0 (data movement only).

    Parameters
    ----------
    layer : keras.layers.Layer
        A layer of a built functional model, called once.

    Returns
    -------
    int
        Floating-point operations per sample.
    """
    import keras

    out_shape = layer.output.shape[1:]
    n_out = 1
    for dim in out_shape:
        n_out *= int(dim)
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        c_in = int(layer.input.shape[-1])
        return 2 * kh * kw * c_in * n_out + (n_out if layer.use_bias else 0)
    if isinstance(layer, keras.layers.BatchNormalization):
        return 2 * n_out
    if isinstance(layer, keras.layers.Activation):
        return n_out
    if isinstance(layer, keras.layers.Add):
        return (len(layer.input) - 1) * n_out
    return 0


def forward_flops(model: Any) -> int:
    """Forward FLOPs per sample of a functional model (sum of :func:`layer_flops`)."""
    return sum(layer_flops(layer) for layer in model.layers)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the FLOP count, timings and the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 4, 1 warm-up and 2 timed steps")
    parser.add_argument("--batch-size", type=int, help="maps per step (default 32; 4 with --quick)")
    parser.add_argument("--steps", type=int, help="timed steps (default 20; 2 with --quick)")
    parser.add_argument("--imagesize", type=int, default=128, help="map side in pixels (default 128)")
    parser.add_argument("--mixed-precision", choices=["mixed_float16", "mixed_bfloat16"], help="dtype policy")
    parser.add_argument("--on-the-fly", action="store_true", help="feed training from on-the-fly simulations")
    parser.add_argument("--workers", type=int, help="simulation processes with --on-the-fly (default: all cores)")
    args = parser.parse_args(argv)
    batch = args.batch_size or (4 if args.quick else 32)
    steps = args.steps or (2 if args.quick else 20)
    warmup = 1 if args.quick else 3

    import keras
    import numpy as np

    from training.resunet import ResUNet_CMB
    from training.runtime import describe_device, set_seed

    set_seed(0)
    keras.mixed_precision.set_dtype_policy(args.mixed_precision or "float32")
    model = ResUNet_CMB({"imagesize": args.imagesize, "dropval": 0.3})
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    flops = forward_flops(model)
    backend, device = keras.backend.backend(), describe_device()
    print(f"model: {model.count_params():,} parameters, {flops / 1e9:.2f} GFLOP forward per {args.imagesize}² map")
    print(f"backend {backend}, device {device}, batch {batch}, {warmup} warm-up + {steps} timed steps")

    if args.on_the_fly:
        return on_the_fly(model, args, batch, steps, warmup)

    rng = np.random.default_rng(0)
    n = batch * steps
    shape = (n, args.imagesize, args.imagesize, 1)
    x = {name: rng.standard_normal(shape, dtype=np.float32) for name in ("qlen", "ulen")}
    y = {name: rng.standard_normal(shape, dtype=np.float32) for name in ("tau", "unle", "kappa")}

    def head(d: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
        return {key: v[:k] for key, v in d.items()}

    # Warm-up runs compile the step functions; the timed runs reuse them.
    model.fit(head(x, batch * warmup), head(y, batch * warmup), batch_size=batch, epochs=1, verbose=0, shuffle=False)
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    train_sps = n / (time.perf_counter() - t0)

    model.predict(head(x, batch * warmup), batch_size=batch, verbose=0)
    t0 = time.perf_counter()
    model.predict(x, batch_size=batch, verbose=0)
    predict_sps = n / (time.perf_counter() - t0)

    train_tflops = TRAIN_FLOPS_PER_FORWARD * flops * train_sps / 1e12
    print(f"train {train_sps:.2f} maps/s, predict {predict_sps:.2f} maps/s")
    print(
        f"RESULT backend={backend} device={device} train_sps={train_sps:.3f} predict_sps={predict_sps:.3f} "
        f"train_tflops={train_tflops:.4f}"
    )
    return 0


def on_the_fly(model: Any, args: argparse.Namespace, batch: int, steps: int, warmup: int) -> int:
    """Time the simulation stream alone, then training fed by it; print ``RESULT stream_sps=… train_sps=…``."""
    import os

    from datapipe.settings import SimulationSettings
    from training.data.simstream import SimulationStream
    from training.data.standardization import Standardization

    inputs = {"qlen": "q_len", "ulen": "u_len"}
    targets = {"tau": "tru_tau", "unle": "e_unl", "kappa": "tru_kappa"}
    arrays = [*inputs.values(), *targets.values()]
    taper = 1.5 if args.imagesize * 2.34375 / 60 > 3.0 else 0.0
    settings = SimulationSettings(npix=args.imagesize, taper_deg=taper, maps=tuple(arrays))
    identity = Standardization(dict.fromkeys(arrays, 0.0), dict.fromkeys(arrays, 1.0))
    workers = args.workers or os.cpu_count() or 1
    n_stream = max(steps, 4 * workers)
    stream = SimulationStream(settings, inputs, targets, identity, batch, steps_per_epoch=warmup + n_stream + steps,
                              workers=workers, prefetch=2 * workers)
    try:
        for i in range(min(workers, warmup + n_stream)):  # start the pool and fill the pipeline
            stream[i]
        t0 = time.perf_counter()
        first = min(workers, warmup + n_stream)
        for i in range(first, first + n_stream):
            stream[i]
        stream_sps = n_stream * batch / (time.perf_counter() - t0)
        print(f"stream alone: {stream_sps:.1f} maps/s from {workers} simulation processes")

        stream.set_epoch(1)
        model.fit(stream, epochs=1, steps_per_epoch=warmup, verbose=0)  # compile
        t0 = time.perf_counter()
        model.fit(stream, epochs=1, steps_per_epoch=steps, verbose=0)
        train_sps = steps * batch / (time.perf_counter() - t0)
    finally:
        stream.close()
    print(f"training fed by the stream: {train_sps:.2f} maps/s")
    print(f"RESULT stream_sps={stream_sps:.1f} train_sps={train_sps:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
