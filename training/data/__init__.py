"""Training data: map files, splits, standardization, the data sources and the Keras batch datasets.

Imports flow one way, from the bottom up:

- :mod:`~training.data.standardization`, :mod:`~training.data.splits`, :mod:`~training.data.mapfile`,
  :mod:`~training.data.order`, :mod:`~training.data.h5file`: NumPy / h5py building blocks;
- :mod:`~training.data.bundle`: what a source hands the training loop;
- :mod:`~training.data.batches`: the ``keras.utils.PyDataset`` batches (the only Keras user besides the stream);
- the sources: :mod:`~training.data.filesource` (``.npz`` in memory), :mod:`~training.data.h5source` (HDF5
  streamed), :mod:`~training.data.simsource` with :mod:`~training.data.simstream` and
  :mod:`~training.data.simworker` (fresh simulations on the fly);
- :mod:`~training.data.sources`: the registry, :func:`~training.data.sources.load_data` and
  :func:`~training.data.sources.check_data`.

This file imports nothing, so that the simulation worker processes, which import
:mod:`training.data.simworker`, never load Keras.
"""
