"""Project exception for bad user input to the data pipeline."""


class PipelineError(ValueError):
    """Bad input to the data pipeline.

    The message names the bad value and how to fix it; the command-line interface prints it on one line
    and exits with status 2.
    """
