"""On-the-fly training data: fresh simulations for every batch, made by CPU worker processes.

This module holds the config side (no Keras import, so bad settings fail fast); the batches are served by
:class:`training.data.simstream.SimulationStream`.

With ``"data_path": "simulate"`` the training split is an endless stream of never-repeated map sets from the data
pipeline (:class:`datapipe.simulate.MapSetSimulator`), so nothing is stored and the network never sees a map set
twice. The config's ``"simulation"`` block holds the pipeline's settings, named as its long options with
underscores, plus the sizes of the stream:

====================  =====================  =================================================================
key                   default                meaning
====================  =====================  =================================================================
``npix`` …            pipeline defaults      ``npix``, ``pixel_arcmin``, ``taper_deg``, ``beam_arcmin``,
                                             ``noise_uk_arcmin``, ``null_fraction``, ``seed``, ``no_tau``,
                                             ``no_lensing``, ``qe_mean_field_sims``, ``alpha_amplitude_deg``,
                                             ``null_fields`` (a list, e.g. ``["alpha"]``) (as
                                             ``datapipeline.py``)
``steps_per_epoch``   1000                   training batches per epoch
``val_maps``          1024                   fixed validation map sets, simulated once
``test_maps``         1024                   fixed test map sets, simulated once (with the QE traces)
``pilot_maps``        512                    map sets whose mean and std standardize every array
``workers``           all cores but one      worker processes simulating training batches
``prefetch``          2 × workers            batches simulated ahead of the training loop
====================  =====================  =================================================================

Seeds: map set ``i`` of seed stream ``k`` depends only on ``(seed, i, k)`` (see
:func:`datapipe.fields.map_set_rng`). Training batch ``b`` of epoch ``e`` is made of the map sets
``(e · steps_per_epoch + b) · batch_size + j`` of stream 0 — the same map sets ``datapipeline.py --seed`` would
write — so a run is reproducible, a resumed run continues the sequence, and no map set repeats. The validation,
test and pilot sets come from streams 2, 3 and 4, disjoint from the training stream by construction (stream 1 is
the QE mean field).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from datapipe.errors import PipelineError
from datapipe.settings import WORKERS_PER_CORE, SimulationSettings, usable_cores
from datapipe.simulate import MapSetSimulator
from training.config import TrainingConfig, TrainingError
from training.data.bundle import DataBundle
from training.data.standardization import Standardization

VAL_STREAM, TEST_STREAM, PILOT_STREAM = 2, 3, 4

#: Keys of the ``"simulation"`` block that map onto :class:`SimulationSettings` (pipeline option names).
PIPELINE_KEYS = (
    "npix",
    "pixel_arcmin",
    "taper_deg",
    "beam_arcmin",
    "noise_uk_arcmin",
    "null_fraction",
    "seed",
    "no_tau",
    "no_lensing",
    "qe_mean_field_sims",
    "alpha_amplitude_deg",
    "null_fields",
)
STREAM_DEFAULTS: dict[str, Any] = {
    "steps_per_epoch": 1000,
    "val_maps": 1024,
    "test_maps": 1024,
    "pilot_maps": 512,
    "workers": None,
    "prefetch": None,
}


def stream_option_ranges() -> dict[str, tuple[int, int]]:
    """Allowed (inclusive) ranges of the stream sizes; workers as for ``datapipeline.py --workers``."""
    return {
        "steps_per_epoch": (1, 10**7),
        "val_maps": (1, 10**6),
        "test_maps": (1, 10**6),
        "pilot_maps": (2, 10**6),
        "workers": (1, WORKERS_PER_CORE * usable_cores()),
        "prefetch": (1, 4096),
    }


@dataclasses.dataclass(frozen=True)
class StreamOptions:
    """Sizes of the on-the-fly data (see the module docstring)."""

    steps_per_epoch: int
    val_maps: int
    test_maps: int
    pilot_maps: int
    workers: int
    prefetch: int


def parse_simulation_block(
    block: Mapping[str, Any] | None, cfg: TrainingConfig
) -> tuple[SimulationSettings, StreamOptions]:
    """Validate the config's ``"simulation"`` block.

    Parameters
    ----------
    block : mapping or None
        The block (``None``: all defaults).
    cfg : TrainingConfig
        The run's config (its ``imagesize`` must equal ``npix``; its arrays decide what is simulated).

    Returns
    -------
    settings : SimulationSettings
        Pipeline settings producing every array the run uses (features, targets, traces).
    options : StreamOptions

    Raises
    ------
    TrainingError
        Unknown key (with the closest valid one), or a bad value (the pipeline's own message).
    """
    block = dict(block or {})
    valid = (*PIPELINE_KEYS, *STREAM_DEFAULTS)
    for key in block:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; valid keys: {', '.join(valid)}"
            raise TrainingError(f"unknown key {key!r} in the simulation block{hint}")
    options = {**STREAM_DEFAULTS, **{k: block[k] for k in STREAM_DEFAULTS if k in block}}
    if options["workers"] is None:
        options["workers"] = max(1, (os.cpu_count() or 2) - 1)
    if options["prefetch"] is None:
        options["prefetch"] = 2 * options["workers"]
    for key, (minimum, maximum) in stream_option_ranges().items():
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise TrainingError(f"simulation.{key} must be an integer >= {minimum} and <= {maximum}, got {value!r}")
    for key in ("val_maps", "test_maps"):
        if options[key] < cfg.batch_size:
            raise TrainingError(
                f"simulation.{key} = {options[key]} is fewer than one batch (batch_size "
                f"{cfg.batch_size}); raise it or lower batch_size"
            )
    npix = block.get("npix", cfg.imagesize)
    if npix != cfg.imagesize:
        raise TrainingError(f"simulation.npix = {npix!r} differs from imagesize = {cfg.imagesize}; set them equal")
    kwargs = {k: block[k] for k in PIPELINE_KEYS if k in block and k not in ("no_tau", "no_lensing")}
    kwargs["npix"] = npix
    for flag, field in (("no_tau", "tau"), ("no_lensing", "lensing")):
        if flag in block:
            if not isinstance(block[flag], bool):
                raise TrainingError(f"simulation.{flag} must be true or false, got {block[flag]!r}")
            kwargs[field] = not block[flag]
    try:
        settings = SimulationSettings(maps=tuple(cfg.arrays), **kwargs)
    except PipelineError as exc:
        raise TrainingError(f"simulation block: {exc}") from None
    except TypeError as exc:  # a value of the wrong type reaching the dataclass
        raise TrainingError(f"simulation block: {exc}") from None
    return settings, StreamOptions(**options)


def simulate_fixed_set(settings: SimulationSettings, nmaps: int, stream: int, chunk: int = 64) -> dict[str, np.ndarray]:
    """Simulate ``nmaps`` map sets of one seed stream (validation, test or pilot set), in physical units."""
    simulator = MapSetSimulator(settings)
    parts = [
        simulator.simulate(np.arange(start, min(start + chunk, nmaps)), stream) for start in range(0, nmaps, chunk)
    ]
    return {name: np.concatenate([p[name] for p in parts]) for name in settings.maps}


def check_simulation_source(cfg: TrainingConfig) -> None:
    """Validate the ``simulation`` block before Keras loads (raises :class:`TrainingError`)."""
    parse_simulation_block(cfg.simulation, cfg)


def load_simulation_source(cfg: TrainingConfig, block: Mapping[str, Any] | None = None) -> DataBundle:
    """Data source for ``"data_path": "simulate"``: on-the-fly training stream plus fixed val/test sets.

    Parameters
    ----------
    cfg : TrainingConfig
        The run's config; its ``simulation`` block (or ``block``) holds the settings.
    block : mapping, optional
        Overrides ``cfg.simulation``.

    Returns
    -------
    DataBundle
    """
    from training.data.batches import MapDataset
    from training.data.simstream import SimulationStream

    if block is None:
        block = cfg.simulation
    settings, opts = parse_simulation_block(block, cfg)
    used = list(dict.fromkeys([*cfg.feat_used.values(), *cfg.target_used.values()]))
    pilot = simulate_fixed_set(settings.replace(maps=tuple(used)), opts.pilot_maps, PILOT_STREAM)
    std = Standardization.fit(pilot)
    val = simulate_fixed_set(settings.replace(maps=tuple(used)), opts.val_maps, VAL_STREAM)
    test = simulate_fixed_set(settings, opts.test_maps, TEST_STREAM)

    def fixed(arrays: dict[str, np.ndarray]) -> MapDataset:
        n = len(next(iter(arrays.values())))
        return MapDataset(arrays, np.arange(n), cfg.feat_used, cfg.target_used, std, cfg.batch_size)

    train = SimulationStream(
        settings,
        cfg.feat_used,
        cfg.target_used,
        std,
        cfg.batch_size,
        opts.steps_per_epoch,
        workers=opts.workers,
        prefetch=opts.prefetch,
    )
    s = settings
    return DataBundle(
        train=train,
        val=fixed(val),
        test=fixed(test),
        standardization=std,
        test_arrays=test,
        sizes={"train": opts.steps_per_epoch * cfg.batch_size, "val": opts.val_maps, "test": opts.test_maps},
        split_indices=None,
        source=(
            f"on-the-fly simulations (seed {s.seed}, {s.npix}x{s.npix} px of {s.pixel_arcmin}', noise "
            f"{s.noise_uk_arcmin} uK-arcmin, beam {s.beam_arcmin}', null fraction {s.null_fraction}"
            f"{f', rotation A = {s.alpha_amplitude_deg} deg' if s.rotation else ''}; "
            f"{opts.steps_per_epoch} fresh batches per epoch, {opts.workers} workers)"
        ),
    )
