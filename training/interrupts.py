"""Ctrl-C and SIGTERM during training: a flag raised by the signal, checked by the checkpointing callback.

Batch schedulers send SIGTERM before they kill a job; a user presses Ctrl-C. Either way the run should stop at the
end of the running batch with a checkpoint saved (:class:`training.checkpoint.Checkpointer`), not die mid-write.
"""

from __future__ import annotations

import os
import signal
from typing import Any


class TrainingInterrupted(Exception):
    """Raised out of ``model.fit`` after a checkpoint was saved in response to SIGINT or SIGTERM.

    Parameters
    ----------
    signum : int
        The signal received.
    epoch : int
        Epochs completed when it came.
    """

    def __init__(self, signum: int, epoch: int) -> None:
        self.signum = signum
        self.epoch = epoch
        super().__init__(f"{signal.Signals(signum).name} received after {epoch} completed epoch(s)")


class InterruptHandler:
    """Context manager that turns SIGINT and SIGTERM into a flag instead of killing the process.

    A second Ctrl-C while the flag is set raises ``KeyboardInterrupt`` at once (for a run stuck outside the
    training loop). The previous handlers are restored on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        self._pid = os.getpid()

    def _handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:
            # A forked data worker that inherited this handler: Ctrl-C is the training process's business, and a
            # SIGTERM (Keras stopping its worker pool) ends the worker at once, without the notice.
            if signum == signal.SIGTERM:
                os._exit(128 + signum)
            return
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name} received: saving a checkpoint at the end of this batch "
            "(Ctrl-C again to abort without saving)",
            flush=True,
        )

    def __enter__(self) -> InterruptHandler:
        self._pid = os.getpid()
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
