#!/usr/bin/env python3
"""Speed and memory of prediction on large maps (``training.apply.predict_maps``): tiles per second, and the peak
memory of the array work in units of one map.

Writes a network folder with the full ResUNet-CMB (128×128 input, 5,292,367 parameters, random weights — the speed
does not depend on them; unit standardization; the paper's 2.34375′ pixels and 1.5° taper) and predicts random Q/U
maps of two sizes, S and 2S pixels on a side, tile by tile (stride half a tile). NumPy's allocations are traced
(``tracemalloc``) during each prediction (Keras's own tensors are not). Tiles are cut and predicted one batch at a
time, so the peak is a fixed number of map-sized arrays (the inputs in the network's frame, the Σ w·p and Σ w²
accumulators, the outputs) plus one batch, the same count for both sizes; building every tile at once would add about
20 map-sized arrays (each pixel lies in 4 tiles, for 2 inputs and 3 outputs). The last line is machine-readable::

    RESULT tiles_per_s=<x> peak_maps_small=<a> peak_maps_large=<b>

Usage::

    python benchmarks/bench_predict.py                    # S = 512 (49 and 225 tiles), batch 16
    python benchmarks/bench_predict.py --quick            # a tiny 32×32 network instead, S = 256 (CPU smoke run)
    python benchmarks/bench_predict.py --side 2048 --batch-size 64   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PIXEL_ARCMIN = 2.34375


def write_network(folder: Path, quick: bool) -> int:
    """A network folder with random weights; returns its map side."""
    import keras
    import numpy as np

    from training.artifacts import architecture_json
    from training.resunet import ResUNet_CMB

    if quick:
        npix, taper_deg = 32, 0.3
        inputs = [keras.Input((npix, npix, 1), name=name) for name in ("qlen", "ulen")]
        x = keras.layers.Conv2D(8, 5, padding="same")(keras.layers.Concatenate()(inputs))
        outputs = [keras.layers.Conv2D(1, 3, padding="same", name=name)(x) for name in ("kappa", "unle", "tau")]
        model = keras.Model(inputs, outputs)
    else:
        npix, taper_deg = 128, 1.5
        model = ResUNet_CMB({"imagesize": npix, "dropval": 0.3})
    (folder / "model_architecture.json").write_text(architecture_json(model))
    model.save_weights(str(folder / "model.weights.h5"))
    arrays = ("q_len", "u_len", "tru_kappa", "e_unl", "tru_tau")
    np.savez(folder / "map_means.npz", **{f"{a}_mean": 0.0 for a in arrays})
    np.savez(folder / "map_stds.npz", **{f"{a}_std": 1.0 for a in arrays})
    (folder / "data_settings.json").write_text(json.dumps({"npix": npix, "pixel_arcmin": PIXEL_ARCMIN,
                                                           "taper_deg": taper_deg}))
    return npix


def random_maps(side: int, seed: int):
    import numpy as np
    from pixell import enmap, utils

    half = side * PIXEL_ARCMIN / 2 * utils.arcmin
    shape, wcs = enmap.geometry(pos=np.array([[-half, half], [half, -half]]), res=PIXEL_ARCMIN * utils.arcmin,
                                proj="car")
    rng = np.random.default_rng(seed)
    return [enmap.enmap(rng.normal(0, 10, shape).astype(np.float32), wcs) for _ in range(2)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a tiny 32x32 network and S = 256")
    p.add_argument("--side", type=int, help="S, the smaller map's side in pixels (default 512; 256 with --quick)")
    p.add_argument("--batch-size", type=int, default=16, help="tiles per forward pass (default 16)")
    args = p.parse_args(argv)

    from training.apply.predict import predict_with_info
    from training.evaluation.network import load_network

    side = args.side or (256 if args.quick else 512)
    with tempfile.TemporaryDirectory() as tmp:
        npix = write_network(Path(tmp), args.quick)
        network = load_network(tmp)
    q, u = random_maps(npix, 0)
    predict_with_info(network, q, u)  # compile the forward pass
    results = {}
    for label, n in (("small", side), ("large", 2 * side)):
        q, u = random_maps(n, 1)
        tracemalloc.start()
        tracemalloc.reset_peak()
        start = time.perf_counter()
        result = predict_with_info(network, q, u, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        in_maps = peak / q.nbytes
        results[label] = (result.tiles / seconds, in_maps)
        print(f"{n}x{n} map: {result.tiles} tiles of {npix}x{npix} in {seconds:.1f} s ({result.tiles / seconds:.1f} "
              f"tiles/s, batch {args.batch_size}); traced peak {peak / 2**20:.1f} MB = {in_maps:.1f} maps of "
              f"{q.nbytes / 2**20:.1f} MB")
    print(f"RESULT tiles_per_s={results['large'][0]:.2f} peak_maps_small={results['small'][1]:.2f} "
          f"peak_maps_large={results['large'][1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
