"""Evaluation of a trained network against the quadratic estimator: the package behind ``training/evaluate.py``.

Imports flow one way, module by module:

- :mod:`~training.evaluation.errors`: the evaluation's exception;
- :mod:`~training.evaluation.network`: load a network folder, ``predict`` in physical units;
- :mod:`~training.evaluation.mapdata`: read a data file, its taper and w2;
- :mod:`~training.evaluation.crosscorr`: binned spectra and r_L of a reconstruction against the truth;
- :mod:`~training.evaluation.theory`: input spectra and analytic QE noise in the evaluation's bins;
- :mod:`~training.evaluation.comparison`: the network and the QE maps against the truth, per field (with theory);
- :mod:`~training.evaluation.bias`: the lensing-bias test;
- :mod:`~training.evaluation.report` (tables, ``metrics.json``) and the package :mod:`~training.evaluation.figures`;
- :mod:`~training.evaluation.run`: the whole evaluation, as ``training/evaluate.py`` runs it.

The names below are the notebook's API (``trained_networks/example_evaluate_results.ipynb``)::

    import training.evaluation as ev
    from training.evaluation import figures
"""

from training.evaluation import figures
from training.evaluation.bias import BiasTestResult, run_bias_test
from training.evaluation.comparison import QE_MAPS, FieldResult, compare_fields, make_edges
from training.evaluation.crosscorr import ReconstructionStats, reconstruction_stats
from training.evaluation.errors import EvaluationError
from training.evaluation.mapdata import MapData, check_compatible, inspect_data, load_map_data
from training.evaluation.network import Network, load_network, predict
from training.evaluation.report import format_bias_table, format_table
from training.evaluation.run import pick_map_index, run_evaluation

__all__ = [
    "QE_MAPS",
    "BiasTestResult",
    "EvaluationError",
    "FieldResult",
    "MapData",
    "Network",
    "ReconstructionStats",
    "check_compatible",
    "compare_fields",
    "figures",
    "format_bias_table",
    "format_table",
    "inspect_data",
    "load_map_data",
    "load_network",
    "make_edges",
    "pick_map_index",
    "predict",
    "reconstruction_stats",
    "run_bias_test",
    "run_evaluation",
]
