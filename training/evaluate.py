#!/usr/bin/env python3
"""Evaluate a trained network against the quadratic estimator (QE).

``python training/evaluate.py --model-dir DIR --data FILE [--output DIR] [--bias-test]``

Loads a network folder (written by ``training/main.py``, or a shipped one in ``trained_networks/``), standardizes the
observed maps of a pipeline data file with the network's own means and standard deviations, predicts τ, κ and the
primordial E map, rescales the predictions to physical units and compares them with the truth in multipole bins —
auto- and cross-spectra, the cross-correlation coefficient :math:`r_L = C_L^{pt} / \\sqrt{C_L^{pp} C_L^{tt}}`, the
residual power and the effective reconstruction noise (:mod:`training.crosscorr`) — next to the same statistics of
the QE maps in the file (``rec_kappa``, ``rec_tau`` and their Wiener-filtered versions ``wf_rec_*``). It writes
``metrics.json``, ``table.txt`` and PNG figures into ``--output``, and prints the table.

``--bias-test`` adds the lensing-bias demonstration: on lensed maps without patchy τ (simulated with the data's
settings, or read with ``--bias-data``), the spurious τ power of the τ QE and of the network, relative to
:math:`C_L^{\\tau\\tau}`.

The functions are also the notebook's API (``trained_networks/example_evaluate_results.ipynb``):
:func:`load_network`, :func:`load_map_data`, :func:`predict`, :func:`compare_fields`, :func:`format_table`,
:func:`run_bias_test`, and the figures in :mod:`training.figures`.

Exit status: 0 done (metrics that lacked a truth array are skipped with a note), 2 bad input or nothing that can be
evaluated (one ``error: …`` line on stderr).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    # Run as a script (`python training/evaluate.py`): import the package from the repository root, not this folder.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from training.config import TrainingError  # noqa: E402
from training.crosscorr import ReconstructionStats, reconstruction_stats  # noqa: E402

#: Model input → array when the network folder has no ``summary.json`` (the paper's names).
DEFAULT_INPUTS: dict[str, str] = {"qlen": "q_len", "ulen": "u_len"}
#: Model output → truth array when the network folder has no ``summary.json``.
DEFAULT_OUTPUTS: dict[str, str] = {"tau": "tru_tau", "kappa": "tru_kappa", "unle": "e_unl"}
#: QE maps compared with the network, per truth array: the raw QE and its Wiener-filtered version.
QE_MAPS: dict[str, tuple[str, ...]] = {"tru_tau": ("rec_tau", "wf_rec_tau"), "tru_kappa": ("rec_kappa", "wf_rec_kappa")}
#: Symbol and units of the known truth arrays (others are labelled by their output name).
FIELD_INFO: dict[str, tuple[str, str]] = {
    "tru_tau": ("τ", "dimensionless"),
    "tru_kappa": ("κ", "dimensionless"),
    "e_unl": ("E", "μK"),
}
#: Multipole ranges over which the printed table averages r_L.
AVERAGE_RANGES: tuple[tuple[int, int], ...] = ((100, 1000), (1000, 2000))
#: Default binning: ΔL = 100 from L = 20 to 3500 (as :data:`training.crosscorr.DEFAULT_EDGES`).
DEFAULT_LMIN, DEFAULT_LMAX, DEFAULT_DELTA_L = 20.0, 3500.0, 100.0
#: Pixel size assumed for data without metadata (the paper's), in arcmin.
PAPER_PIXEL_ARCMIN = 2.34375
WINDOW_FILE = "window_info.npz"
FIGURES = {
    "maps": "map_comparison.png",
    "r_ell": "r_ell.png",
    "spectra": "spectra.png",
    "bias": "bias_test.png",
}


class EvaluationError(TrainingError):
    """Bad input to the evaluation (folder, data, options); the CLI prints it as one line and exits with 2."""


# --------------------------------------------------------------------------------------------------------------
# The network


@dataclasses.dataclass
class Network:
    """A trained network with what is needed to apply it to maps in physical units.

    Attributes
    ----------
    model : keras.Model
        The network (uncompiled).
    standardization : training.data.Standardization
        Means and standard deviations of its training data, keyed by array name (physical units).
    inputs : dict of str to str
        Model input name → array name of the data (e.g. ``"qlen" → "q_len"``, μK).
    outputs : dict of str to str
        Model output name → truth array name (e.g. ``"kappa" → "tru_kappa"``).
    imagesize : int or None
        Map side the network takes, in pixels (None: any).
    folder : pathlib.Path
        The network folder.
    source : str
        Which files the network was built from.
    notes : list of str
        Remarks made while loading (e.g. default names assumed).
    """

    model: Any
    standardization: Any
    inputs: dict[str, str]
    outputs: dict[str, str]
    imagesize: int | None
    folder: Path
    source: str
    notes: list[str] = dataclasses.field(default_factory=list)


def _read_json_file(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"cannot read {path}: {exc}") from None


def _find_weights(folder: Path) -> Path | None:
    preferred = folder / "model.weights.h5"
    if preferred.is_file():
        return preferred
    found = sorted(folder.glob("*.weights.h5"))
    return found[0] if found else None


def check_network_folder(model_dir: str | Path) -> Path:
    """Check, without Keras, that a folder holds a loadable network; return it as a path.

    Parameters
    ----------
    model_dir : str or pathlib.Path
        Network folder: ``model_architecture.json`` + ``*.weights.h5`` (or ``model.keras``), ``map_means.npz``,
        ``map_stds.npz``.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    EvaluationError
        If the folder or one of the files is missing; the message lists what the folder has.
    """
    folder = Path(model_dir)
    if not folder.is_dir():
        raise EvaluationError(
            f"model folder {str(folder)!r} does not exist; pass --model-dir the output_dir of a training run "
            "or a network folder in trained_networks/"
        )
    has = sorted(p.name for p in folder.iterdir())
    has_text = ", ".join(has) or "nothing"
    model_files = (folder / "model_architecture.json").is_file() and _find_weights(folder) is not None
    if not model_files and not (folder / "model.keras").is_file():
        raise EvaluationError(
            f"model folder {str(folder)!r} has neither model_architecture.json with a *.weights.h5 file nor "
            f"model.keras; it has: {has_text}"
        )
    for name in ("map_means.npz", "map_stds.npz"):
        if not (folder / name).is_file():
            raise EvaluationError(
                f"model folder {str(folder)!r} lacks {name} (the training data's standardization); it has: {has_text}"
            )
    return folder


def _build_model(folder: Path) -> tuple[Any, str]:
    """The Keras model of a network folder and a description of the files used."""
    import keras

    arch = folder / "model_architecture.json"
    weights = _find_weights(folder)
    if arch.is_file() and weights is not None:
        config = _read_json_file(arch)
        if not isinstance(config, dict):
            raise EvaluationError(f"{arch} does not hold a Keras model description")
        # The training run saves the compiled model's JSON; evaluation needs no optimizer, loss or custom metrics.
        config.pop("compile_config", None)
        try:
            model = keras.models.model_from_json(json.dumps(config))
        except (TypeError, ValueError, KeyError) as exc:
            raise EvaluationError(f"cannot rebuild the network from {arch}: {exc}") from None
        try:
            model.load_weights(str(weights))
        except (OSError, ValueError, KeyError) as exc:
            raise EvaluationError(f"weights {weights} do not fit the architecture in {arch.name}: {exc}") from None
        return model, f"{arch.name} + {weights.name}"
    from training.resunet import load_model

    try:
        return load_model(folder / "model.keras", compile=False), "model.keras"
    except (OSError, TypeError, ValueError, KeyError) as exc:
        raise EvaluationError(f"cannot load {folder / 'model.keras'}: {exc}") from None


def _name_map(config: Mapping[str, Any] | None, key: str, default: dict[str, str]) -> dict[str, str] | None:
    if config and isinstance(config.get(key), Mapping):
        return {str(k): str(v) for k, v in config[key].items()}
    return None if config else dict(default)


def load_network(model_dir: str | Path) -> Network:
    """Load a trained network folder.

    The model comes from ``model_architecture.json`` and its weights (``model.weights.h5``, else any
    ``*.weights.h5``), or else from ``model.keras``; the standardization from ``map_means.npz`` / ``map_stds.npz``.
    Inputs and outputs are matched to arrays by the ``feat_used`` / ``target_used`` of ``summary.json``'s config
    when present, else by the paper's names (:data:`DEFAULT_INPUTS`, :data:`DEFAULT_OUTPUTS`).

    Parameters
    ----------
    model_dir : str or pathlib.Path
        The network folder.

    Returns
    -------
    Network

    Raises
    ------
    EvaluationError
        If a file is missing or unreadable, the weights do not fit, an input has no array name, or the means and
        standard deviations lack an array the network uses.
    """
    folder = check_network_folder(model_dir)
    from training.runtime import configure_gpu_memory

    configure_gpu_memory(True)  # before the first Keras import
    from training.data import Standardization

    model, source = _build_model(folder)
    summary = _read_json_file(folder / "summary.json") or {}
    config = summary.get("config") if isinstance(summary.get("config"), Mapping) else None
    notes = []
    if config is None:
        notes.append(f"{folder.name}: no summary.json config; assuming the paper's input/output array names")
    input_names = [t.name for t in model.inputs]
    output_names = list(model.output_names)
    inputs = _name_map(config, "feat_used", DEFAULT_INPUTS) or dict(DEFAULT_INPUTS)
    outputs = _name_map(config, "target_used", DEFAULT_OUTPUTS) or dict(DEFAULT_OUTPUTS)
    unknown = [name for name in input_names if name not in inputs]
    if unknown:
        raise EvaluationError(
            f"network inputs {unknown} have no data array name; add summary.json with a config whose feat_used "
            f"maps them (known: {inputs})"
        )
    inputs = {name: inputs[name] for name in input_names}
    for name in output_names:
        if name not in outputs:
            notes.append(f"network output {name!r} has no truth array name; it is not evaluated")
    outputs = {name: outputs[name] for name in output_names if name in outputs}

    try:
        std = Standardization.from_npz(folder / "map_means.npz", folder / "map_stds.npz")
    except (OSError, ValueError, KeyError) as exc:
        raise EvaluationError(f"cannot read map_means.npz / map_stds.npz in {folder}: {exc}") from None
    # Older network folders may key the statistics by model name (qlen) rather than array name (q_len).
    for name, array in [*inputs.items(), *outputs.items()]:
        for table in (std.means, std.stds):
            if array not in table and name in table:
                table[array] = table[name]
        if array not in std.means or array not in std.stds:
            raise EvaluationError(
                f"map_means.npz / map_stds.npz in {folder} lack {array!r} (needed for {name!r}); they have: "
                f"{', '.join(sorted(std.means))}"
            )
    shape = model.inputs[0].shape
    imagesize = int(shape[1]) if len(shape) >= 3 and shape[1] is not None else None
    return Network(model, std, inputs, outputs, imagesize, folder, source, notes)


def predict(network: Network, arrays: Mapping[str, np.ndarray], batch_size: int = 16) -> dict[str, np.ndarray]:
    """Apply the network to maps in physical units and return its predictions in physical units.

    Parameters
    ----------
    network : Network
        From :func:`load_network`.
    arrays : mapping of str to ndarray
        At least the network's input arrays (e.g. ``q_len``, ``u_len`` in μK), each (nmaps, npix, npix).
    batch_size : int
        Maps per forward pass.

    Returns
    -------
    dict of str to ndarray
        Model output name → (nmaps, npix, npix) float32 prediction in the units of its truth array
        (τ and κ dimensionless, E in μK), for every output with a truth array name.

    Raises
    ------
    EvaluationError
        If an input array is missing.
    """
    missing = [a for a in network.inputs.values() if a not in arrays]
    if missing:
        raise EvaluationError(f"the network needs input array(s) {', '.join(missing)}, which the data lack")
    std = network.standardization
    x = {name: std.apply(array, arrays[array])[..., None] for name, array in network.inputs.items()}
    raw = network.model.predict(x, batch_size=batch_size, verbose=0)
    if not isinstance(raw, list | tuple):
        raw = [raw]
    out = {}
    for name, pred in zip(network.model.output_names, raw, strict=True):
        if name in network.outputs:
            out[name] = std.invert(network.outputs[name], np.asarray(pred)[..., 0])
    return out


# --------------------------------------------------------------------------------------------------------------
# The data


@dataclasses.dataclass
class MapData:
    """Maps read from a pipeline data file, with the geometry needed for spectra.

    Attributes
    ----------
    path : pathlib.Path
        The data file.
    arrays : dict of str to ndarray
        Array name → (nmaps, npix, npix) float32 maps (CMB maps in μK, κ and τ dimensionless).
    npix : int
        Pixels per side.
    pixel_arcmin : float
        Pixel size in arcmin.
    w2 : float
        Mean of the squared taper (spectra of tapered maps are divided by it).
    w2_source : str
        Where w2 came from (``window_info.npz``, the file's metadata, or none).
    taper : ndarray or None
        (npix, npix) taper as applied to the saved maps.
    metadata : dict
        The file's run description (empty when it has none).
    missing : list of str
        Requested arrays the file does not have.
    notes : list of str
        Remarks made while reading.
    """

    path: Path
    arrays: dict[str, np.ndarray]
    npix: int
    pixel_arcmin: float
    w2: float
    w2_source: str
    taper: np.ndarray | None
    metadata: dict[str, Any]
    missing: list[str]
    notes: list[str]

    @property
    def nmaps(self) -> int:
        """Number of map sets read."""
        return len(next(iter(self.arrays.values()))) if self.arrays else 0


def inspect_data(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Array names and shapes (nsims, npix, npix) of a ``.npz`` / ``.h5`` data file, from headers only.

    Raises
    ------
    EvaluationError
        If the file is missing or unreadable, or holds no map arrays.
    """
    from training.data import inspect_map_file

    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"data file {str(path)!r} does not exist; pass --data a file written by the pipeline")
    try:
        shapes = inspect_map_file(path)
    except TrainingError as exc:
        raise EvaluationError(str(exc)) from None
    shapes = {k: (v[:3] if len(v) == 4 and v[-1] == 1 else v) for k, v in shapes.items()}
    shapes = {k: v for k, v in shapes.items() if len(v) == 3 and v[1] == v[2]}
    if not shapes:
        raise EvaluationError(f"data file {str(path)!r} holds no (nsims, npix, npix) map arrays")
    return shapes


