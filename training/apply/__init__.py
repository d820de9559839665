"""Apply a trained network to the user's own Q/U maps of any size: the package behind ``training/predict.py``.

Imports flow one way, module by module:

- :mod:`~training.apply.errors`: the exception;
- :mod:`~training.apply.geometry`: the training maps' pixel size and taper, the checks of a map's pixels against
  them, and the turn of an enmap into the network's frame (the pipeline's up–down flip) and back;
- :mod:`~training.apply.tiling`: the grid of overlapping tiles, their taper and the stitching weights;
- :mod:`~training.apply.mapio`: Q/U from FITS or from pipeline ``.npz`` / ``.h5`` files; outputs as FITS;
- :mod:`~training.apply.predict`: :func:`predict_maps`, the network on a pair of maps.

Example::

    from pixell import enmap
    from training.evaluation import load_network
    from training.apply import predict_maps

    network = load_network("results/run_1")
    maps = predict_maps(network, enmap.read_map("q.fits"), enmap.read_map("u.fits"))
    kappa, coverage = maps["kappa"], maps["coverage"]
"""

from training.apply.errors import ApplyError
from training.apply.predict import PredictionResult, predict_maps

__all__ = ["ApplyError", "PredictionResult", "predict_maps"]
