"""The error of applying a network to maps: bad input (files, geometry, options)."""

from __future__ import annotations

from training.evaluation.errors import EvaluationError


class ApplyError(EvaluationError):
    """Bad input to a prediction on the user's maps; ``training/predict.py`` prints it as one line and exits with 2."""
