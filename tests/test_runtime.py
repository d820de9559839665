"""Process set-up: TensorFlow's start-up lines are dropped from stderr, everything else is kept."""

import os

from training.runtime import STARTUP_NOISE, filtered_stderr

# Lines TensorFlow 2.21 printed while it loaded, before any log level applied (seen on a 2-core x86 CPU).
NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    "I0000 00:00:1796001828.409443   15230 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will "
    "not be used.\n",
    "E0000 00:00:1796001848.801542   15230 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n",
    "W0000 00:00:1796001848.801542   15230 some_file.cc:7] a warning\n",
]
KEPT = ["Traceback (most recent call last):\n", "error: something the user must see\n",
        "/x/y.py:3: DeprecationWarning: old\n"]


def test_the_startup_lines_are_dropped_and_the_rest_is_kept(capfd):
    with filtered_stderr(STARTUP_NOISE):
        for line in [*NOISE[:2], KEPT[0], *NOISE[2:], *KEPT[1:]]:
            os.write(2, line.encode())  # as a C library writes: straight to file descriptor 2
    assert capfd.readouterr().err == "".join(KEPT)


def test_every_noise_line_matches_and_no_kept_line_does():
    assert all(STARTUP_NOISE.match(line) for line in NOISE)
    assert not any(STARTUP_NOISE.match(line) for line in KEPT)
