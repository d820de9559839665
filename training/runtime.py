"""Process-level set-up for a run: quiet start-up, GPU memory settings, the active backend and its device.

Only the active backend's own library is imported here (TensorFlow is never imported under JAX or PyTorch), so
the same code runs on machines where TensorFlow is not installed.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: TensorFlow's C++ log level set by :func:`load_keras` unless the user set ``TF_CPP_MIN_LOG_LEVEL``: 3 hides its
#: INFO, WARNING and ERROR messages, such as "failed call to cuInit" on a machine without a GPU (errors that stop a
#: run still reach Python as exceptions).
QUIET_TF_LOG_LEVEL = "3"
#: Lines TensorFlow's libraries print to stderr while they load, before any log level applies: absl's notice and
#: its ``I…``/``W…``/``E…`` lines such as "Could not find cuda drivers". Hidden unless the user set the log level.
STARTUP_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} [\d:.]+ +\d+ \S+:\d+\] "
)


def load_keras() -> Any:
    """Import Keras (and its backend) without TensorFlow's start-up messages, and return the module.

    Unless ``TF_CPP_MIN_LOG_LEVEL`` is already set, it is set to :data:`QUIET_TF_LOG_LEVEL` before the backend
    loads, the lines the libraries print while loading (:data:`STARTUP_NOISE`) are dropped from stderr, and absl's
    Python logger is set to show errors only. Set ``TF_CPP_MIN_LOG_LEVEL=0`` to see all of TensorFlow's messages.
    Call it before anything else imports Keras (the command lines do, after their cheap input checks).
    """
    if "keras" in sys.modules or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        import keras

        return keras
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_TF_LOG_LEVEL
    with filtered_stderr(STARTUP_NOISE):
        import keras
    absl_logging = sys.modules.get("absl.logging")
    if absl_logging is not None:
        absl_logging.set_verbosity(absl_logging.ERROR)
    return keras


@contextmanager
def filtered_stderr(noise: re.Pattern) -> Iterator[None]:
    """Collect what the process writes to file descriptor 2 inside the block (C libraries included) and pass on
    every line that does not match ``noise`` when the block ends."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines(keepends=True)
                    if not noise.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def configure_gpu_memory(grow_as_needed: bool) -> None:
    """Ask the backends to allocate GPU memory as needed instead of reserving it all at start.

    Sets ``TF_FORCE_GPU_ALLOW_GROWTH=true`` (TensorFlow) and ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (JAX) unless
    the user already set them; PyTorch allocates on demand anyway. This must run before Keras is first imported.

    Parameters
    ----------
    grow_as_needed : bool
        The config's ``allocate_vram_an``; nothing is changed when false.
    """
    if grow_as_needed:
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def describe_device() -> str:
    """One word for the device the active Keras backend computes on, e.g. ``cpu`` or ``NVIDIA_H200``.

    Returns
    -------
    str
        The accelerator's name (spaces replaced by underscores) or ``cpu``.
    """
    import keras

    backend = keras.backend.backend()
    name = "cpu"
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            name = getattr(device, "device_kind", device.platform)
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "gpu")
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            name = torch.cuda.get_device_name(0)
    return name.replace(" ", "_")


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's global and the backend's random generators via ``keras.utils.set_random_seed``.

    Keras also seeds TensorFlow whenever TensorFlow is installed, importing it (seconds, and GPU set-up) even under
    JAX or PyTorch. Under those backends the import is blocked for the duration of the call, so TensorFlow is only
    ever loaded by the TensorFlow backend; the weights, dropout masks and all Keras randomness are seeded all the
    same (from Python's generator and the backend's).

    Parameters
    ----------
    seed : int
        Non-negative seed.
    """
    import keras

    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    sys.modules["tensorflow"] = None  # type: ignore[assignment]  # makes `import tensorflow` raise ImportError
    try:
        keras.utils.set_random_seed(seed)
    finally:
        del sys.modules["tensorflow"]
