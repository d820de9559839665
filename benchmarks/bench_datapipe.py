#!/usr/bin/env python
"""Speed of the data pipeline on the paper's geometry (128×128, 2.34375′), single process, one core.

Measures, in one run:

* ``sim_ms``   — ms per map set for the simulation alone (fields, modulation, lensing, taper, E maps,
  truths; the default arrays without the QE ones),
* ``qe_ms``    — ms per map set for the quadratic-estimator step alone (E/B of the observed maps, κ and τ QEs),
* ``naive_ms`` — ms per map set for the original per-map path: ``pixell.enmap.rand_map`` for T/Q/U, κ and τ,
  modulation, ``pixell.lensing.lens_map`` (order 5, as the original), taper and ``enmap.map2harm`` for E,

and prints ``RESULT sim_ms=<x> qe_ms=<y> naive_ms=<z> speedup=<z/x>`` as its last line.
Targets: sim_ms ≤ 4, qe_ms ≤ 2, speedup ≥ 20.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "DUCC0_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datapipe.estimators import QuadraticEstimators  # noqa: E402
from datapipe.polarization import qu_to_eb_half  # noqa: E402
from datapipe.settings import DEFAULT_MAPS, QE_MAPS, SimulationSettings  # noqa: E402
from datapipe.simulate import MapSetSimulator  # noqa: E402


def best_of(fn, repeats: int) -> float:
    """Smallest wall time of ``repeats`` calls (the least disturbed by other load on a shared machine)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def naive_map_set(settings: SimulationSettings, sim: MapSetSimulator, seed: int) -> np.ndarray:
    """One map set the way the original pipeline made it: pixell calls per map."""
    from pixell import enmap, lensing

    sp = sim.spectra
    shape, wcs = sim.grid.geometry
    zeros = np.zeros_like(sp.tt)
    cov = np.array([[sp.tt, sp.te, zeros], [sp.te, sp.ee, zeros], [zeros, zeros, zeros]])
    tqu = enmap.rand_map((3,) + shape, wcs, cov, seed=seed, spin=[0, 2])
    kappa = enmap.rand_map(shape, wcs, sp.kk[None, None], seed=seed + 1)
    tau = enmap.rand_map(shape, wcs, sp.tau[None, None], seed=seed + 2)
    modulated = tqu * np.exp(-tau)
    ell2 = enmap.modlmap(shape, wcs) ** 2
    kfft = enmap.fft(kappa)
    phi_k = np.zeros_like(kfft)
    np.divide(2 * kfft, ell2, out=phi_k, where=ell2 > 0)
    phi = enmap.ifft(phi_k).real
    lensed = lensing.lens_map(modulated, enmap.grad(phi), order=5)  # the original used 5th-order splines
    taper = enmap.enmap(sim.taper, wcs)
    observed = lensed * taper
    primordial = tqu * taper
    e_unl = enmap.harm2map(enmap.map2harm(primordial, iau=False), iau=False)[1]
    return np.stack([observed[1], observed[2], e_unl, kappa * taper, tau * taper])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16, help="map sets per timed call (the pipeline's chunk)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (best is kept)")
    parser.add_argument("--naive-maps", type=int, default=20, help="map sets for the naive path")
    args = parser.parse_args(argv)

    sim_settings = SimulationSettings(maps=tuple(m for m in DEFAULT_MAPS if m not in QE_MAPS), seed=1)
    sim = MapSetSimulator(sim_settings)
    qe = QuadraticEstimators(sim.grid, sim.spectra, SimulationSettings())
    observed = sim.simulate(np.arange(args.batch))
    q, u = observed["q_len"], observed["u_len"]

    def run_sim():
        sim.simulate(np.arange(args.batch))

    def run_qe():
        e_k, b_k = qu_to_eb_half(sim.grid, q, u)
        qe.reconstruct(e_k, b_k, ("rec_kappa", "rec_tau"))

    run_sim()
    run_qe()
    sim_ms = best_of(run_sim, args.repeats) / args.batch * 1e3
    qe_ms = best_of(run_qe, args.repeats) / args.batch * 1e3

    naive_map_set(sim_settings, sim, 0)
    t0 = time.perf_counter()
    for i in range(args.naive_maps):
        naive_map_set(sim_settings, sim, 3 * i + 10)
    naive_ms = (time.perf_counter() - t0) / args.naive_maps * 1e3

    all_maps = MapSetSimulator(SimulationSettings(maps=tuple(DEFAULT_MAPS), seed=1))
    all_maps.simulate(np.arange(args.batch))
    total_ms = best_of(lambda: all_maps.simulate(np.arange(args.batch)), args.repeats) / args.batch * 1e3

    print(f"geometry: {sim.grid.npix}x{sim.grid.npix} pixels of {sim.grid.pixel_arcmin} arcmin; "
          f"batch {args.batch}; single process, one thread")
    print(f"simulation alone (arrays {', '.join(sim_settings.maps)}): {sim_ms:.2f} ms per map set")
    print(f"QE step alone (E/B + kappa and tau EB estimators): {qe_ms:.2f} ms per map set")
    print(f"default arrays end to end (simulation + QE): {total_ms:.2f} ms per map set "
          f"= {1e3 / total_ms:.0f} map sets/s per core")
    print(f"naive per-map pixell path (rand_map + lens_map): {naive_ms:.1f} ms per map set")
    print(f"RESULT sim_ms={sim_ms:.2f} qe_ms={qe_ms:.2f} naive_ms={naive_ms:.1f} speedup={naive_ms / sim_ms:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
