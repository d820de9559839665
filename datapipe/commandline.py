"""How a command line ends: one line on stderr and an exit status for each way its work can stop.

Shared by ``python -m datapipe.check``, ``python -m datapipe.export``, ``training/main.py``, ``training/evaluate.py``
and ``training/predict.py``: 0 done (or the status the work returns), 2 bad input, 1 a failed read or write (a full
disk above all), 128 + the signal number after Ctrl-C (SIGINT) or SIGTERM.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from datapipe.diskio import describe_os_error
from datapipe.interrupts import describe_interrupt, stop_on_signals


def run_command(
    work: Callable[[], object],
    *,
    bad_input: tuple[type[Exception], ...],
    stopped: str,
    write_failed: str = "",
    prog: str | None = None,
    describe: Callable[[OSError], str] = describe_os_error,
) -> int:
    """Run ``work()`` with SIGINT and SIGTERM caught, and report how it ended.

    Parameters
    ----------
    work : callable
        The command's work, without arguments; an int it returns is the exit status (anything else: 0).
    bad_input : tuple of exception types
        The errors that mean bad input: ``error: <message>`` and exit 2.
    stopped : str
        The line after a signal, with ``{signal}`` for its name (``SIGINT``, ``SIGTERM``), e.g.
        ``"{signal} received: stopped; no output written"``; exit 128 + the signal number.
    write_failed : str, optional
        Appended to ``error: <describe(OSError)>`` (what was left on disk), e.g. ``"; no output written"``; exit 1.
    prog : str, optional
        Put with a colon before each line (``"python -m datapipe.export: error: …"``).
    describe : callable, optional
        One line for an ``OSError``.

    Returns
    -------
    int
        The exit status.
    """
    lead = f"{prog}: " if prog else ""
    try:
        with stop_on_signals():
            status = work()
    except bad_input as exc:
        print(f"{lead}error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{lead}error: {describe(exc)}{write_failed}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM from a batch scheduler (stop_on_signals)
        name, status = describe_interrupt(exc)
        print(lead + stopped.format(signal=name), file=sys.stderr)
        return status
    return status if isinstance(status, int) else 0
