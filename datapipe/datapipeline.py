#!/usr/bin/env python
"""Simulate the ResUNet-CMB training data: observed and primordial CMB maps, truths and QE reconstructions.

Run from the repository root (``python datapipe/datapipeline.py``) or from ``datapipe/``
(``python datapipeline.py``). ``--help`` lists every option; defaults are the paper's settings.
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datapipe.errors import PipelineError  # noqa: E402
from datapipe.interrupts import PipelineInterrupted, stop_on_signals  # noqa: E402
from datapipe.paths import default_output_path  # noqa: E402
from datapipe.settings import (  # noqa: E402
    ALL_MAPS,
    DEFAULT_MAPS,
    NULL_FIELDS,
    QE_MAPS,
    ROTATION_DEFAULT_MAPS,
    SimulationSettings,
    check_run_options,
)

#: Map sets simulated by the bare command (about a minute on one core here); the paper used 70,000.
DEFAULT_NSIMS = 10000


def build_parser() -> argparse.ArgumentParser:
    defaults = SimulationSettings()
    p = argparse.ArgumentParser(
        prog="datapipeline.py",
        description="Simulate flat-sky CMB map sets: primordial T/Q/U, optionally rotated by a cosmic birefringence "
                    "field alpha, modulated by patchy reionization (x e^-tau), lensed by kappa, with beam, white "
                    "noise and a cosine taper, plus quadratic-estimator reconstructions of kappa, tau (and alpha). "
                    "Writes float32 arrays (nsims, npix, npix) and window_info.npz beside the output.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--nsims", type=int, default=DEFAULT_NSIMS,
                   help="number of map sets (the paper used 70000)")
    p.add_argument("--output", type=Path, default=default_output_path(),
                   help="output file, .npz or .h5 (window_info.npz is written beside it); by default "
                        "datapipe/map_sets32.npz of a source checkout, where config.json looks for it, from any "
                        "folder (./map_sets32.npz when installed)")
    p.add_argument("--maps", default=",".join(DEFAULT_MAPS),
                   help="comma-separated arrays to save (the default gains " + ",".join(ROTATION_DEFAULT_MAPS)
                        + " when --alpha-amplitude-deg > 0); valid: " + ",".join(ALL_MAPS))
    p.add_argument("--npix", type=int, default=defaults.npix, help="pixels per side")
    p.add_argument("--pixel-arcmin", type=float, default=defaults.pixel_arcmin, help="pixel size in arcmin")
    p.add_argument("--taper-deg", type=float, default=defaults.taper_deg,
                   help="cosine taper width at each edge in degrees (0: no taper)")
    p.add_argument("--beam-arcmin", type=float, default=defaults.beam_arcmin, help="Gaussian beam FWHM in arcmin")
    p.add_argument("--noise-uk-arcmin", type=float, default=defaults.noise_uk_arcmin,
                   help="white temperature noise in uK-arcmin (polarization: sqrt(2) times this)")
    p.add_argument("--null-fraction", type=float, default=defaults.null_fraction,
                   help="fraction of null map sets, in which the --null-fields are zero")
    p.add_argument("--null-fields", default=",".join(defaults.null_fields),
                   help="comma-separated fields switched off in the null map sets, of " + ",".join(NULL_FIELDS)
                        + " (first paper: tau,kappa; second paper: alpha)")
    p.add_argument("--seed", type=int, default=defaults.seed,
                   help="master seed; map set i depends only on (seed, i)")
    p.add_argument("--no-qe", action="store_true", help="skip the quadratic-estimator arrays (rec_*, wf_rec_*)")
    p.add_argument("--no-tau", action="store_true", help="no patchy reionization (tau = 0 in every map set)")
    p.add_argument("--no-lensing", action="store_true", help="no lensing (kappa = 0 in every map set)")
    p.add_argument("--alpha-amplitude-deg", type=float, default=defaults.alpha_amplitude_deg,
                   help="amplitude A in degrees of the cosmic polarization rotation alpha, "
                        "L(L+1)C_L^aa/2pi = A^2 (second paper: 0.12; alpha maps are saved in radians); 0: no rotation")
    p.add_argument("--qe-mean-field-sims", type=int, default=defaults.qe_mean_field_sims,
                   help="extra simulations averaged into the QE mean field subtracted from rec_* (0: none)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (the output is identical for any number)")
    p.add_argument("--chunk-size", type=int, default=16,
                   help="map sets simulated and written per chunk (the output does not depend on it)")
    p.add_argument("--mpi", action="store_true",
                   help="run under MPI (mpi4py) even with one rank; automatic when mpirun/srun starts several "
                        "ranks. Each rank writes a shard to OUTPUT.shards/ and rank 0 joins them in OUTPUT, an HDF5 "
                        "virtual dataset (.h5 only)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--quiet", action="store_true", help="no plan summary and no progress bar")
    return p


def settings_from_args(args: argparse.Namespace) -> SimulationSettings:
    """Validated settings from parsed command-line arguments (raises PipelineError).

    The run options (``--nsims``, ``--workers``, ``--chunk-size``) are checked too; every bound lives in
    :mod:`datapipe.settings`, shared with the Python API and on-the-fly training.
    """
    check_run_options(args.nsims, args.workers, args.chunk_size)
    maps = [name.strip() for name in args.maps.split(",") if name.strip()]
    explicit = args.maps != ",".join(DEFAULT_MAPS)
    if not explicit and args.alpha_amplitude_deg > 0:
        maps += list(ROTATION_DEFAULT_MAPS)
    if args.no_qe:
        asked = [name for name in maps if name in QE_MAPS]
        if explicit and asked:
            raise PipelineError(f"--no-qe conflicts with --maps asking for {','.join(asked)}; drop one of them")
        maps = [name for name in maps if name not in QE_MAPS]
    return SimulationSettings(
        npix=args.npix, pixel_arcmin=args.pixel_arcmin, taper_deg=args.taper_deg, beam_arcmin=args.beam_arcmin,
        noise_uk_arcmin=args.noise_uk_arcmin, null_fraction=args.null_fraction, seed=args.seed, maps=tuple(maps),
        tau=not args.no_tau, lensing=not args.no_lensing, qe_mean_field_sims=args.qe_mean_field_sims,
        alpha_amplitude_deg=args.alpha_amplitude_deg, null_fields=args.null_fields,
    )


def describe_plan(settings: SimulationSettings, nsims: int, output: Path, workers: int) -> str:
    from datapipe.runner import expected_output_bytes

    size = expected_output_bytes(settings, nsims)
    side = settings.npix * settings.pixel_arcmin / 60.0
    return (f"Simulating {nsims} map sets of {settings.npix}x{settings.npix} pixels ({side:.2f} x {side:.2f} deg, "
            f"{settings.pixel_arcmin} arcmin) with {workers} worker(s)\n"
            f"  arrays: {', '.join(settings.maps)}\n"
            f"  output: {output} (expected {size / 1e9:.2f} GB) + {output.parent / 'window_info.npz'}")


def describe_mpi(output: Path, nsims: int, size: int) -> str:
    from datapipe.mpi import shard_folder

    return (f"  MPI: {size} rank(s), {nsims // size}-{-(-nsims // size)} map sets each; shards in "
            f"{shard_folder(output)}/, joined in {output.name} (keep them side by side)")


def describe_write_error(exc: OSError, output: Path) -> str:
    """One line for an ``OSError`` met while writing ``output`` (a full disk above all)."""
    reason = exc.strerror or str(exc)
    hint = "; free some space or choose another --output" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return f"writing {output} failed ({reason}){hint}; no output written, temporary files removed"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 done, 1 a write failed, 2 bad input, 130/143 a signal)."""
    args = build_parser().parse_args(argv)
    try:
        with stop_on_signals():
            return _run(args)
    except KeyboardInterrupt as exc:  # a signal that surfaced as another error inside _run (stop_on_signals)
        return report_interrupt(exc)


