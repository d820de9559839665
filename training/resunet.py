"""ResUNet-CMB and the registry of model builders.

The network of Guzman & Meyers (2021), "Reconstructing patchy reionization with deep learning": a residual U-Net
that maps the observed, lensed Stokes Q and U maps to three maps at once — the optical depth τ, the primordial
(unlensed) E map and the lensing convergence κ. ``ResUNet_CMB_4out``, from the authors' follow-up paper on cosmic
polarization rotation (arXiv:2109.09715), adds a fourth head for the rotation field α.

Every builder takes the run's parameters (a :class:`training.config.TrainingConfig`, a mapping or any object with
attributes ``imagesize`` and ``dropval``) and returns an uncompiled ``keras.Model``. To add a model, write a function
here, decorate it with :func:`register_model` and put its name in the config's ``model`` key.

Only Keras 3 APIs are used, so the model runs unchanged under the TensorFlow, JAX and PyTorch backends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras
from keras import layers

from training.config import TrainingError

#: Model builders by name; filled by :func:`register_model`.
MODELS: dict[str, Callable[[Any], keras.Model]] = {}

KERNEL_SIZE = 5
ACTIVATION = "selu"


def register_model(builder: Callable[[Any], keras.Model]) -> Callable[[Any], keras.Model]:
    """Add a model builder to :data:`MODELS` under its function name.

    Parameters
    ----------
    builder : callable
        Function ``builder(params) -> keras.Model``.

    Returns
    -------
    callable
        ``builder`` itself, so this works as a decorator.
    """
    MODELS[builder.__name__] = builder
    return builder


def get_model_builder(name: str) -> Callable[[Any], keras.Model]:
    """Look up a model builder by name.

    Parameters
    ----------
    name : str
        A key of :data:`MODELS`, e.g. ``"ResUNet_CMB"``.

    Returns
    -------
    callable
        The builder.

    Raises
    ------
    TrainingError
        If no model of that name is registered; the message lists the registered ones.
    """
    try:
        return MODELS[name]
    except KeyError:
        raise TrainingError(
            f"unknown model {name!r}; registered models: {', '.join(sorted(MODELS))} "
            "(add one with @register_model in training/resunet.py)"
        ) from None


def _param(params: Any, name: str) -> Any:
    if isinstance(params, Mapping):
        return params[name]
    return getattr(params, name)


def conv_block(
    x: Any,
    filters: int,
    strides: int = 1,
    *,
    dropval: float,
    activation: str = ACTIVATION,
    first: bool = False,
    up: bool = False,
    name: str | None = None,
    dtype: str | None = None,
) -> Any:
    """Convolution block: Dropout → Conv2D 5×5 → activation → BatchNorm.

    Parameters
    ----------
    x : KerasTensor
        Input, shape (batch, H, W, C).
    filters : int
        Number of output channels.
    strides : int
        Stride of the convolution (2 halves the resolution). Ignored when ``up``.
    dropval : float
        Dropout rate.
    activation : str
        Activation after the convolution (``"selu"`` everywhere except the heads' last block).
    first : bool
        The network's very first block: no dropout.
    up : bool
        "Up" variant: UpSampling2D(2) first, then Dropout → Conv2D (stride 1) → activation → BatchNorm.
    name : str, optional
        Name of the BatchNormalization layer, i.e. of the block's output.
    dtype : str, optional
        Dtype policy of the BatchNormalization layer (``"float32"`` keeps outputs float32 under mixed precision).

    Returns
    -------
    KerasTensor
        The block's output.
    """
    if up:
        x = layers.UpSampling2D(2)(x)
        strides = 1
    if not first:
        x = layers.Dropout(dropval)(x)
    x = layers.Conv2D(filters, KERNEL_SIZE, strides=strides, padding="same")(x)
    x = layers.Activation(activation)(x)
    return layers.BatchNormalization(name=name, dtype=dtype)(x)


def residual_block(
    x: Any,
    filters: tuple[int, int],
    strides: tuple[int, int] = (1, 1),
    *,
    dropval: float,
    first: bool = False,
    up: tuple[bool, bool] = (False, False),
    mid_skip: Any = None,
) -> tuple[Any, Any]:
    """Residual block: two convolution blocks plus a shortcut from the block's input.

    The shortcut adapts the input to the second block's output: UpSampling2D(2) (then a 1×1 convolution if the
    channel count changes) where the block goes up, else a 1×1 convolution with the block's net stride where the
    channel count or resolution changes, else the identity. It always ends with a BatchNormalization before the
    addition.

    Parameters
    ----------
    x : KerasTensor
        Block input.
    filters : (int, int)
        Filters of the first and second convolution block, (f0, f1).
    strides : (int, int)
        Strides of the two convolution blocks (1 for an "up" block).
    dropval : float
        Dropout rate.
    first : bool
        The first block of the network (its first convolution block has no dropout).
    up : (bool, bool)
        Whether each convolution block is the "up" variant.
    mid_skip : KerasTensor, optional
        Tensor concatenated (channels) to the first block's output before the second block (U-Net skip).

    Returns
    -------
    first_out : KerasTensor
        Output of the first convolution block (before ``mid_skip`` is concatenated).
    out : KerasTensor
        Block output, shortcut + second convolution block.
    """
    h0 = conv_block(x, filters[0], strides[0], dropval=dropval, first=first, up=up[0])
    h = h0 if mid_skip is None else layers.Concatenate(axis=-1)([h0, mid_skip])
    h = conv_block(h, filters[1], strides[1], dropval=dropval, up=up[1])

    # Resolution change across the block: down-sampling by the strides, up-sampling by the "up" blocks.
    down, upf = strides[0] * strides[1], 2 ** sum(up)
    shortcut = x
    if upf > down:
        shortcut = layers.UpSampling2D(upf // down)(shortcut)
        if x.shape[-1] != filters[1]:
            shortcut = layers.Conv2D(filters[1], 1, padding="same")(shortcut)
    elif down > upf or x.shape[-1] != filters[1]:
        shortcut = layers.Conv2D(filters[1], 1, strides=down // upf, padding="same")(shortcut)
    return h0, layers.Add()([layers.BatchNormalization()(shortcut), h])


def _check_imagesize(params: Any) -> tuple[int, float]:
    size = _param(params, "imagesize")
    dropval = float(_param(params, "dropval"))
    if not isinstance(size, int) or size <= 0 or size % 4:
        raise TrainingError(
            f"imagesize must be a positive multiple of 4 (ResUNet-CMB down-samples twice), got {size!r}"
        )
    return size, dropval


def resunet_cmb(params: Any, heads: tuple[str, ...], name: str) -> keras.Model:
    """The ResUNet-CMB trunk with one output head per name in ``heads`` (outputs in that order).

    See :func:`ResUNet_CMB` for the architecture; every head is built the same way, so a model with k heads has
    the trunk's parameters plus k times those of one head.

    Parameters
    ----------
    params : TrainingConfig, mapping or object
        Needs ``imagesize`` (a multiple of 4) and ``dropval``.
    heads : tuple of str
        Output names, e.g. ``("tau", "unle", "kappa")``.
    name : str
        Name of the Keras model.

    Returns
    -------
    keras.Model
        Uncompiled model with inputs ``qlen``, ``ulen`` and one (batch, imagesize, imagesize, 1) float32 output per
        head.
    """
    size, dropval = _check_imagesize(params)
    qlen = keras.Input((size, size, 1), name="qlen", dtype="float32")
    ulen = keras.Input((size, size, 1), name="ulen", dtype="float32")
    x = layers.Concatenate(axis=-1)([qlen, ulen])

    # Encoder
    _, r1 = residual_block(x, (64, 64), dropval=dropval, first=True)
    r2_first, r2 = residual_block(r1, (64, 128), (1, 2), dropval=dropval)
    _, r3 = residual_block(r2, (128, 128), dropval=dropval)
    # Bridge: down to 1/4 resolution and back up to 1/2
    _, r4 = residual_block(r3, (256, 128), (2, 1), dropval=dropval, up=(False, True))
    # Decoder
    _, r5 = residual_block(layers.Concatenate(axis=-1)([r4, r3]), (128, 128), dropval=dropval)
    _, r6 = residual_block(r5, (64, 64), dropval=dropval, up=(True, False), mid_skip=r2_first)
    shared = conv_block(r6, 64, dropval=dropval)

    outputs = []
    for head in heads:
        h = conv_block(shared, 64, dropval=dropval)
        h = layers.Add()([layers.BatchNormalization()(r6), h])
        h = conv_block(h, 64, dropval=dropval)
        # float32 output layer: outputs stay float32 under a mixed-precision policy.
        outputs.append(conv_block(h, 1, dropval=dropval, activation="linear", name=head, dtype="float32"))
    return keras.Model(inputs=[qlen, ulen], outputs=outputs, name=name)


@register_model
def ResUNet_CMB(params: Any) -> keras.Model:  # noqa: N802 - the paper's name, used in configs
    """ResUNet-CMB: Q, U (lensed) → τ, primordial E, κ.

    Architecture (all convolutions 5×5, "same" padding, SELU except the heads' last block, which is linear):

    - Input: ``qlen`` and ``ulen`` maps, (imagesize, imagesize, 1) each, concatenated along channels.
    - Encoder: R1 [64, 64] at full resolution, first block without dropout, 1×1 shortcut (2 → 64 channels);
      R2 [64, 128], second convolution stride 2, 1×1 stride-2 shortcut; R3 [128, 128], identity shortcut.
    - Bridge: R4 [256, 128], first convolution stride 2, second convolution "up" back to the R3 resolution,
      identity shortcut.
    - Decoder: concat(R4, R3) → R5 [128, 128] with a 1×1 shortcut (256 → 128); R6 [64, 64], first convolution "up"
      to full resolution, concatenated with the output of R2's first convolution block, second convolution
      stride 1, shortcut UpSampling2D + 1×1 convolution; then one shared convolution block D of 64 filters.
    - Heads ``tau``, ``unle``, ``kappa``: conv block 64 on D, plus BatchNorm(R6); conv block 64; conv block with
      1 filter and linear activation whose BatchNormalization layer carries the head's name.

    Every shortcut ends in a BatchNormalization, the identity ones included; with that placement the model has
    exactly 5,292,367 parameters (5,287,113 trainable) at any image size: no layer depends on the map size.

    Parameters
    ----------
    params : TrainingConfig, mapping or object
        Needs ``imagesize`` (pixels per side, divisible by 4: the network down-samples twice) and ``dropval``
        (dropout rate).

    Returns
    -------
    keras.Model
        Uncompiled model with inputs ``qlen``, ``ulen`` and outputs ``tau``, ``unle``, ``kappa`` (in that order),
        each (batch, imagesize, imagesize, 1) float32.

    Raises
    ------
    TrainingError
        If ``imagesize`` is not a positive multiple of 4.
    """
    return resunet_cmb(params, ("tau", "unle", "kappa"), "ResUNet_CMB")


@register_model
def ResUNet_CMB_4out(params: Any) -> keras.Model:  # noqa: N802 - the authors' name, used in configs
    """ResUNet-CMB with a fourth head: Q, U (lensed) → τ, primordial E, κ and the polarization rotation α.

    The network of Guzman & Meyers, "Reconstructing Cosmic Polarization Rotation with ResUNet-CMB"
    (arXiv:2109.09715): the trunk of :func:`ResUNet_CMB` and a fourth head ``cbf`` (cosmic birefringence) built
    like the other three. With 207,301 parameters per head it has 5,499,668 parameters (5,494,028 trainable) at any
    image size.

    Parameters
    ----------
    params : TrainingConfig, mapping or object
        Needs ``imagesize`` (pixels per side, divisible by 4) and ``dropval`` (dropout rate).

    Returns
    -------
    keras.Model
        Uncompiled model with inputs ``qlen``, ``ulen`` and outputs ``tau``, ``unle``, ``kappa``, ``cbf`` (in that
        order), each (batch, imagesize, imagesize, 1) float32. ``cbf`` is trained on ``tru_alpha`` (radians).

    Raises
    ------
    TrainingError
        If ``imagesize`` is not a positive multiple of 4.
    """
    return resunet_cmb(params, ("tau", "unle", "kappa", "cbf"), "ResUNet_CMB_4out")


def load_model(path: str | Path, compile: bool = True) -> keras.Model:  # noqa: A002 - Keras's argument name
    """Load a model saved by a training run (``model.keras``), with the project's custom objects registered.

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.keras`` file.
    compile : bool
        Also restore the optimizer, loss and R² metrics (needs :mod:`training.metrics`, imported here).

    Returns
    -------
    keras.Model
    """
    import training.metrics  # noqa: F401 - registers RSquared for deserialization

    return keras.models.load_model(path, compile=compile)