def _read_npz_head(path: Path, name: str, count: int | None) -> np.ndarray:
    """The first ``count`` maps of one array of an ``.npz`` file, streamed from the archive member."""
    with zipfile.ZipFile(path) as zf, zf.open(f"{name}.npy") as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            fortran = True
        if fortran or dtype.hasobject:
            with np.load(path, allow_pickle=False) as f:
                return np.asarray(f[name][:count])
        n = shape[0] if count is None else min(count, shape[0])
        per_map = math.prod(shape[1:])
        buffer = member.read(n * per_map * dtype.itemsize)
        return np.frombuffer(buffer, dtype=dtype).reshape((n, *shape[1:])).copy()


def read_arrays(path: str | Path, names: Sequence[str], max_maps: int | None = None) -> dict[str, np.ndarray]:
    """Read named arrays (or their first ``max_maps`` maps) from a ``.npz`` / ``.h5`` data file as float32.

    Parameters
    ----------
    path : str or pathlib.Path
        The data file.
    names : sequence of str
        Arrays to read; each must exist (see :func:`inspect_data`).
    max_maps : int, optional
        Read at most this many map sets (the first ones).

    Returns
    -------
    dict of str to ndarray
        (nmaps, npix, npix) float32 arrays.

    Raises
    ------
    EvaluationError
        If the file cannot be read, or a map holds NaN or inf (array and map index named).
    """
    path = Path(path)
    out = {}
    try:
        if path.suffix.lower() in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                out = {n: np.asarray(f[n][:max_maps]) for n in names}
        else:
            out = {n: _read_npz_head(path, n, max_maps) for n in names}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise EvaluationError(f"cannot read data file {str(path)!r}: {exc}") from None
    for name, arr in out.items():
        if arr.ndim == 4:
            arr = arr[..., 0]
        arr = out[name] = np.ascontiguousarray(arr, dtype=np.float32)
        bad = np.flatnonzero(~np.isfinite(arr).reshape(arr.shape[0], -1).all(axis=1))
        if bad.size:
            raise EvaluationError(f"array {name!r} in {str(path)!r} has NaN or inf values in map index {bad[0]}")
    return out


