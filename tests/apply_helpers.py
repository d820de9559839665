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

    from training.artifacts import architecture_json

    folder.mkdir(parents=True, exist_ok=True)
    inputs = {name: keras.Input((npix, npix, 1), name=name) for name in ("qlen", "ulen")}
    outputs = [
        keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones", name=name)(inputs[source])
        for name, (source, _) in IDENTITY_OUTPUTS.items()
    ]
    model = keras.Model(list(inputs.values()), outputs)
    (folder / "model_architecture.json").write_text(architecture_json(model))
    model.save_weights(str(folder / "model.weights.h5"))
    np.savez(folder / "map_means.npz", **{f"{k}_mean": np.float64(0.0) for k in STDS})
    np.savez(folder / "map_stds.npz", **{f"{k}_std": np.float64(v) for k, v in STDS.items()})
    config = {"feat_used": {"qlen": "q_len", "ulen": "u_len"},
              "target_used": {name: truth for name, (_, truth) in IDENTITY_OUTPUTS.items()}}
    (folder / "summary.json").write_text(json.dumps({"config": config}))
    if record:
        settings = {"npix": npix, "pixel_arcmin": PIXEL_ARCMIN, "taper_deg": TAPER_DEG, **(data_settings or {})}
        (folder / "data_settings.json").write_text(json.dumps(settings))
    return folder


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
