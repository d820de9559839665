"""The in-memory map-file source: read the needed arrays of a ``.npz`` file, split them, standardize them."""

from __future__ import annotations

from training.config import TrainingConfig
from training.data.bundle import DataBundle, DataSource
from training.data.mapfile import check_map_file, read_maps
from training.data.splits import check_split_sizes, split_indices
from training.data.standardization import Standardization


def check_map_file_source(cfg: TrainingConfig) -> None:
    """Check a map file from its headers: arrays present, map size, maps enough for one batch per split."""
    nsims = check_map_file(cfg.resolve(cfg.data_path), cfg.arrays, cfg.imagesize)
    check_split_sizes(nsims, cfg.splits, cfg.batch_size)


def map_file_source(cfg: TrainingConfig) -> DataBundle:
    """Load a ``.npz`` / ``.h5`` map file: read the needed arrays into memory, split, standardize.

    Parameters
    ----------
    cfg : TrainingConfig
        Uses ``data_path``, ``feat_used``, ``target_used``, ``trace_used``, ``imagesize``, the splits,
        ``batch_size`` and ``seed``.

    Returns
    -------
    DataBundle

    Raises
    ------
    TrainingError
        On any problem listed in :func:`training.data.mapfile.read_maps`, or a split with fewer maps than one batch.
    """
    path = cfg.resolve(cfg.data_path)
    arrays = read_maps(path, cfg.arrays, cfg.imagesize)
    nsims = len(next(iter(arrays.values())))
    check_split_sizes(nsims, cfg.splits, cfg.batch_size)
    splits = split_indices(nsims, cfg.splits, cfg.seed)
    used = {**cfg.feat_used, **cfg.target_used}
    std = Standardization.fit({a: arrays[a] for a in used.values()}, splits["train"])

    from training.data.batches import MapDataset  # Keras enters here, once the data checked out

    def dataset(name: str) -> MapDataset:
        return MapDataset(
            arrays,
            splits[name],
            cfg.feat_used,
            cfg.target_used,
            std,
            cfg.batch_size,
            shuffle=name == "train",
            seed=cfg.seed,
            workers=cfg.data_workers,
            use_multiprocessing=cfg.data_multiprocessing,
        )

    return DataBundle(
        train=dataset("train"),
        val=dataset("val"),
        test=dataset("test"),
        standardization=std,
        test_arrays={name: arr[splits["test"]] for name, arr in arrays.items()},
        sizes={name: int(idx.size) for name, idx in splits.items()},
        split_indices=splits,
        source=f"{path} ({nsims} maps of {cfg.imagesize}x{cfg.imagesize})",
    )


#: The in-memory map-file source (``.npz``; also reads ``.h5`` files into memory when registered for them).
MAP_FILE_SOURCE = DataSource(load=map_file_source, check=check_map_file_source)
