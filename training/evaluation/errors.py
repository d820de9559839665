"""The evaluation's error: bad input to it (network folder, data, options)."""

from __future__ import annotations

from training.config import TrainingError


class EvaluationError(TrainingError):
    """Bad input to the evaluation (folder, data, options); the CLI prints it as one line and exits with 2."""