def _metadata(path: Path) -> dict[str, Any]:
    from datapipe.writer import read_metadata

    try:
        meta = read_metadata(path)
    except (OSError, KeyError, ValueError, TypeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def data_settings(metadata: Mapping[str, Any], npix: int | None = None) -> Any:
    """The :class:`datapipe.settings.SimulationSettings` a data file was made with (from its metadata).

    Parameters
    ----------
    metadata : mapping
        The file's metadata (``datapipe.writer.read_metadata``); without ``settings``, the paper's defaults.
    npix : int, optional
        Map side to use when the metadata does not give one.

    Returns
    -------
    datapipe.settings.SimulationSettings
    """
    from datapipe.settings import SimulationSettings

    known = {f.name for f in dataclasses.fields(SimulationSettings)}
    given = metadata.get("settings") if isinstance(metadata.get("settings"), Mapping) else {}
    kwargs = {k: v for k, v in given.items() if k in known}
    if "maps" in kwargs:
        kwargs["maps"] = tuple(kwargs["maps"])
    if npix is not None and "npix" not in kwargs:
        kwargs["npix"] = npix
    return SimulationSettings(**kwargs)


def taper_and_w2(
    path: Path, npix: int, metadata: Mapping[str, Any], pixel_arcmin: float
) -> tuple[np.ndarray | None, float, str, list[str]]:
    """The taper of a data file and w2, the mean of its square.

    Read from ``window_info.npz`` beside the data when it fits (same map size, and the same w2 as the file's
    metadata when both give one); else rebuilt from the metadata's settings with :mod:`datapipe.taper`; else no
    taper (w2 = 1), with a note.

    Returns
    -------
    taper : ndarray or None
        (npix, npix) taper, flipped like the maps.
    w2 : float
        Mean of the squared taper.
    source : str
        ``"window_info.npz"``, ``"metadata"`` or ``"none"``.
    notes : list of str
        Remarks (why a source was not used).
    """
    from datapipe.taper import cosine_taper, w2_factor

    notes = []
    window = path.parent / WINDOW_FILE
    meta_w2 = metadata.get("w2")
    if window.is_file():
        try:
            with np.load(window) as f:
                taper = np.asarray(f["taper"], dtype=np.float64)
                w2 = float(f["w2"])
        except (OSError, KeyError, ValueError) as exc:
            notes.append(f"cannot read {window} ({exc}); rebuilding the taper")
        else:
            if taper.shape != (npix, npix):
                notes.append(f"{window} is for {taper.shape[0]}x{taper.shape[-1]} maps, not {npix}x{npix}; ignored")
            elif meta_w2 is not None and abs(float(meta_w2) - w2) > 1e-6 * w2:
                notes.append(f"{window} (w2 {w2:.6g}) belongs to another data set (w2 {float(meta_w2):.6g}); ignored")
            else:
                return taper, w2, WINDOW_FILE, notes
    if isinstance(metadata.get("settings"), Mapping):
        settings = data_settings(metadata, npix)
        taper = cosine_taper(npix, int(settings.taper_deg * 60.0 / pixel_arcmin))[::-1]
        return np.ascontiguousarray(taper), w2_factor(taper), "metadata", notes
    notes.append(f"no {WINDOW_FILE} beside {path.name} and no metadata: spectra are not corrected for a taper (w2 = 1)")
    return None, 1.0, "none", notes


def load_map_data(
    path: str | Path,
    names: Sequence[str] | None = None,
    max_maps: int | None = None,
    pixel_arcmin: float | None = None,
) -> MapData:
    """Read a pipeline data file: the wanted arrays that exist, the pixel size and the taper's w2.

    Parameters
    ----------
    path : str or pathlib.Path
        ``.npz`` or ``.h5`` file from ``datapipe/datapipeline.py``.
    names : sequence of str, optional
        Arrays to read (default: all map arrays). Names the file lacks are listed in ``missing``.
    max_maps : int, optional
        Read only the first ``max_maps`` map sets.
    pixel_arcmin : float, optional
        Pixel size in arcmin (default: from the file's metadata, else the paper's 2.34375 with a note).

    Returns
    -------
    MapData

    Raises
    ------
    EvaluationError
        If the file is missing or unreadable, maps hold NaN or inf, or ``max_maps`` < 1.
    """
    path = Path(path)
    shapes = inspect_data(path)
    if max_maps is not None and max_maps < 1:
        raise EvaluationError(f"--max-maps must be at least 1 (got {max_maps})")
    wanted = list(shapes) if names is None else list(dict.fromkeys(names))
    present = [n for n in wanted if n in shapes]
    missing = [n for n in wanted if n not in shapes]
    npix = shapes[present[0]][1] if present else next(iter(shapes.values()))[1]
    odd = [n for n in present if shapes[n][1:] != (npix, npix)]
    if odd:
        raise EvaluationError(f"arrays of {str(path)!r} have different map sizes: {odd[0]!r} {shapes[odd[0]]}")
    metadata = _metadata(path)
    notes = []
    settings = metadata.get("settings") if isinstance(metadata.get("settings"), Mapping) else {}
    if pixel_arcmin is None:
        pixel_arcmin = settings.get("pixel_arcmin")
        if pixel_arcmin is None:
            pixel_arcmin = PAPER_PIXEL_ARCMIN
            notes.append(f"{path.name} has no metadata: assuming {PAPER_PIXEL_ARCMIN}' pixels (set --pixel-arcmin)")
    if not pixel_arcmin > 0:
        raise EvaluationError(f"pixel size must be positive (got {pixel_arcmin!r} arcmin)")
    taper, w2, w2_source, taper_notes = taper_and_w2(path, npix, metadata, float(pixel_arcmin))
    arrays = read_arrays(path, present, max_maps)
    return MapData(path, arrays, npix, float(pixel_arcmin), w2, w2_source, taper, metadata, missing,
                   notes + taper_notes)


def check_compatible(network: Network, shapes: Mapping[str, tuple[int, ...]], path: str | Path) -> None:
    """Check a network against a data file's arrays: input arrays present, map size equal to the network's.

    Raises
    ------
    EvaluationError
        Naming the missing arrays or both map sizes.
    """
    missing = [a for a in network.inputs.values() if a not in shapes]
    if missing:
        raise EvaluationError(
            f"data file {str(path)!r} lacks the network's input array(s) {', '.join(missing)}; it has: "
            f"{', '.join(shapes)}"
        )
    npix = shapes[next(iter(network.inputs.values()))][1]
    if network.imagesize is not None and npix != network.imagesize:
        raise EvaluationError(
            f"the network takes {network.imagesize}x{network.imagesize} maps but {str(path)!r} holds {npix}x{npix} "
            f"maps; evaluate on data simulated with --npix {network.imagesize}"
        )


# --------------------------------------------------------------------------------------------------------------
# Statistics


@dataclasses.dataclass
class FieldResult:
    """Binned comparison of one output field with its truth, for the network and the QE maps.

    Attributes
    ----------
    output : str
        Model output name (``tau``, ``kappa``, ``unle``).
    truth : str
        Truth array name (``tru_tau``, ``tru_kappa``, ``e_unl``).
    label, units : str
        Symbol (τ, κ, E) and units of the field (spectra are in units² × sr).
    network : ReconstructionStats
        The network's prediction against the truth.
    qe : dict of str to ReconstructionStats
        QE array name → its statistics (those in the data).
    nmaps : int
        Map sets used (null map sets, whose truth is identically zero, are left out).
    nnull : int
        Null map sets left out.
    """

    output: str
    truth: str
    label: str
    units: str
    network: ReconstructionStats
    qe: dict[str, ReconstructionStats]
    nmaps: int
    nnull: int


def make_edges(lmin: float = DEFAULT_LMIN, lmax: float = DEFAULT_LMAX, delta_l: float = DEFAULT_DELTA_L) -> np.ndarray:
    """Linear multipole bin edges (:func:`datapipe.powspec.linear_bins`).

    Equal bins from ``lmin`` to ``lmax`` with widths as close as possible to ``delta_l`` (35 bins of ΔL ≈ 99.4 from
    20 to 3500 for the defaults: :data:`training.crosscorr.DEFAULT_EDGES`).

    Raises
    ------
    EvaluationError
        If the range is empty or the width not positive.
    """
    from datapipe.powspec import linear_bins

    if not (delta_l > 0 and 0 <= lmin < lmax and lmax - lmin >= delta_l):
        raise EvaluationError(
            f"multipole bins need 0 <= lmin < lmax and 0 < delta_l <= lmax - lmin (got lmin {lmin}, lmax {lmax}, "
            f"delta_l {delta_l})"
        )
    return linear_bins(lmin, lmax, delta_l)


def null_maps(truth: np.ndarray) -> np.ndarray:
    """Boolean mask of the map sets whose truth map is identically zero (the pipeline's null map sets)."""
    return ~np.any(truth.reshape(truth.shape[0], -1) != 0, axis=1)


def compare_fields(
    predictions: Mapping[str, np.ndarray],
    outputs: Mapping[str, str],
    data: MapData,
    edges: np.ndarray | None = None,
) -> tuple[dict[str, FieldResult], list[str]]:
    """Binned statistics of every predicted field and of the QE maps against the truth.

    Null map sets (truth identically zero: the pipeline's τ = κ = 0 sets) are left out of a field's statistics,
    where r_L is undefined.

    Parameters
    ----------
    predictions : mapping of str to ndarray
        Model output name → (nmaps, npix, npix) prediction in physical units (:func:`predict`).
    outputs : mapping of str to str
        Model output name → truth array name (``Network.outputs``).
    data : MapData
        The data, with the truth and QE arrays that exist.
    edges : ndarray, optional
        Multipole bin edges (default ΔL = 100 from 20 to 3500).

    Returns
    -------
    results : dict of str to FieldResult
        Keyed by output name, τ, κ, E first.
    skipped : list of str
        One line per metric that could not be computed, and why.
    """
    edges = make_edges() if edges is None else np.asarray(edges, dtype=float)
    order = {a: i for i, a in enumerate(FIELD_INFO)}
    results: dict[str, FieldResult] = {}
    skipped: list[str] = []
    for name in sorted(predictions, key=lambda n: order.get(outputs[n], len(order))):
        truth_name = outputs[name]
        label, units = FIELD_INFO.get(truth_name, (name, "map units"))
        if truth_name not in data.arrays:
            skipped.append(f"{label} ({name}): truth array {truth_name!r} not in the data; its metrics are skipped")
            continue
        truth = data.arrays[truth_name]
        keep = ~null_maps(truth)
        if keep.sum() < 2:
            skipped.append(f"{label} ({name}): fewer than 2 map sets with non-zero {truth_name}; metrics skipped")
            continue

        def stats(rec: np.ndarray, truth: np.ndarray = truth, keep: np.ndarray = keep) -> ReconstructionStats:
            return reconstruction_stats(truth[keep], rec[keep], data.pixel_arcmin, data.w2, edges)

        qe = {}
        for qe_name in QE_MAPS.get(truth_name, ()):
            if qe_name in data.arrays:
                qe[qe_name] = stats(data.arrays[qe_name])
        if truth_name in QE_MAPS and not qe:
            skipped.append(f"{label}: no QE map ({', '.join(QE_MAPS[truth_name])}) in the data; network only")
        results[name] = FieldResult(
            name, truth_name, label, units, stats(predictions[name]), qe, int(keep.sum()), int((~keep).sum())
        )
    return results, skipped


def mean_r_table(
    stats: ReconstructionStats, ranges: Sequence[tuple[float, float]] = AVERAGE_RANGES
) -> dict[str, float]:
    """r_L averaged over the bins in each multipole range, keyed ``"lmin-lmax"``."""
    return {f"{lo:g}-{hi:g}": stats.mean_r(lo, hi) for lo, hi in ranges}


def format_table(results: Mapping[str, FieldResult], ranges: Sequence[tuple[float, float]] = AVERAGE_RANGES) -> str:
    """The compact text table: per field, r_L averaged over each L range, network and QE maps.

    Parameters
    ----------
    results : mapping of str to FieldResult
        From :func:`compare_fields`.
    ranges : sequence of (float, float)
        Multipole ranges (default L 100–1000 and 1000–2000).

    Returns
    -------
    str
        One row per (field, estimator); ``nan`` where a range holds no bin.
    """
    heads = [f"L {lo:g}-{hi:g}" for lo, hi in ranges]
    lines = ["mean r_L = C_L^pt / sqrt(C_L^pp C_L^tt) over the bins in each L range",
             f"{'field':6s} {'estimator':18s} {'maps':>5s} " + " ".join(f"{h:>12s}" for h in heads)]
    for res in results.values():
        rows = [("network", res.network), *((f"QE {k}", v) for k, v in res.qe.items())]
        for label, st in rows:
            values = " ".join(f"{st.mean_r(lo, hi):12.3f}" for lo, hi in ranges)
            lines.append(f"{res.label:6s} {label:18s} {res.nmaps:5d} {values}")
    return "\n".join(lines)


def _finite_or_none(obj: Any) -> Any:
    """JSON cannot hold NaN or inf: replace them by None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_none(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite_or_none(obj.item())
    if isinstance(obj, np.ndarray):
        return _finite_or_none(obj.tolist())
    return obj


def _stats_dict(stats: ReconstructionStats) -> dict[str, Any]:
    return {**stats.to_dict(), "nmaps": stats.nmaps, "mean_r": mean_r_table(stats)}


def metrics_dict(results: Mapping[str, FieldResult]) -> dict[str, Any]:
    """``metrics.json``'s ``fields`` entry: per field, the network's and each QE map's per-bin statistics."""
    return {
        name: {
            "label": res.label,
            "truth": res.truth,
            "units": res.units,
            "nmaps": res.nmaps,
            "null_maps_left_out": res.nnull,
            "network": _stats_dict(res.network),
            "qe": {k: _stats_dict(v) for k, v in res.qe.items()},
        }
        for name, res in results.items()
    }


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as strict JSON (NaN and inf as null), atomically."""
    from training.artifacts import save_text

    return save_text(path, json.dumps(_finite_or_none(obj), indent=1, ensure_ascii=False, allow_nan=False) + "\n")


# --------------------------------------------------------------------------------------------------------------
# Lensing-bias test


@dataclasses.dataclass
class BiasTestResult:
    """Spurious τ power on lensed maps without patchy τ, binned (each array has one value per bin).

    Attributes
    ----------
    ell, bin_lo, bin_hi : ndarray
        Mean multipole and limits of each bin.
    cl_tau : ndarray
        Theory :math:`C_L^{\\tau\\tau}` of the paper's patchy-τ model, binned.
    spurious : dict of str to ndarray
        Spurious τ power (dimensionless × sr) by estimate: ``qe_total`` (auto-power of ``rec_tau``),
        ``qe_minus_n0`` (that minus the QE noise :math:`N^{(0)}_L`), ``qe_kappa_part`` (the part correlated with
        κ, :math:`(C_L^{\\hat\\tau\\kappa})^2 / C_L^{\\kappa\\kappa}`), ``qe_first_order``
        (:math:`R_L^2 C_L^{\\kappa\\kappa}` with the response R of
        :meth:`datapipe.estimators.QuadraticEstimators.tau_response_to_kappa`), ``network_total``,
        ``network_kappa_part``; those that could be computed.
    errors : dict of str to ndarray
        Standard error of each, from the scatter over map sets (the κ-correlated parts propagated from the
        cross-spectrum's).
    nmaps : int
        Map sets used.
    source : str
        Where the maps came from.
    """

    ell: np.ndarray
    bin_lo: np.ndarray
    bin_hi: np.ndarray
    cl_tau: np.ndarray
    spurious: dict[str, np.ndarray]
    errors: dict[str, np.ndarray]
    nmaps: int
    source: str

    def ratio(self, key: str) -> np.ndarray:
        """Spurious power of one estimate over :math:`C_L^{\\tau\\tau}`, per bin (NaN where C_L^ττ = 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.cl_tau > 0, self.spurious[key] / self.cl_tau, np.nan)

    def mean_ratio(self, key: str, lmin: float, lmax: float) -> float:
        """:meth:`ratio` averaged over the bins whose mean multipole lies in [lmin, lmax]."""
        sel = (self.ell >= lmin) & (self.ell <= lmax) & np.isfinite(self.ratio(key))
        return float(np.mean(self.ratio(key)[sel])) if sel.any() else float("nan")

    def to_dict(self, ranges: Sequence[tuple[float, float]] = AVERAGE_RANGES) -> dict[str, Any]:
        """JSON-ready: per-bin arrays, ratios to C_L^ττ and their averages over each range."""
        return {
            "nmaps": self.nmaps,
            "source": self.source,
            "ell": self.ell.tolist(),
            "bin_lo": self.bin_lo.tolist(),
            "bin_hi": self.bin_hi.tolist(),
            "cl_tau_theory": self.cl_tau.tolist(),
            "spurious_power": {k: v.tolist() for k, v in self.spurious.items()},
            "spurious_power_error": {k: v.tolist() for k, v in self.errors.items()},
            "ratio_to_cl_tau": {k: self.ratio(k).tolist() for k in self.spurious},
            "mean_ratio": {k: {f"{lo:g}-{hi:g}": self.mean_ratio(k, lo, hi) for lo, hi in ranges}
                           for k in self.spurious},
        }


#: Rows of the bias table: key of :attr:`BiasTestResult.spurious` → description.
BIAS_ROWS: dict[str, str] = {
    "qe_total": "τ QE rec_tau, total power",
    "qe_minus_n0": "τ QE, total − N0",
    "qe_kappa_part": "τ QE, part correlated with κ",
    "qe_first_order": "first order R_L² C_L^κκ",
    "network_total": "network τ, total power",
    "network_kappa_part": "network τ, part correlated with κ",
}


def bias_settings(data: MapData, seed: int | None = None, names: Sequence[str] = ()) -> Any:
    """Simulation settings of the bias test: the data's geometry, taper, beam and noise, with τ = 0, lensing on.

    Parameters
    ----------
    data : MapData
        The evaluated data (its metadata gives the settings; the paper's defaults otherwise).
    seed : int, optional
        Master seed (default: the data's seed + 1, so the maps are independent of the data).
    names : sequence of str
        Arrays to simulate besides ``tru_kappa``, ``tru_tau`` and ``rec_tau``.

    Returns
    -------
    datapipe.settings.SimulationSettings
    """
    base = data_settings(data.metadata, data.npix)
    base = base.replace(npix=data.npix, pixel_arcmin=data.pixel_arcmin)
    seed = base.seed + 1 if seed is None else seed
    maps = tuple(dict.fromkeys([*names, "tru_kappa", "tru_tau", "rec_tau"]))
    return base.replace(tau=False, lensing=True, null_fraction=0.0, seed=seed, maps=maps)


def simulate_bias_maps(settings: Any, nsims: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Simulate ``nsims`` lensed, τ-free map sets with the pipeline.

    Parameters
    ----------
    settings : datapipe.settings.SimulationSettings
        From :func:`bias_settings`.
    nsims : int
        Number of map sets (at least 2).

    Returns
    -------
    arrays : dict of str to ndarray
        The arrays of ``settings.maps``, (nsims, npix, npix) float32, as the pipeline saves them.
    taper : ndarray
        (npix, npix) taper applied to them.
    """
    from datapipe.simulate import MapSetSimulator

    if nsims < 2:
        raise EvaluationError(f"--bias-nsims must be at least 2 (got {nsims})")
    simulator = MapSetSimulator(settings)
    return simulator.simulate(np.arange(nsims)), np.ascontiguousarray(simulator.taper[::-1])


def _bin_full_plane(grid: Any, values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of a full-plane 2-D Fourier array over the modes of each bin, and the mode counts."""
    ell = grid.modlmap.ravel()
    index = np.digitize(ell, edges) - 1
    valid = (ell >= edges[0]) & (ell < edges[-1])
    nbins = len(edges) - 1
    counts = np.bincount(index[valid], minlength=nbins)
    total = np.bincount(index[valid], weights=np.asarray(values).ravel()[valid], minlength=nbins)
    return total / np.maximum(counts, 1), counts


def run_bias_test(
    arrays: Mapping[str, np.ndarray],
    settings: Any,
    taper: np.ndarray | None,
    edges: np.ndarray | None = None,
    network: Network | None = None,
    batch_size: int = 16,
    source: str = "",
) -> BiasTestResult:
    """Measure the spurious τ power of the τ QE and of the network on lensed maps with τ = 0.

    A straightforward τ QE responds to lensing: :math:`\\langle\\hat\\tau_L\\rangle = R_L \\kappa_L`, so on maps
    without patchy τ it still reports τ power, :math:`R_L^2 C_L^{\\kappa\\kappa}` plus its noise
    :math:`N^{(0)}_L`. A network that has learnt to separate τ from κ should output (almost) nothing.

    Parameters
    ----------
    arrays : mapping of str to ndarray
        τ-free lensed map sets: ``rec_tau`` for the QE rows, ``tru_kappa`` for the κ-correlated parts, the
        network's inputs for its rows; (nmaps, npix, npix) each.
    settings : datapipe.settings.SimulationSettings
        Their settings (geometry, multipole ranges, noise, beam: the QE normalization and response).
    taper : ndarray or None
        (npix, npix) taper of the maps (None: untapered). A QE map reconstructed from maps tapered by W responds
        to :math:`W^2\\tau` and carries noise :math:`\\propto W^4`, so its power is divided by
        :math:`w_4 = \\langle W^4\\rangle` and its cross-power with the tapered κ by :math:`w_3`; the network,
        trained on tapered targets, predicts :math:`W\\tau`, whose power is divided by :math:`w_2`.
    edges : ndarray, optional
        Multipole bin edges (default ΔL = 100 from 20 to 3500).
    network : Network, optional
        Also evaluate the network's τ output (the output whose truth array is ``tru_tau``).
    batch_size : int
        Maps per forward pass.
    source : str
        Description of the maps, stored in the result.

    Returns
    -------
    BiasTestResult

    Raises
    ------
    EvaluationError
        If neither ``rec_tau`` nor a network τ output can be evaluated.
    """
    from datapipe.estimators import QuadraticEstimators
    from datapipe.fourier import FlatSkyGrid
    from datapipe.powspec import bin_theory, binned_power
    from datapipe.spectra import load_spectra

    edges = make_edges() if edges is None else np.asarray(edges, dtype=float)
    grid = FlatSkyGrid(settings.npix, settings.pixel_arcmin)
    spectra = load_spectra()
    any_map = next(iter(arrays.values()))
    probe = binned_power(grid, any_map[:1], edges=edges)
    keep = probe.nmodes > 0
    kappa = arrays.get("tru_kappa")
    w2, w3, w4 = (1.0, 1.0, 1.0) if taper is None else (float(np.mean(np.asarray(taper) ** k)) for k in (2, 3, 4))
    cl_kk = None if kappa is None else binned_power(grid, kappa, edges=edges, w2=w2).mean[keep]
    estimates: dict[str, np.ndarray] = {}

    errors: dict[str, np.ndarray] = {}

    def measure(prefix: str, tau_hat: np.ndarray, w_auto: float, w_cross: float) -> None:
        auto = binned_power(grid, tau_hat, edges=edges, w2=w_auto)
        estimates[f"{prefix}_total"], errors[f"{prefix}_total"] = auto.mean[keep], auto.error[keep]
        if cl_kk is not None:
            cross = binned_power(grid, tau_hat, kappa, edges=edges, w2=w_cross)
            c, dc = cross.mean[keep], cross.error[keep]
            with np.errstate(divide="ignore", invalid="ignore"):
                estimates[f"{prefix}_kappa_part"] = np.where(cl_kk > 0, c**2 / cl_kk, np.nan)
                errors[f"{prefix}_kappa_part"] = np.where(cl_kk > 0, 2 * np.abs(c) * dc / cl_kk, np.nan)

    if "rec_tau" in arrays:
        measure("qe", arrays["rec_tau"], w4, w3)
        qe = QuadraticEstimators(grid, spectra, settings)
        n0, _ = _bin_full_plane(grid, qe.tau_noise, edges)
        estimates["qe_minus_n0"] = estimates["qe_total"] - n0[keep]
        errors["qe_minus_n0"] = errors["qe_total"]
        r2, _ = _bin_full_plane(grid, qe.tau_response_to_kappa() ** 2, edges)
        if kappa is not None:
            kk = binned_power(grid, kappa, edges=edges, w2=w2)
            estimates["qe_first_order"], errors["qe_first_order"] = r2[keep] * cl_kk, r2[keep] * kk.error[keep]
        else:
            estimates["qe_first_order"] = r2[keep] * bin_theory(grid, spectra.kk, edges)[keep]
            errors["qe_first_order"] = np.zeros_like(estimates["qe_first_order"])
        # Order as in BIAS_ROWS.
        estimates = {k: estimates[k] for k in BIAS_ROWS if k in estimates}
    tau_outputs = [] if network is None else [n for n, a in network.outputs.items() if a == "tru_tau"]
    if tau_outputs and all(a in arrays for a in network.inputs.values()):
        measure("network", predict(network, arrays, batch_size)[tau_outputs[0]], w2, w2)
    if not estimates:
        raise EvaluationError("the bias test needs rec_tau or a network with a τ output and its input maps")
    edges_lo, edges_hi = edges[:-1][keep], edges[1:][keep]
    return BiasTestResult(
        ell=probe.ell[keep],
        bin_lo=edges_lo,
        bin_hi=edges_hi,
        cl_tau=bin_theory(grid, spectra.tau, edges)[keep],
        spurious=estimates,
        errors={k: errors[k] for k in estimates},
        nmaps=len(any_map),
        source=source,
    )


def format_bias_table(result: BiasTestResult, ranges: Sequence[tuple[float, float]] = AVERAGE_RANGES) -> str:
    """Text table of the bias test: spurious τ power over C_L^ττ, averaged over each L range."""
    heads = [f"L {lo:g}-{hi:g}" for lo, hi in ranges]
    lines = [f"lensing-bias test: {result.nmaps} lensed map sets with τ = 0 ({result.source})",
             f"{'spurious τ power / C_L^ττ':36s} " + " ".join(f"{h:>12s}" for h in heads)]
    for key in result.spurious:
        values = " ".join(f"{result.mean_ratio(key, lo, hi):12.3g}" for lo, hi in ranges)
        lines.append(f"{BIAS_ROWS.get(key, key):36s} {values}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------
# The whole evaluation


def pick_map_index(results: Mapping[str, FieldResult], data: MapData) -> int:
    """The first map set whose truth maps are all non-zero (not a null map set), else 0."""
    masks = [~null_maps(data.arrays[r.truth]) for r in results.values()]
    if not masks:
        return 0
    good = np.flatnonzero(np.logical_and.reduce(masks))
    return int(good[0]) if good.size else 0


def run_evaluation(
    model_dir: str | Path,
    data_path: str | Path,
    output: str | Path,
    *,
    max_maps: int | None = None,
    batch_size: int = 16,
    edges: np.ndarray | None = None,
    map_index: int | None = None,
    map_figure: str | Path | None = None,
    pixel_arcmin: float | None = None,
    bias_test: bool = False,
    bias_data: str | Path | None = None,
    bias_nsims: int = 64,
    bias_seed: int | None = None,
    save_predictions: bool = False,
    log: Any = print,
) -> dict[str, Any]:
    """Evaluate a network folder on a data file and write ``metrics.json``, ``table.txt`` and the figures.

    Parameters
    ----------
    model_dir : str or pathlib.Path
        Network folder (see :func:`load_network`).
    data_path : str or pathlib.Path
        Pipeline data file with the network's input maps and, for the metrics, the truth and QE maps.
    output : str or pathlib.Path
        Folder for the outputs (created).
    max_maps : int, optional
        Use only the first ``max_maps`` map sets.
    batch_size : int
        Maps per forward pass.
    edges : ndarray, optional
        Multipole bin edges (default ΔL = 100 from 20 to 3500).
    map_index : int, optional
        Map set shown in the map figure (default: the first with non-zero truths).
    map_figure : str or pathlib.Path, optional
        Also write the map figure here (e.g. ``images/ResUNet-CMB_map_results.png``).
    pixel_arcmin : float, optional
        Pixel size for data without metadata.
    bias_test : bool
        Run the lensing-bias test.
    bias_data : str or pathlib.Path, optional
        Read its τ-free lensed maps from this file instead of simulating them.
    bias_nsims : int
        Map sets simulated for the bias test (or read from ``bias_data``: the first ``bias_nsims``).
    bias_seed : int, optional
        Their seed (default: the data's seed + 1).
    save_predictions : bool
        Also write ``predictions.npz`` (``<output>_pred`` in physical units).
    log : callable
        Where the table and notes go (default ``print``).

    Returns
    -------
    dict
        The content of ``metrics.json``.

    Raises
    ------
    EvaluationError
        On bad input, or when nothing can be evaluated (no truth array and no bias test).
    """
    from training import figures

    output = Path(output)
    if batch_size < 1:
        raise EvaluationError(f"--batch-size must be at least 1 (got {batch_size})")
    edges = make_edges() if edges is None else np.asarray(edges, dtype=float)
    shapes = inspect_data(data_path)
    if bias_data is not None:
        inspect_data(bias_data)
    network = load_network(model_dir)
    check_compatible(network, shapes, data_path)
    wanted = [*network.inputs.values()]
    for truth in network.outputs.values():
        wanted += [truth, *QE_MAPS.get(truth, ())]
    data = load_map_data(data_path, wanted, max_maps, pixel_arcmin)
    notes = [*network.notes, *data.notes]
    for note in notes:
        log(f"note: {note}")
    log(f"network: {network.folder} ({network.source}); data: {data.path} ({data.nmaps} map sets of "
        f"{data.npix}x{data.npix}, {data.pixel_arcmin}' pixels, w2 = {data.w2:.4f} from {data.w2_source})")

    predictions = predict(network, data.arrays, batch_size)
    results, skipped = compare_fields(predictions, network.outputs, data, edges)
    for line in skipped:
        log(f"note: {line}")
    if not results and not bias_test:
        raise EvaluationError(
            f"nothing to evaluate: {data.path} has none of the truth arrays {', '.join(network.outputs.values())}"
        )
    if map_index is not None and not 0 <= map_index < data.nmaps:
        raise EvaluationError(f"--map-index {map_index} is outside the {data.nmaps} map sets read")

    output.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    metrics: dict[str, Any] = {
        "model_dir": str(network.folder),
        "network_files": network.source,
        "inputs": network.inputs,
        "outputs": network.outputs,
        "data": str(data.path),
        "nmaps": data.nmaps,
        "npix": data.npix,
        "pixel_arcmin": data.pixel_arcmin,
        "w2": data.w2,
        "w2_source": data.w2_source,
        "bins": {"edges": edges.tolist(), "rule": "bin_lo <= |L| < bin_hi; bins without Fourier modes are dropped"},
        "r_average_ranges": [list(r) for r in AVERAGE_RANGES],
        "fields": metrics_dict(results),
        "skipped": skipped,
        "notes": notes,
        "bias_test": None,
        "files": written,
    }
    if results:
        table = format_table(results)
        log(table)
        index = pick_map_index(results, data) if map_index is None else map_index
        truths = {r.label: data.arrays[r.truth][index] for r in results.values()}
        preds = {r.label: predictions[name][index] for name, r in results.items()}
        qe_maps = {}
        for r in results.values():
            # The Wiener-filtered QE map, if there is one, shares the truth's colour scale best.
            for qe_name in reversed(QE_MAPS.get(r.truth, ())):
                if qe_name in r.qe and r.label not in qe_maps:
                    qe_maps[r.label] = (qe_name, data.arrays[qe_name][index])
        fig = figures.plot_map_comparison(truths, preds, qe_maps, data.pixel_arcmin, index)
        figures.save(fig, output / FIGURES["maps"])
        written.append(FIGURES["maps"])
        if map_figure is not None:
            figures.save(fig, Path(map_figure))
        figures.save(figures.plot_r_ell(results), output / FIGURES["r_ell"])
        figures.save(figures.plot_spectra(results), output / FIGURES["spectra"])
        written += [FIGURES["r_ell"], FIGURES["spectra"]]
        metrics["map_index"] = index
    else:
        table = ""

    if bias_test:
        if bias_data is not None:
            names = [*network.inputs.values(), "tru_kappa", "rec_tau"]
            bias = load_map_data(bias_data, names, bias_nsims, pixel_arcmin)
            for note in bias.notes:
                log(f"note: {note}")
            if "tru_tau" in bias.arrays and not null_maps(bias.arrays["tru_tau"]).all():
                log(f"note: {bias_data} has non-zero tru_tau; the bias test expects maps made with --no-tau")
            settings = data_settings(bias.metadata, bias.npix)
            bias_arrays, taper, source = bias.arrays, bias.taper, str(bias.path)
        else:
            settings = bias_settings(data, bias_seed, list(network.inputs.values()))
            log(f"bias test: simulating {bias_nsims} lensed map sets with τ = 0 (seed {settings.seed})")
            bias_arrays, taper = simulate_bias_maps(settings, bias_nsims)
            source = f"simulated, seed {settings.seed}"
        result = run_bias_test(bias_arrays, settings, taper, edges, network, batch_size, source)
        bias_table = format_bias_table(result)
        log(bias_table)
        table = f"{table}\n\n{bias_table}" if table else bias_table
        figures.save(figures.plot_bias_test(result), output / FIGURES["bias"])
        written.append(FIGURES["bias"])
        metrics["bias_test"] = result.to_dict()

    if save_predictions:
        from training.artifacts import save_npz

        save_npz(output / "predictions.npz", {f"{k}_pred": v for k, v in predictions.items()})
        written.append("predictions.npz")
    from training.artifacts import save_text

    save_text(output / "table.txt", table + "\n")
    written += ["table.txt", "metrics.json"]
    write_json(output / "metrics.json", metrics)
    log(f"wrote {', '.join(written)} to {output}")
    return metrics


# --------------------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see ``--help``)."""
    p = argparse.ArgumentParser(
        prog="training/evaluate.py",
        description="Evaluate a trained ResUNet-CMB network against the quadratic estimator: binned spectra, "
        "cross-correlation r_L, residual and noise power of tau, kappa and E; figures; lensing-bias test.",
        epilog="Exit status: 0 done, 2 bad input or nothing that can be evaluated.",
    )
    p.add_argument("--model-dir", required=True, help="network folder (training output_dir or trained_networks/<name>)")
    p.add_argument("--data", required=True, help="pipeline data file (.npz or .h5) with the network's input maps")
    p.add_argument("--output", help="output folder (default: results/evaluation/<model folder name>)")
    p.add_argument("--max-maps", type=int, help="use only the first N map sets of the data")
    p.add_argument("--batch-size", type=int, default=16, help="maps per forward pass (default 16)")
    p.add_argument("--lmin", type=float, default=DEFAULT_LMIN, help="lowest bin edge in L (default 20)")
    p.add_argument("--lmax", type=float, default=DEFAULT_LMAX,
                   help="upper end of the binned range (default 3500: 35 bins of width 99.4 from 20)")
    p.add_argument("--delta-l", type=float, default=DEFAULT_DELTA_L, help="bin width in L (default 100)")
    p.add_argument("--map-index", type=int, help="map set drawn in the map figure (default: first non-null one)")
    p.add_argument("--map-figure", help="also write the map figure here, e.g. images/ResUNet-CMB_map_results.png")
    p.add_argument("--pixel-arcmin", type=float, help="pixel size in arcmin for data without metadata")
    p.add_argument("--bias-test", action="store_true", help="run the lensing-bias test (tau = 0, lensing on)")
    p.add_argument("--bias-data", help="read the bias test's maps from this file (made with --no-tau) instead")
    p.add_argument("--bias-nsims", type=int, default=64,
                   help="map sets simulated (or read from --bias-data) for the bias test (default 64)")
    p.add_argument("--bias-seed", type=int, help="seed of the bias-test simulation (default: the data's seed + 1)")
    p.add_argument("--save-predictions", action="store_true", help="also write predictions.npz (physical units)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    from datapipe.errors import PipelineError

    args = parse_args(argv)
    output = args.output or str(Path("results") / "evaluation" / Path(args.model_dir).resolve().name)
    try:
        if args.bias_data is not None and not args.bias_test:
            raise EvaluationError("--bias-data needs --bias-test")
        edges = make_edges(args.lmin, args.lmax, args.delta_l)
        run_evaluation(
            args.model_dir,
            args.data,
            output,
            max_maps=args.max_maps,
            batch_size=args.batch_size,
            edges=edges,
            map_index=args.map_index,
            map_figure=args.map_figure,
            pixel_arcmin=args.pixel_arcmin,
            bias_test=args.bias_test,
            bias_data=args.bias_data,
            bias_nsims=args.bias_nsims,
            bias_seed=args.bias_seed,
            save_predictions=args.save_predictions,
        )
    except (TrainingError, PipelineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
