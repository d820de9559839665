"""Training data: read the maps, split them, standardize them, hand them to Keras in batches.

The training loop in ``training/main.py`` only sees a :class:`DataBundle`: three ``keras.utils.PyDataset`` objects
(train, validation, test) that yield ``(inputs, targets)`` batches of standardized maps keyed by the model's input
and output names, the :class:`Standardization` that maps them back to physical units, and the test split of every
array in physical units. A :class:`DataSource` builds the bundle (``load``) and may check the config against the
data cheaply first (``check``, run before Keras is imported). :func:`get_data_source` picks it from ``data_path``:

- a keyword registered in :data:`KEYWORD_SOURCES` (``"simulate"`` generates maps on the fly, see
  :mod:`training.simsource`), else
- the file suffix, looked up in :data:`FILE_SOURCES`: ``.npz`` (written by ``datapipe/datapipeline.py``), read
  into memory by :data:`MAP_FILE_SOURCE`, and ``.h5`` / ``.hdf5`` (datasets at the file's root), streamed from the
  file by :data:`H5_STREAM_SOURCE` (:mod:`training.h5stream`: the data set may be larger than the RAM).

A new source registers itself in one of these dicts; nothing else changes.

Map files hold float arrays of shape (nsims, npix, npix) named as in the pipeline (``q_len``, ``u_len``,
``e_unl``, ``tru_kappa``, ``tru_tau``, ``rec_kappa``, …; CMB maps in μK, κ and τ dimensionless). Other entries
(``metadata``) are ignored.

This module does not import Keras (the batches live in :mod:`training.batches`, imported when a bundle is built).
"""

from __future__ import annotations

import dataclasses
import math
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.config import TrainingConfig, TrainingError

SPLIT_NAMES = ("train", "val", "test")
NON_MAP_ENTRIES = frozenset({"metadata"})
# Random stream of the split permutation (training.batches uses stream 1 of the same seed for the batch order).
_SPLIT_STREAM = 0
# Maps per chunk when computing statistics, to bound the memory of float64 temporaries.
_STATS_CHUNK = 256


# --------------------------------------------------------------------------------------------------------------
# Reading map files


def _is_h5(path: Path) -> bool:
    return path.suffix.lower() in (".h5", ".hdf5")


def inspect_map_file(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the map arrays in a ``.npz`` or ``.h5`` file, read from headers only (no map data).

    Parameters
    ----------
    path : str or pathlib.Path
        The map file.

    Returns
    -------
    dict of str to tuple of int
        Array name → shape, in file order; entries such as ``metadata`` left out.

    Raises
    ------
    TrainingError
        If the file does not exist or cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"data file {str(path)!r} does not exist (set data_path in the config)")
    try:
        if _is_h5(path):
            import h5py

            with h5py.File(path, "r") as f:
                shapes = {k: tuple(f[k].shape) for k in f if isinstance(f[k], h5py.Dataset)}
        else:
            shapes = {}
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    name = info.filename.removesuffix(".npy")
                    if name not in NON_MAP_ENTRIES:
                        with zf.open(info) as member:
                            shapes[name] = _npy_shape(member)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise TrainingError(f"cannot read data file {str(path)!r}: {exc}") from None
    return {k: v for k, v in shapes.items() if k not in NON_MAP_ENTRIES}


def _npy_shape(member: Any) -> tuple[int, ...]:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return tuple(np.lib.format.read_array_header_1_0(member)[0])
    if version == (2, 0):
        return tuple(np.lib.format.read_array_header_2_0(member)[0])
    return np.lib.format.read_array(member, allow_pickle=False).shape  # other versions: rare, read the array


def list_map_file(path: str | Path) -> list[str]:
    """Names of the map arrays in a ``.npz`` or ``.h5`` file (entries such as ``metadata`` left out)."""
    return list(inspect_map_file(path))


