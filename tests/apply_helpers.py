"""Shared inputs of the tests of ``training/apply`` and ``training/predict.py``: hand-built networks and enmaps.

:func:`identity_network` writes a network folder whose model copies its inputs to its outputs (1×1 convolutions
with weight 1), so that in physical units each output is ``std_out / std_in`` times its input (means are 0): what
the tiling and stitching make of it can be predicted exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

NPIX = 32
PIXEL_ARCMIN = 2.34375
TAPER_DEG = 0.3  # 7 pixels of 2.34375'
#: Standard deviations of the identity network's arrays: kappa = 2 q, e_unl = 3 q, tau = u / 5 in physical units.
STDS = {"q_len": 5.0, "u_len": 5.0, "tru_kappa": 10.0, "e_unl": 15.0, "tru_tau": 1.0}
#: Model output → (its input, its truth array).
IDENTITY_OUTPUTS = {"kappa": ("qlen", "tru_kappa"), "unle": ("qlen", "e_unl"), "tau": ("ulen", "tru_tau")}


PAPER_NAMES = {"feat_used": {"qlen": "q_len", "ulen": "u_len"},
               "target_used": {"kappa": "tru_kappa", "unle": "e_unl", "tau": "tru_tau"}}


def save_network(folder: Path, model, means: dict, stds: dict, settings: dict | None) -> Path:
    """Write a network folder as a training run does: architecture + weights, means/stds, summary.json config with
    the paper's input/output names, and ``data_settings.json`` unless ``settings`` is None."""
    from training.artifacts import architecture_json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_architecture.json").write_text(architecture_json(model))
    model.save_weights(str(folder / "model.weights.h5"))
    np.savez(folder / "map_means.npz", **{f"{k}_mean": np.float64(v) for k, v in means.items()})
    np.savez(folder / "map_stds.npz", **{f"{k}_std": np.float64(v) for k, v in stds.items()})
    (folder / "summary.json").write_text(json.dumps({"config": PAPER_NAMES}))
    if settings is not None:
        (folder / "data_settings.json").write_text(json.dumps(settings))
    return folder


def identity_network(folder: Path, npix: int = NPIX, data_settings: dict | None = None, record: bool = True) -> Path:
    """Write an identity network folder (model, means, stds, summary.json, data_settings.json) and return it.

    Parameters
    ----------
    folder : pathlib.Path
        Where to write it (created).
    npix : int
        The network's map side.
    data_settings : dict, optional
        Overrides of the recorded training-map settings.
    record : bool
        Write ``data_settings.json`` (False: a folder from before runs recorded it).
    """
    import keras

    inputs = {name: keras.Input((npix, npix, 1), name=name) for name in ("qlen", "ulen")}
    outputs = [
        keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones", name=name)(inputs[source])
        for name, (source, _) in IDENTITY_OUTPUTS.items()
    ]
    model = keras.Model(list(inputs.values()), outputs)
    settings = {"npix": npix, "pixel_arcmin": PIXEL_ARCMIN, "taper_deg": TAPER_DEG, **(data_settings or {})}
    return save_network(folder, model, {k: 0.0 for k in STDS}, STDS, settings if record else None)


def train_tiny_network(folder: Path, nmaps: int = 128, epochs: int = 8, seed: int = 5) -> Path:
    """Train a tiny fully convolutional network on 32x32 pipeline maps (0.3 deg taper) and save it as a folder.

    Two linear 5x5 convolution layers of 8 channels and a 3x3 head per output: E is a linear function of Q and U,
    which such a network learns in a few epochs (training R² of E ≈ 0.85); κ and τ it does not learn.
    """
    import keras

    from datapipe.settings import SimulationSettings
    from datapipe.simulate import MapSetSimulator
    from training.data.standardization import Standardization

    names = PAPER_NAMES["feat_used"] | PAPER_NAMES["target_used"]
    settings = SimulationSettings(npix=NPIX, taper_deg=TAPER_DEG, maps=tuple(names.values()), qe_mean_field_sims=0,
                                  seed=seed)
    data = MapSetSimulator(settings).simulate(np.arange(nmaps))
    std = Standardization.fit(data)
    keras.utils.set_random_seed(seed)
    inputs = {name: keras.Input((NPIX, NPIX, 1), name=name) for name in PAPER_NAMES["feat_used"]}
    x = keras.layers.Concatenate()(list(inputs.values()))
    x = keras.layers.Conv2D(8, 5, padding="same")(x)
    x = keras.layers.Conv2D(8, 5, padding="same")(x)
    outputs = [keras.layers.Conv2D(1, 3, padding="same", name=name)(x) for name in PAPER_NAMES["target_used"]]
    model = keras.Model(list(inputs.values()), outputs)
    model.compile(keras.optimizers.Adam(3e-3), "mse")
    standardized = {model_name: std.apply(array, data[array])[..., None] for model_name, array in names.items()}
    model.fit({k: standardized[k] for k in inputs}, {k: standardized[k] for k in PAPER_NAMES["target_used"]},
              batch_size=16, epochs=epochs, verbose=0)
    record = {**settings.to_dict(), "taper_pixels": settings.taper_pixels}
    return save_network(folder, model, std.means, std.stds, record)


def random_enmaps(shape: tuple[int, int], seed: int, pixel_arcmin: float = PIXEL_ARCMIN, ra_reversed: bool = True):
    """Two white-noise enmaps (Q, U in μK) on a CAR geometry centred on the equator.

    ``ra_reversed`` gives pixell's usual orientation (RA decreasing with the column, ``cdelt[0] < 0``); False, the
    pipeline's (both axes increasing).
    """
    from pixell import enmap, utils

    ny, nx = shape
    half_y, half_x = ny * pixel_arcmin / 2 * utils.arcmin, nx * pixel_arcmin / 2 * utils.arcmin
    ra = [half_x, -half_x] if ra_reversed else [-half_x, half_x]
    box = np.array([[-half_y, ra[0]], [half_y, ra[1]]])
    geo_shape, wcs = enmap.geometry(pos=box, res=pixel_arcmin * utils.arcmin, proj="car")
    assert tuple(geo_shape) == (ny, nx), geo_shape
    rng = np.random.default_rng(seed)
    q = enmap.enmap(rng.normal(0.0, 5.0, (ny, nx)).astype(np.float32), wcs)
    u = enmap.enmap(rng.normal(0.0, 5.0, (ny, nx)).astype(np.float32), wcs.deepcopy())
    return q, u
