"""Multi-device training: data parallelism over every device of a node, and over the nodes of a job.

With ``"distribution": "data_parallel"`` every device holds a replica of the model; each training step splits one
global batch of ``batch_size`` × replicas maps over the replicas, averages the gradients over the global batch and
applies one update to every replica. The learning rate is used as configured (no scaling with the replica count):
a run on R devices takes the steps a one-device run with ``batch_size`` × R would take.

Engines (never home-made):

- TensorFlow: :class:`tf.distribute.MirroredStrategy` over the local GPUs (over the logical CPUs when there is no
  GPU), or :class:`tf.distribute.MultiWorkerMirroredStrategy` when ``TF_CONFIG`` describes a cluster or the job is
  a Slurm allocation of several nodes (:class:`tf.distribute.cluster_resolver.SlurmClusterResolver`, one task per
  node started by ``srun``). Batch-normalization statistics are synchronized over the replicas during training, so
  that they are those of the global batch, as under JAX.
- JAX: :class:`keras.distribution.DataParallel` over ``keras.distribution.list_devices()``; with several processes
  (Slurm multi-node, or ``KERAS_DISTRIBUTION_*`` variables) :func:`keras.distribution.initialize` joins them first
  and each process feeds its share of every global batch.
- PyTorch: not supported (an error names the other backends).

Every batch fed to the replicas holds a multiple of the replica count (:class:`training.data.batches.ReplicaBatches`): a
training or validation epoch leaves out its last ``n mod replicas`` maps (fewer than the replica count; the training
maps left out change every epoch with the shuffling), and the test batches are padded by repeating a map whose
predictions are dropped. Only the chief (worker / process 0) writes into ``output_dir``; the other workers of a
multi-node job write their (identical) files into ``output_dir/.workers/<index>/``.

This module imports the active backend's library only (never TensorFlow under JAX).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

from training.config import TrainingError


@dataclasses.dataclass
class Distribution:
    """How a run spreads over devices.

    Attributes
    ----------
    kind : str or None
        The config's ``distribution`` (``None`` or ``"data_parallel"``).
    engine : str
        What does it: ``"none"``, ``"MirroredStrategy"``, ``"MultiWorkerMirroredStrategy"`` or ``"DataParallel"``.
    replicas : int
        Model replicas in the whole job; the global batch is ``batch_size`` × replicas.
    scope : callable
        ``scope()`` returns the context in which the model and optimizer are built and trained.
    devices : list of str
        Names of the devices used by this process.
    worker_index, worker_count : int
        This process's index among the job's processes (0: the chief, which writes the outputs) and their number.
    feeds_share : bool
        Each process feeds only its share of every global batch (JAX with several processes); otherwise every
        process yields whole global batches and the engine splits them.
    sync_batch_norm : bool
        Synchronize batch-normalization statistics over replicas while training (TensorFlow strategies).
    """

    kind: str | None = None
    engine: str = "none"
    replicas: int = 1
    scope: Callable[[], Any] = contextlib.nullcontext
    devices: list[str] = dataclasses.field(default_factory=list)
    worker_index: int = 0
    worker_count: int = 1
    feeds_share: bool = False
    sync_batch_norm: bool = False

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run's outputs."""
        return self.worker_index == 0

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for ``summary.json``."""
        return {"kind": self.kind, "engine": self.engine, "replicas": self.replicas, "devices": self.devices,
                "workers": self.worker_count}


def slurm_nodes(environ: dict[str, str] | None = None) -> int:
    """Number of nodes of the Slurm job step this process belongs to (1 outside Slurm or in a one-node job)."""
    env = os.environ if environ is None else environ
    for name in ("SLURM_STEP_NUM_NODES", "SLURM_JOB_NUM_NODES", "SLURM_NNODES"):
        value = env.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def multi_worker_requested(environ: dict[str, str] | None = None) -> bool:
    """Whether the job spans several processes: ``TF_CONFIG`` with a cluster, ``KERAS_DISTRIBUTION_*`` variables
    for more than one process, or a Slurm job of several nodes."""
    env = os.environ if environ is None else environ
    if env.get("TF_CONFIG"):
        try:
            cluster = json.loads(env["TF_CONFIG"]).get("cluster", {})
        except (ValueError, AttributeError):
            raise TrainingError("TF_CONFIG is not valid JSON; fix or unset it") from None
        if sum(len(v) for v in cluster.values()) > 1:
            return True
    if int(env.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1") or 1) > 1:
        return True
    return slurm_nodes(env) > 1


def setup_distribution(kind: str | None, backend: str) -> Distribution:
    """Create the distribution named by the config's ``distribution`` key for the active Keras backend.

    Call it right after Keras is imported, before any model, random number or tensor is made (JAX's multi-process
    start and TensorFlow's device set-up must come first).

    Parameters
    ----------
    kind : str or None
        ``None`` or ``"data_parallel"``.
    backend : str
        ``keras.backend.backend()``.

    Returns
    -------
    Distribution

    Raises
    ------
    TrainingError
        Data parallelism asked for under a backend that does not support it here.
    """
    if kind is None:
        return Distribution()
    if backend == "tensorflow":
        return _tensorflow_data_parallel()
    if backend == "jax":
        return _jax_data_parallel()
    raise TrainingError(
        f'distribution "data_parallel" is supported under the tensorflow and jax backends, not {backend}; '
        "set KERAS_BACKEND=tensorflow or jax, or set distribution to null"
    )


def _tensorflow_data_parallel() -> Distribution:
    import tensorflow as tf

    if multi_worker_requested():
        resolver = None
        if not os.environ.get("TF_CONFIG") and slurm_nodes() > 1:
            resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
        resolver = strategy.cluster_resolver
        spec = resolver.cluster_spec().as_dict()
        task_type, task_id = resolver.task_type, resolver.task_id or 0
        workers = sum(len(v) for v in spec.values()) or 1
        if task_type == "chief" or task_type is None:
            index = 0
        else:  # with a chief in the cluster, worker 0 is not the chief
            index = task_id + (1 if "chief" in spec else 0)
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or ["/device:CPU:0"]
        return Distribution("data_parallel", "MultiWorkerMirroredStrategy", strategy.num_replicas_in_sync,
                            strategy.scope, devices, index, workers, sync_batch_norm=True)
    devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    if not devices:  # no GPU: the logical CPU devices (one unless split with set_logical_device_configuration)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices=devices)
    return Distribution("data_parallel", "MirroredStrategy", strategy.num_replicas_in_sync, strategy.scope,
                        devices, sync_batch_norm=True)


def _jax_data_parallel() -> Distribution:
    import keras

    if multi_worker_requested():
        keras.distribution.initialize()
    import jax

    devices = keras.distribution.list_devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    return Distribution("data_parallel", "DataParallel", len(devices), distribution.scope,
                        [str(d) for d in jax.local_devices()], jax.process_index(), jax.process_count(),
                        feeds_share=jax.process_count() > 1)


def set_batch_norm_sync(model: Any, synchronized: bool) -> None:
    """Compute batch-normalization statistics over all replicas (``True``) or per replica (``False``).

    Only the TensorFlow backend supports synchronized statistics; the flag must be off again before the model is
    saved, so that the saved model loads under every backend.

    Parameters
    ----------
    model : keras.Model
        The model; every ``BatchNormalization`` layer in it (nested ones included) is changed.
    synchronized : bool
        The new setting.
    """
    import keras

    pending = list(model.layers)
    while pending:
        layer = pending.pop()
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = synchronized
        pending.extend(getattr(layer, "layers", []))  # nested models