def check_map_file(path: str | Path, names: Sequence[str], imagesize: int) -> int:
    """Check from the file's headers that the named arrays exist and hold imagesize × imagesize maps.

    Parameters
    ----------
    path : str or pathlib.Path
        ``.npz`` or ``.h5`` / ``.hdf5`` file.
    names : sequence of str
        Arrays the run needs.
    imagesize : int
        Expected map side in pixels.

    Returns
    -------
    int
        Number of maps (nsims).

    Raises
    ------
    TrainingError
        If the file is missing or unreadable, an array is missing (the message lists what the file has), maps are
        not imagesize × imagesize, or arrays hold different numbers of maps.
    """
    path = Path(path)
    shapes = inspect_map_file(path)
    missing = [n for n in names if n not in shapes]
    if missing:
        raise TrainingError(
            f"data file {str(path)!r} lacks array(s) {', '.join(missing)}; it has: {', '.join(shapes) or 'none'}"
        )
    nsims = None
    for name in names:
        shape = shapes[name]
        if len(shape) == 4 and shape[-1] == 1:
            shape = shape[:3]
        if len(shape) != 3:
            raise TrainingError(f"array {name!r} in {str(path)!r} has shape {shape}; expected (nsims, npix, npix)")
        if shape[1:] != (imagesize, imagesize):
            raise TrainingError(
                f"array {name!r} holds {shape[1]}x{shape[2]} maps but imagesize is {imagesize}; "
                "set imagesize to the map size or regenerate the maps"
            )
        if nsims is None:
            nsims = shape[0]
        elif shape[0] != nsims:
            raise TrainingError(
                f"arrays in {str(path)!r} hold different numbers of maps: {names[0]!r} {nsims}, {name!r} {shape[0]}"
            )
    return int(nsims or 0)


def read_maps(path: str | Path, names: Sequence[str], imagesize: int) -> dict[str, np.ndarray]:
    """Read only the named arrays from a map file and check them.

    Parameters
    ----------
    path : str or pathlib.Path
        ``.npz`` or ``.h5`` / ``.hdf5`` file.
    names : sequence of str
        Arrays to read, e.g. ``["q_len", "u_len", "tru_kappa"]``.
    imagesize : int
        Expected map side in pixels.

    Returns
    -------
    dict of str to numpy.ndarray
        Each array (nsims, imagesize, imagesize), floating point, in the file's units.

    Raises
    ------
    TrainingError
        On any problem listed in :func:`check_map_file`, or if a map has NaN or inf values (the message names the
        array and the map index).
    """
    path = Path(path)
    check_map_file(path, names, imagesize)
    try:
        arrays = _read_arrays(path, names)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise TrainingError(f"cannot read data file {str(path)!r}: {exc}") from None
    for name, arr in arrays.items():
        if arr.ndim == 4:
            arr = arrays[name] = arr[..., 0]
        if not np.issubdtype(arr.dtype, np.floating):
            arr = arrays[name] = arr.astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(arr).reshape(arr.shape[0], -1).all(axis=1))
        if bad.size:
            raise TrainingError(
                f"array {name!r} has NaN or inf values in map index {bad[0]}"
                + (f" (and {bad.size - 1} more maps)" if bad.size > 1 else "")
            )
    return arrays


