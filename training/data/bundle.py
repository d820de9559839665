"""What a data source hands the training loop (:class:`DataBundle`), and what a data source is (:class:`DataSource`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from training.config import TrainingConfig
from training.data.standardization import Standardization


@dataclasses.dataclass
class DataBundle:
    """Everything the training loop needs from a data source.

    Attributes
    ----------
    train, val, test : keras.utils.PyDataset
        Batches ``(inputs, targets)`` of standardized maps; ``train`` reshuffles every epoch, ``val`` and ``test``
        keep a fixed order (the order of ``test_arrays``).
    standardization : Standardization
        Training-split statistics of every feature and target array.
    test_arrays : dict of str to numpy.ndarray
        The test split of every loaded array (features, targets, traces) in physical units, (n_test, npix, npix).
    sizes : dict of str to int
        Number of maps in each split (``"train"``, ``"val"``, ``"test"``).
    split_indices : dict of str to numpy.ndarray, optional
        Map indices of each split in the source file, when the source is a file.
    source : str
        One line describing where the maps came from (for logs and ``summary.json``).
    close : callable, optional
        Releases the source's resources (open files) once training and the outputs are done.

    Notes
    -----
    ``test_arrays`` values need only ``len()``, ``shape`` and slicing along the first axis (``a[i:j]`` → NumPy
    array): a streaming source hands over views that read on demand (:class:`training.data.h5file.SplitView`), and the
    test-set outputs are written chunk by chunk.
    """

    train: Any
    val: Any
    test: Any
    standardization: Standardization
    test_arrays: dict[str, Any]
    sizes: dict[str, int]
    split_indices: dict[str, np.ndarray] | None = None
    source: str = ""
    close: Callable[[], None] | None = None


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A way of producing the training data.

    Attributes
    ----------
    load : callable
        ``load(cfg) -> DataBundle``.
    check : callable, optional
        ``check(cfg) -> None``: cheap checks of the config against the data (raising :class:`TrainingError`),
        run before Keras is imported so that bad input fails fast.
    """

    load: Callable[[TrainingConfig], DataBundle]
    check: Callable[[TrainingConfig], None] | None = None
