"""Tests of datapipe/interrupts.py and the one-line messages of datapipe/diskio.py used by every command line."""

from __future__ import annotations

import errno
import os
import signal
import time

import pytest

from datapipe.diskio import describe_os_error
from datapipe.interrupts import PipelineInterrupted, describe_interrupt, stop_on_signals


@pytest.mark.parametrize("signum, name, status", [(signal.SIGINT, "SIGINT", 130), (signal.SIGTERM, "SIGTERM", 143)])
def test_a_signal_inside_the_block_is_an_interrupt_with_its_exit_status(signum, name, status):
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(PipelineInterrupted) as caught, stop_on_signals():
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises here
    assert describe_interrupt(caught.value) == (name, status)
    assert caught.value.exit_code == status
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_a_plain_keyboard_interrupt_is_ctrl_c():
    assert describe_interrupt(KeyboardInterrupt()) == ("SIGINT", 130)


def test_os_errors_are_one_line_with_the_file_and_on_a_full_disk_the_fix():
    full = OSError(errno.ENOSPC, "No space left on device", "out/table.txt")
    expected = "No space left on device (out/table.txt); free some space or choose another --output"
    assert describe_os_error(full) == expected
    quota = OSError(errno.EDQUOT, "Disk quota exceeded", "x.h5")
    assert describe_os_error(quota, "--model-dir").endswith("; free some space or choose another --model-dir")
    denied = OSError(errno.EACCES, "Permission denied", "/root/x")
    assert describe_os_error(denied) == "Permission denied (/root/x)"
    assert describe_os_error(OSError("disk gone")) == "disk gone"


def test_a_signal_swallowed_by_a_library_and_resurfacing_as_another_error_is_still_the_interrupt():
    # A signal inside an import can be caught by a library's bare except; the half-imported module then fails
    # with an AttributeError. The command must still report the signal, not print that error's traceback.
    with pytest.raises(PipelineInterrupted) as caught, stop_on_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except BaseException:  # noqa: BLE001 - the library's bare except
            pass
        raise AttributeError("module 'symlens' has no attribute 'mask_kspace'")
    assert caught.value.signum == signal.SIGTERM
    assert isinstance(caught.value.__cause__, AttributeError)


def test_errors_without_a_signal_pass_through_unchanged():
    with pytest.raises(ValueError), stop_on_signals():
        raise ValueError("not an interrupt")


QUIET_START_SCRIPT = """
import os, signal, sys, time
from datapipe.interrupts import quiet_start, stop_on_signals
quiet_start("prog")
with stop_on_signals():
    pass
assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # quiet_start's handler is not restored
assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
quiet_start("prog")
os.kill(os.getpid(), int(sys.argv[1]))  # as if Ctrl-C came while NumPy or Keras is being imported
time.sleep(5)
print("not reached")
"""


@pytest.mark.parametrize(("signum", "name"), [(signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")])
def test_a_signal_while_a_command_line_starts_is_one_line_and_its_exit_status(signum, name):
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run([sys.executable, "-c", QUIET_START_SCRIPT, str(int(signum))], capture_output=True,
                          text=True, timeout=60, env=env)
    assert proc.returncode == 128 + signum, proc.stderr
    assert proc.stderr.splitlines() == [f"prog: interrupted ({name}) while starting; nothing written"]
    assert proc.stdout == ""


def test_a_signal_swallowed_by_python_in_a_del_is_not_printed_and_lands_in_the_next_code(capsys):
    import gc

    class Collected:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)  # as if Ctrl-C came while a garbage-collection callback ran
            time.sleep(0.5)

    with pytest.raises(PipelineInterrupted) as caught, stop_on_signals():
        Collected()  # deleted at once: Python swallows the handler's exception ("Exception ignored in ...")
        gc.collect()
        for _ in range(50):
            time.sleep(0.1)  # the signal, delivered again, raises here
    assert caught.value.signum == signal.SIGINT
    assert "Exception ignored" not in capsys.readouterr().err
