"""The registry of data sources: which source serves a config's ``data_path``.

The training loop in ``training/loop.py`` only sees a :class:`training.data.bundle.DataBundle`: three
``keras.utils.PyDataset`` objects (train, validation, test) that yield ``(inputs, targets)`` batches of standardized
maps keyed by the model's input and output names, the standardization that maps them back to physical units, and the
test split of every array in physical units. A :class:`training.data.bundle.DataSource` builds the bundle (``load``)
and may check the config against the data cheaply first (``check``, run before Keras is imported).
:func:`get_data_source` picks the source from ``data_path``:

- a keyword registered in :data:`KEYWORD_SOURCES` (``"simulate"`` generates maps on the fly,
  :mod:`training.data.simsource`), else
- the file suffix, looked up in :data:`FILE_SOURCES`: ``.npz`` (written by ``datapipe/datapipeline.py``), read into
  memory (:mod:`training.data.filesource`), and ``.h5`` / ``.hdf5`` (datasets at the file's root), streamed from the
  file (:mod:`training.data.h5source`: the data set may be larger than the RAM).

A new source registers itself in one of these dicts; nothing else changes. The sources are imported when first used,
so checking a config costs neither Keras nor the simulator.
"""

from __future__ import annotations

from pathlib import Path

from training.config import TrainingConfig, TrainingError
from training.data.bundle import DataBundle, DataSource
from training.data.filesource import check_map_file_source, map_file_source

#: The in-memory map-file source (``.npz``; also reads ``.h5`` files into memory when registered for them).
MAP_FILE_SOURCE = DataSource(load=map_file_source, check=check_map_file_source)


def _load_h5_stream(cfg: TrainingConfig) -> DataBundle:
    from training.data.h5source import load_h5_stream_source

    return load_h5_stream_source(cfg)


def _check_h5_stream(cfg: TrainingConfig) -> None:
    from training.data.h5source import check_h5_stream_source

    check_h5_stream_source(cfg)


def _load_simulation(cfg: TrainingConfig) -> DataBundle:
    from training.data.simsource import load_simulation_source

    return load_simulation_source(cfg)


def _check_simulation(cfg: TrainingConfig) -> None:
    from training.data.simsource import check_simulation_source

    check_simulation_source(cfg)


#: HDF5 map files, streamed batch by batch without loading them (:mod:`training.data.h5source`).
H5_STREAM_SOURCE = DataSource(load=_load_h5_stream, check=_check_h5_stream)
#: Sources selected by a keyword as ``data_path``: ``"simulate"`` trains on fresh simulations.
KEYWORD_SOURCES: dict[str, DataSource] = {"simulate": DataSource(load=_load_simulation, check=_check_simulation)}
#: Sources selected by the suffix of ``data_path``.
FILE_SOURCES: dict[str, DataSource] = {".npz": MAP_FILE_SOURCE, ".h5": H5_STREAM_SOURCE, ".hdf5": H5_STREAM_SOURCE}


def get_data_source(data_path: str) -> DataSource:
    """Pick the data source for a config's ``data_path`` (keyword first, then file suffix).

    Parameters
    ----------
    data_path : str
        The config's ``data_path``: a keyword (``"simulate"``) or a file name.

    Returns
    -------
    DataSource

    Raises
    ------
    TrainingError
        If neither a keyword nor a known suffix matches.
    """
    if data_path in KEYWORD_SOURCES:
        return KEYWORD_SOURCES[data_path]
    suffix = Path(data_path).suffix.lower()
    if suffix in FILE_SOURCES:
        return FILE_SOURCES[suffix]
    options = [*(repr(k) for k in KEYWORD_SOURCES), *(f"a {s} file" for s in FILE_SOURCES)]
    raise TrainingError(f"data_path {data_path!r} is not a supported data source; use {' or '.join(options)}")


def check_data(cfg: TrainingConfig) -> None:
    """Run the cheap checks of the source named by ``cfg.data_path`` (no Keras import, no map data read)."""
    source = get_data_source(cfg.data_path)
    if source.check is not None:
        source.check(cfg)


def load_data(cfg: TrainingConfig) -> DataBundle:
    """Build the :class:`~training.data.bundle.DataBundle` of a run from the source named by ``cfg.data_path``."""
    return get_data_source(cfg.data_path).load(cfg)
