"""The geometry and physics of a network's training maps, recorded beside the model as ``data_settings.json``.

A network only makes sense on maps like those it was trained on: the same pixel size, the same taper, and the same
beam and noise. A training run records them (:func:`write_data_settings`, called by :mod:`training.loop`) from the
data file's metadata (``datapipe.writer.read_metadata``) or, for on-the-fly data, from the config's ``simulation``
block; a setting the data do not describe is ``null``. :func:`read_data_settings` reads the file back (network
folders written before it existed have none).

Keys: every setting of :class:`datapipe.settings.SimulationSettings` but the array list (``npix``, ``pixel_arcmin``
in arcmin, ``taper_deg`` in degrees, ``beam_arcmin`` FWHM in arcmin, ``noise_uk_arcmin`` in μK-arcmin, ``tau``,
``lensing``, …), plus ``taper_pixels`` (the taper width per edge in pixels), ``data_source`` (the ``data_path``)
and ``flipped_up_down`` (the maps were saved with row 0 at the top of the sky image).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training.config import TrainingConfig, TrainingError

DATA_SETTINGS_FILE = "data_settings.json"


def _setting_names() -> list[str]:
    from datapipe.settings import SimulationSettings

    return [f.name for f in dataclasses.fields(SimulationSettings) if f.name != "maps"]


def describe_training_data(cfg: TrainingConfig) -> dict[str, Any]:
    """The settings of a run's training maps, as written to ``data_settings.json``.

    Parameters
    ----------
    cfg : TrainingConfig
        The run's config: ``data_path`` a pipeline file (its metadata is read) or ``"simulate"`` (its ``simulation``
        block is used).

    Returns
    -------
    dict
        Setting name → value (``None`` where the data do not say); ``npix`` is always the config's ``imagesize``.
    """
    if cfg.data_path == "simulate":
        from training.data.simsource import parse_simulation_block

        given: Mapping[str, Any] = parse_simulation_block(cfg.simulation, cfg)[0].to_dict()
    else:
        from datapipe.writer import read_settings

        given = read_settings(cfg.resolve(cfg.data_path))
    out: dict[str, Any] = {name: given.get(name) for name in _setting_names()}
    out["npix"] = cfg.imagesize
    pixel, taper = out.get("pixel_arcmin"), out.get("taper_deg")
    out["taper_pixels"] = int(taper * 60.0 / pixel) if pixel and taper is not None else None
    out["data_source"] = cfg.data_path
    out["flipped_up_down"] = True
    return out


def write_data_settings(folder: str | Path, cfg: TrainingConfig) -> Path:
    """Write ``data_settings.json`` (see :func:`describe_training_data`) into a network folder; return its path."""
    from training.artifacts import save_json

    return save_json(Path(folder) / DATA_SETTINGS_FILE, describe_training_data(cfg))


def read_data_settings(folder: str | Path) -> dict[str, Any] | None:
    """The ``data_settings.json`` of a network folder, or None when the folder has none.

    Raises
    ------
    TrainingError
        If the file exists but is not a JSON object.
    """
    path = Path(folder) / DATA_SETTINGS_FILE
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot read {path}: {exc}; delete it to fall back on the paper's geometry") from None
    if not isinstance(content, dict):
        raise TrainingError(f"{path} does not hold a JSON object; delete it to fall back on the paper's geometry")
    return content
