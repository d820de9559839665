"""Ctrl-C and SIGTERM in the data pipeline, and worker processes that leave both to the main process.

A batch scheduler sends SIGTERM before it kills a job; a user presses Ctrl-C. The command line treats both alike
(:func:`stop_on_signals`): the signal raises :class:`PipelineInterrupted` in the main process, the writers remove
their temporary files on the way out, and the command exits with 128 + the signal number (130, 143).

The terminal sends Ctrl-C to every process of the job, worker processes included. Workers started inside
:func:`starting_workers` never see it (they would print a traceback each); the main process stops them.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Signals that stop a pipeline run cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class PipelineInterrupted(KeyboardInterrupt):
    """Raised in the main process by SIGINT or SIGTERM inside :func:`stop_on_signals`.

    A subclass of ``KeyboardInterrupt``, so that code which cleans up after Ctrl-C cleans up after SIGTERM too.

    Parameters
    ----------
    signum : int
        The signal received.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + signal number (130 for Ctrl-C, 143 for SIGTERM)."""
        return 128 + self.signum


def describe_interrupt(exc: KeyboardInterrupt) -> tuple[str, int]:
    """The signal behind a ``KeyboardInterrupt`` and the exit status it calls for.

    Parameters
    ----------
    exc : KeyboardInterrupt
        A :class:`PipelineInterrupted`, or a plain ``KeyboardInterrupt`` (Ctrl-C outside :func:`stop_on_signals`).

    Returns
    -------
    name : str
        ``"SIGINT"`` or ``"SIGTERM"``.
    exit_code : int
        128 + the signal number.
    """
    signum = int(getattr(exc, "signum", signal.SIGINT))
    return signal.Signals(signum).name, 128 + signum


def quiet_start(prog: str) -> None:
    """Until :func:`stop_on_signals` takes over: Ctrl-C or SIGTERM while a command line is still importing its
    modules (NumPy, astropy, Keras: a second or two) ends it with one line and 128 + the signal number, not an import
    traceback. Nothing has been written then. Signals ignored by the caller (``nohup``) stay ignored.

    Call it first thing in a command-line script, when it runs as ``__main__`` (never on import).
    """
    def handle(signum: int, frame: Any) -> None:
        print(f"{prog}: interrupted ({signal.Signals(signum).name}) while starting; nothing written",
              file=sys.stderr, flush=True)
        os._exit(128 + signum)

    handle.quiet_start = True  # type: ignore[attr-defined]
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, handle)


def _after_quiet_start(handler: Any, sig: int) -> Any:
    """The handler to restore after :func:`stop_on_signals`: the default one in place of :func:`quiet_start`'s."""
    if getattr(handler, "quiet_start", False):
        return signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
    return handler


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`PipelineInterrupted` inside the block (main thread only).

    After the first signal both are ignored, so that a second one cannot cut the clean-up short. The previous
    handlers are restored on exit.

    A signal that lands inside an import can be swallowed by a library's broad ``except`` and resurface as another
    error (a half-imported module's ``AttributeError``, say); any exception leaving the block after a signal is
    therefore raised as that signal's :class:`PipelineInterrupted`. One that lands in a garbage-collection callback
    or a ``__del__`` (JAX has one) is swallowed by Python itself, which prints "Exception ignored" and a traceback:
    that print is dropped and the signal delivered again, to land in the code that runs next.
    """
    received: list[int] = []

    def handle(signum: int, frame: Any) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        received.append(signum)
        raise PipelineInterrupted(signum)

    def unraisable(info: Any) -> None:
        if not isinstance(info.exc_value, PipelineInterrupted):
            previous_hook(info)
            return
        received.clear()
        try:
            for sig in STOP_SIGNALS:
                signal.signal(sig, handle)
        except ValueError:  # pragma: no cover - not the main thread: the signal stays ignored
            return
        # A moment later, from another thread: sent from here, it would be handled (and swallowed again) in this hook.
        resend = threading.Timer(0.05, os.kill, args=(os.getpid(), info.exc_value.signum))
        resend.daemon = True
        resend.start()

    previous = {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS}
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield
    except PipelineInterrupted:
        raise
    except BaseException as exc:
        if received and not isinstance(exc, SystemExit):
            raise PipelineInterrupted(received[0]) from exc
        raise
    finally:
        sys.unraisablehook = previous_hook
        for sig, handler in previous.items():
            signal.signal(sig, _after_quiet_start(handler, sig))


@contextmanager
def starting_workers() -> Iterator[None]:
    """Start worker processes inside this block, and call :func:`worker_started` first thing in each of them.

    The calling thread blocks SIGINT and SIGTERM while the block runs, so a signal can neither cut short the
    hand-over of a starting worker's state (the worker would fail to unpickle it and print a traceback) nor reach
    a worker: the workers inherit the blocked signals. A signal that arrives meanwhile is delivered to this thread
    when the block ends. Multiprocessing's resource tracker is started first, since starting it unblocks both.
    """
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        yield
        return
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, set(STOP_SIGNALS))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def worker_started() -> None:
    """In a worker started by :func:`starting_workers`: let SIGTERM through again (pools stop their workers with
    it, and it ends the worker quietly); SIGINT stays blocked, since Ctrl-C is the main process's business."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
