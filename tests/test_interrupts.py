"""Tests of training/interrupts.py: SIGINT / SIGTERM become a flag in the training process; a forked data worker that
inherited the handler exits quietly on SIGTERM and ignores Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from training.interrupts import InterruptHandler

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Forks a child inside the handler, lets it take a SIGINT (it must live on, silently), then a SIGTERM (it must exit
#: at once with 128 + 15, silently). Each step waits for a message from the child through a pipe (or for the pipe to
#: close as the child exits), with a generous deadline: nothing depends on how long anything takes. Run in a fresh
#: interpreter, so that no fork hook registered by other tests (training.data.batches resets the signals of its
#: forked workers) stands between the child and the handler.
FORK_SCRIPT = textwrap.dedent(
    """
    import os, select, signal, sys
    from training.interrupts import InterruptHandler

    def expect(fd, message, deadline_s=60):
        got = b""
        while len(got) < len(message):
            ready, _, _ = select.select([fd], [], [], deadline_s)
            if not ready:
                sys.exit(f"no {message!r} from the child within {deadline_s} s (got {got!r})")
            chunk = os.read(fd, len(message) - len(got))
            if not chunk:
                sys.exit(f"the child closed its pipe after {got!r}")
            got += chunk
        if got != message:
            sys.exit(f"expected {message!r} from the child, got {got!r}")

    read_end, write_end = os.pipe()
    with InterruptHandler() as handler:
        pid = os.fork()
        if pid == 0:  # the child: never returns into the parent's code
            try:
                os.close(read_end)
                # Every signal that arrives writes a byte here before its Python handler runs, so no signal is
                # missed however early it comes (signal.pause() would wait forever for one that came before it).
                wake_read, wake_write = os.pipe()
                os.set_blocking(wake_write, False)
                signal.set_wakeup_fd(wake_write)
                os.write(write_end, b"ready")
                while True:
                    select.select([wake_read], [], [])  # returns once the handler of a signal has run and returned
                    os.read(wake_read, 1)
                    os.write(write_end, b"alive")
            finally:
                os._exit(99)
        os.close(write_end)
        try:
            expect(read_end, b"ready")
            os.kill(pid, signal.SIGINT)
            expect(read_end, b"alive")
            os.kill(pid, signal.SIGTERM)
            ready, _, _ = select.select([read_end], [], [], 60)
            if not ready or os.read(read_end, 16):
                sys.exit("the child survived SIGTERM")
            _, status = os.waitpid(pid, 0)  # it closed its end of the pipe by exiting
        except BaseException:
            os.kill(pid, signal.SIGKILL)
            raise
        print("child exit", os.waitstatus_to_exitcode(status), "parent flag", handler.signum)
    """
)


def test_forked_child_exits_quietly_on_sigterm_and_ignores_sigint():
    result = subprocess.run([sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=180)
    # Only the parent's report: the child printed nothing (no interrupt notice), survived the SIGINT, exited 143 on
    # SIGTERM, and the parent's own flag stayed unset.
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"child exit {128 + signal.SIGTERM} parent flag None\n", result.stdout
    assert result.stderr == ""


def test_interrupt_handler_turns_signals_into_a_flag(capsys):
    previous = signal.getsignal(signal.SIGINT)
    with InterruptHandler() as handler:
        os.kill(os.getpid(), signal.SIGTERM)
        assert handler.signum == signal.SIGTERM
        assert "SIGTERM received: saving a checkpoint" in capsys.readouterr().out
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C aborts at once
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is previous