def report_interrupt(exc: KeyboardInterrupt) -> int:
    """Print the one-line notice for Ctrl-C or SIGTERM and return the exit status (130, 143)."""
    signum = exc.signum if isinstance(exc, PipelineInterrupted) else signal.SIGINT
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    print(f"datapipeline.py: interrupted ({name}); no output written, temporary files removed", file=sys.stderr)
    return 128 + signum


def _run(args: argparse.Namespace) -> int:
    comm = None
    try:
        from datapipe.mpi import MPIAbort, get_world

        comm = get_world(args.mpi)
        settings = settings_from_args(args)
        if comm is None:
            from datapipe.runner import check_output, run_simulation

            check_output(settings, args.output, args.nsims, args.overwrite)
            if not args.quiet:
                print(describe_plan(settings, args.nsims, args.output, args.workers), flush=True)
            path = run_simulation(settings, args.output, args.nsims, workers=args.workers,
                                  chunk_size=args.chunk_size, overwrite=args.overwrite, progress=not args.quiet)
        else:
            from datapipe.mpi import run_simulation_mpi

            plan = None
            if not args.quiet:
                plan = (describe_plan(settings, args.nsims, args.output, args.workers) + "\n"
                        + describe_mpi(args.output, args.nsims, comm.Get_size()))
            path = run_simulation_mpi(comm, settings, args.output, args.nsims, workers=args.workers,
                                      chunk_size=args.chunk_size, overwrite=args.overwrite, progress=not args.quiet,
                                      plan=plan)
    except KeyboardInterrupt as exc:  # first: MPIAbort below is unbound when a signal cut its import short
        return report_interrupt(exc)
    except MPIAbort as exc:
        if not exc.quiet:
            print(f"datapipeline.py: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except PipelineError as exc:
        if comm is None or comm.Get_rank() == 0:  # every rank raises the same error: print it once
            print(f"datapipeline.py: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"datapipeline.py: error: {describe_write_error(exc, args.output)}", file=sys.stderr)
        return 1
    except MemoryError:
        print("datapipeline.py: error: out of memory; lower --chunk-size or --workers (each worker holds "
              "two chunks); no output written", file=sys.stderr)
        return 1
    if not args.quiet and (comm is None or comm.Get_rank() == 0):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