def _read_arrays(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    if _is_h5(path):
        import h5py

        with h5py.File(path, "r") as f:
            return {n: f[n][...] for n in names}
    # NpzFile reads one member per key access: only the requested arrays are decompressed.
    with np.load(path, allow_pickle=False) as f:
        return {n: f[n] for n in names}


# --------------------------------------------------------------------------------------------------------------
# Splitting and standardizing


def split_counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Numbers of maps in the (train, val, test) splits: val and test rounded, train takes the rest."""
    n_val = int(round(n * fractions[1]))
    n_test = int(round(n * fractions[2]))
    return n - n_val - n_test, n_val, n_test


def split_indices(n: int, fractions: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """Deterministic random train/val/test split of map indices.

    One permutation from ``numpy.random.default_rng`` seeded by ``seed`` is shared by every array (features,
    targets, traces), so map *i* of each array lands in the same split.

    Parameters
    ----------
    n : int
        Number of maps.
    fractions : sequence of 3 float
        Training, validation and test fractions (summing to 1).
    seed : int
        Seed of the permutation.

    Returns
    -------
    dict
        ``{"train": idx, "val": idx, "test": idx}``, disjoint sorted int64 index arrays covering ``range(n)``.
    """
    counts = split_counts(n, fractions)
    perm = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(n)
    bounds = np.cumsum((0, *counts))
    return {name: np.sort(perm[bounds[i] : bounds[i + 1]]) for i, name in enumerate(SPLIT_NAMES)}


def check_split_sizes(n: int, fractions: Sequence[float], batch_size: int) -> None:
    """Require every split of ``n`` maps to hold at least one batch.

    Raises
    ------
    TrainingError
        Naming the split, its size and the remedies.
    """
    for label, count in zip(("training", "validation", "test"), split_counts(n, fractions), strict=True):
        if count < batch_size:
            raise TrainingError(
                f"the {label} split has {count} of {n} maps, fewer than one batch (batch_size {batch_size}); "
                "use more maps, a smaller batch_size or other split fractions"
            )


@dataclasses.dataclass
class Standardization:
    """Per-array mean and standard deviation of the training split: x_std = (x − mean) / std.

    Attributes
    ----------
    means, stds : dict of str to float
        Keyed by array name (e.g. ``"q_len"``), in the array's physical units.
    """

    means: dict[str, float]
    stds: dict[str, float]

    @classmethod
    def fit(cls, arrays: Mapping[str, Any], indices: np.ndarray | None = None) -> Standardization:
        """Compute the mean, then the standard deviation about it, of each array over the given maps.

        Parameters
        ----------
        arrays : mapping of str to array
            Arrays (nsims, npix, npix); NumPy arrays or anything indexable along the first axis.
        indices : numpy.ndarray, optional
            Maps to use (the training split); all when omitted.

        Returns
        -------
        Standardization

        Raises
        ------
        TrainingError
            If an array is constant over those maps (zero standard deviation).
        """
        means, stds = {}, {}
        for name, arr in arrays.items():
            idx = np.arange(len(arr)) if indices is None else np.asarray(indices)
            chunks = [idx[i : i + _STATS_CHUNK] for i in range(0, len(idx), _STATS_CHUNK)]
            count = len(idx) * math.prod(arr.shape[1:])
            mean = sum(np.sum(arr[c], dtype=np.float64) for c in chunks) / count
            var = sum(np.sum((np.asarray(arr[c], dtype=np.float64) - mean) ** 2) for c in chunks) / count
            if not var > 0:
                raise TrainingError(f"array {name!r} is constant over the training split; it cannot be standardized")
            means[name], stds[name] = float(mean), float(np.sqrt(var))
        return cls(means, stds)

    def apply(self, name: str, x: np.ndarray) -> np.ndarray:
        """Standardize maps of array ``name`` (physical units → zero mean, unit variance), float32."""
        # float32 arithmetic: this runs on every batch, and the maps are float32 already.
        return (np.asarray(x, dtype=np.float32) - np.float32(self.means[name])) / np.float32(self.stds[name])

    def invert(self, name: str, x: np.ndarray) -> np.ndarray:
        """Map standardized values of array ``name`` back to physical units, float32."""
        return np.asarray(x, dtype=np.float32) * np.float32(self.stds[name]) + np.float32(self.means[name])

    def to_npz_dicts(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The contents of ``map_means.npz`` and ``map_stds.npz``: keys ``<array>_mean`` and ``<array>_std``."""
        means = {f"{k}_mean": np.float64(v) for k, v in self.means.items()}
        stds = {f"{k}_std": np.float64(v) for k, v in self.stds.items()}
        return means, stds

    @classmethod
    def from_npz(cls, means_path: str | Path, stds_path: str | Path) -> Standardization:
        """Read ``map_means.npz`` and ``map_stds.npz`` written by a training run."""
        with np.load(means_path) as m, np.load(stds_path) as s:
            means = {k.removesuffix("_mean"): float(m[k]) for k in m.files}
            stds = {k.removesuffix("_std"): float(s[k]) for k in s.files}
        return cls(means, stds)


# --------------------------------------------------------------------------------------------------------------
# Data sources


@dataclasses.dataclass
class DataBundle:
    """Everything the training loop needs from a data source.

    Attributes
    ----------
    train, val, test : keras.utils.PyDataset
        Batches ``(inputs, targets)`` of standardized maps; ``train`` reshuffles every epoch, ``val`` and ``test``
        keep a fixed order (the order of ``test_arrays``).
    standardization : Standardization
        Training-split statistics of every feature and target array.
    test_arrays : dict of str to numpy.ndarray
        The test split of every loaded array (features, targets, traces) in physical units, (n_test, npix, npix).
    sizes : dict of str to int
        Number of maps in each split (``"train"``, ``"val"``, ``"test"``).
    split_indices : dict of str to numpy.ndarray, optional
        Map indices of each split in the source file, when the source is a file.
    source : str
        One line describing where the maps came from (for logs and ``summary.json``).
    close : callable, optional
        Releases the source's resources (open files) once training and the outputs are done.

    Notes
    -----
    ``test_arrays`` values need only ``len()``, ``shape`` and slicing along the first axis (``a[i:j]`` → NumPy
    array): a streaming source hands over views that read on demand (:class:`training.h5stream.SplitView`), and the
    test-set outputs are written chunk by chunk.
    """

    train: Any
    val: Any
    test: Any
    standardization: Standardization
    test_arrays: dict[str, Any]
    sizes: dict[str, int]
    split_indices: dict[str, np.ndarray] | None = None
    source: str = ""
    close: Callable[[], None] | None = None


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A way of producing the training data.

    Attributes
    ----------
    load : callable
        ``load(cfg) -> DataBundle``.
    check : callable, optional
        ``check(cfg) -> None``: cheap checks of the config against the data (raising :class:`TrainingError`),
        run before Keras is imported so that bad input fails fast.
    """

    load: Callable[[TrainingConfig], DataBundle]
    check: Callable[[TrainingConfig], None] | None = None


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
        On any problem listed in :func:`read_maps`, or a split with fewer maps than one batch.
    """
    path = cfg.resolve(cfg.data_path)
    arrays = read_maps(path, cfg.arrays, cfg.imagesize)
    nsims = len(next(iter(arrays.values())))
    check_split_sizes(nsims, cfg.splits, cfg.batch_size)
    splits = split_indices(nsims, cfg.splits, cfg.seed)
    used = {**cfg.feat_used, **cfg.target_used}
    std = Standardization.fit({a: arrays[a] for a in used.values()}, splits["train"])

    from training.batches import MapDataset  # Keras enters here, once the data checked out

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


def _load_h5_stream(cfg: TrainingConfig) -> DataBundle:
    from training.h5stream import load_h5_stream_source

    return load_h5_stream_source(cfg)


def _check_h5_stream(cfg: TrainingConfig) -> None:
    from training.h5stream import check_h5_stream_source

    check_h5_stream_source(cfg)


#: HDF5 map files, streamed batch by batch without loading them (:mod:`training.h5stream`).
H5_STREAM_SOURCE = DataSource(load=_load_h5_stream, check=_check_h5_stream)

def _load_simulation(cfg: TrainingConfig) -> DataBundle:
    from training.simsource import load_simulation_source

    return load_simulation_source(cfg)


def _check_simulation(cfg: TrainingConfig) -> None:
    from training.simsource import check_simulation_source

    check_simulation_source(cfg)


#: Sources selected by a keyword as ``data_path``: ``"simulate"`` trains on fresh simulations (training.simsource).
KEYWORD_SOURCES: dict[str, DataSource] = {"simulate": DataSource(load=_load_simulation, check=_check_simulation)}
#: Sources selected by the suffix of ``data_path``.
FILE_SOURCES: dict[str, DataSource] = {".npz": MAP_FILE_SOURCE, ".h5": H5_STREAM_SOURCE, ".hdf5": H5_STREAM_SOURCE}


def get_data_source(data_path: str) -> DataSource:
    """Pick the data source for a config's ``data_path`` (keyword first, then file suffix).

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
    """Build the :class:`DataBundle` of a run from the source named by ``cfg.data_path``."""
    return get_data_source(cfg.data_path).load(cfg)
