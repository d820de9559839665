"""Training data streamed from an HDF5 map file: nothing is loaded whole, so the data set may exceed the RAM.

With ``data_path`` ending in ``.h5`` / ``.hdf5`` (a file of ``datapipe/datapipeline.py``, also the virtual file of an
MPI run), the batches are served from the file:

- **split** by index exactly like the in-memory source (:func:`training.data.splits.split_indices`): the same maps
  land in the same splits for the same file and seed;
- **standardization** statistics of the training split from one streaming pass over the file
  (:func:`training.data.standardization.streaming_standardization`: contiguous chunks, per-chunk mean and squared
  deviations combined with Chan et al.'s update, in float64). The same pass rejects NaN / inf in any map of the
  feature and target arrays;
- **training batches in contiguous blocks** (:func:`training.data.order.epoch_batches`), shuffled anew every epoch;
- **validation / test batches** in file order, as in the in-memory source (so the saved test set and predictions
  have the same order);
- optional **prefetch** by ``data_workers`` threads (or processes with ``data_multiprocessing``; each process opens
  the file itself).

The test split is handed to the training loop as :class:`training.data.h5file.SplitView` objects, read chunk by chunk
when ``test_data.npz`` and ``predictions.npz`` are written. Keras is imported only once the data checked out.
"""

from __future__ import annotations

from training.config import TrainingConfig, TrainingError
from training.data.bundle import DataBundle
from training.data.filesource import check_map_file_source
from training.data.h5file import H5Column, H5MapFile, SplitView, check_virtual_sources
from training.data.mapfile import check_map_file
from training.data.splits import check_split_sizes, split_indices
from training.data.standardization import streaming_standardization


def check_h5_stream_source(cfg: TrainingConfig) -> None:
    """Cheap checks from the file's headers: arrays, map size, split sizes, shards of virtual datasets."""
    check_map_file_source(cfg)
    try:
        check_virtual_sources(cfg.resolve(cfg.data_path), cfg.arrays)
    except OSError as exc:
        raise TrainingError(f"cannot read data file {cfg.data_path!r}: {exc}") from None


def load_h5_stream_source(cfg: TrainingConfig) -> DataBundle:
    """Data source for an HDF5 ``data_path``: batches streamed from the file (see the module docstring).

    Parameters
    ----------
    cfg : TrainingConfig
        Uses ``data_path``, the arrays, ``imagesize``, the splits, ``batch_size``, ``seed``, ``data_block_maps``,
        ``data_workers`` and ``data_multiprocessing``.

    Returns
    -------
    DataBundle
        ``test_arrays`` holds :class:`training.data.h5file.SplitView` objects (read on demand), not arrays.

    Raises
    ------
    TrainingError
        Any problem of :func:`check_h5_stream_source`, or NaN / inf / constant arrays found by the statistics pass.
    """
    path = cfg.resolve(cfg.data_path)
    nsims = check_map_file(path, cfg.arrays, cfg.imagesize)
    check_split_sizes(nsims, cfg.splits, cfg.batch_size)
    splits = split_indices(nsims, cfg.splits, cfg.seed)
    file = H5MapFile(path)
    try:
        columns = {name: H5Column(file, name) for name in cfg.arrays}
        used = list(dict.fromkeys([*cfg.feat_used.values(), *cfg.target_used.values()]))
        std = streaming_standardization({name: columns[name] for name in used}, splits["train"])
    except OSError as exc:
        raise TrainingError(f"cannot read data file {str(path)!r}: {exc}") from None

    from training.data.batches import H5MapDataset, MapDataset  # Keras enters here, once the data checked out

    loader = {"workers": cfg.data_workers, "use_multiprocessing": cfg.data_multiprocessing}
    common = (cfg.feat_used, cfg.target_used, std, cfg.batch_size)
    return DataBundle(
        train=H5MapDataset(columns, splits["train"], *common, block_maps=cfg.data_block_maps, seed=cfg.seed,
                           **loader),
        val=MapDataset(columns, splits["val"], *common, **loader),
        test=MapDataset(columns, splits["test"], *common, **loader),
        standardization=std,
        test_arrays={name: SplitView(column, splits["test"]) for name, column in columns.items()},
        sizes={name: int(idx.size) for name, idx in splits.items()},
        split_indices=splits,
        source=f"{path} ({nsims} maps of {cfg.imagesize}x{cfg.imagesize}, streamed from HDF5)",
        close=file.close,
    )
