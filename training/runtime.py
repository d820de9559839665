"""Process-level set-up for a run: GPU memory settings, the active backend and its device.

Only the active backend's own library is imported here (TensorFlow is never imported under JAX or PyTorch), so
the same code runs on machines where TensorFlow is not installed.
"""

from __future__ import annotations

import os
import sys


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
