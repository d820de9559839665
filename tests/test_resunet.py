"""Tests of training/resunet.py: the ResUNet-CMB architecture and the model registry."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from training import resunet
from training.config import TrainingError, validate_config
from training.resunet import MODELS, ResUNet_CMB, get_model_builder, register_model

PAPER_PARAMETERS = 5_292_367


@pytest.fixture(scope="module")
def full_model():
    keras.mixed_precision.set_dtype_policy("float32")
    return ResUNet_CMB(validate_config({}))  # the paper's config: 128x128 maps


def test_full_size_model_has_the_paper_parameter_count(full_model):
    assert full_model.count_params() == PAPER_PARAMETERS
    trainable = sum(int(np.prod(w.shape)) for w in full_model.trainable_weights)
    non_trainable = sum(int(np.prod(w.shape)) for w in full_model.non_trainable_weights)
    assert trainable + non_trainable == PAPER_PARAMETERS
    # Moving mean and variance of every BatchNormalization: 2 per channel.
    bn_channels = sum(
        layer.gamma.shape[0] for layer in full_model.layers if isinstance(layer, keras.layers.BatchNormalization)
    )
    assert non_trainable == 2 * bn_channels


def test_inputs_outputs_names_shapes_and_order(full_model):
    assert [t.name for t in full_model.inputs] == ["qlen", "ulen"]
    assert [tuple(t.shape) for t in full_model.inputs] == [(None, 128, 128, 1)] * 2
    assert list(full_model.output_names) == ["tau", "unle", "kappa"]
    for name in ("tau", "unle", "kappa"):
        layer = full_model.get_layer(name)
        assert isinstance(layer, keras.layers.BatchNormalization)
        assert tuple(layer.output.shape) == (None, 128, 128, 1)


def test_architecture_building_blocks(full_model):
    layers = full_model.layers
    convs = [layer for layer in layers if isinstance(layer, keras.layers.Conv2D)]
    assert {tuple(c.kernel_size) for c in convs} == {(5, 5), (1, 1)}
    # 1x1 shortcuts: R1, R2 (stride 2), R5, R6.
    shortcuts = [c for c in convs if tuple(c.kernel_size) == (1, 1)]
    assert [c.filters for c in shortcuts] == [64, 128, 128, 64]
    assert [tuple(c.strides) for c in shortcuts] == [(1, 1), (2, 2), (1, 1), (1, 1)]
    # 6 residual blocks x 2 + shared block + 3 heads x 3 = 22 5x5 convolutions; one stride-2 pair (R2, R4).
    five = [c for c in convs if tuple(c.kernel_size) == (5, 5)]
    assert len(five) == 22 and sum(tuple(c.strides) == (2, 2) for c in five) == 2
    # The very first block has no dropout: the first Conv2D reads the concatenated inputs directly.
    concat = layers[2]
    assert isinstance(concat, keras.layers.Concatenate) and five[0].input is concat.output
    assert sum(isinstance(layer, keras.layers.Dropout) for layer in layers) == 21
    assert sum(isinstance(layer, keras.layers.UpSampling2D) for layer in layers) == 3  # R4 up, R6 up, R6 shortcut
    acts = [layer.get_config()["activation"] for layer in layers if isinstance(layer, keras.layers.Activation)]
    assert acts.count("linear") == 3 and set(acts) == {"selu", "linear"}


def test_one_forward_pass_at_full_size(full_model):
    rng = np.random.default_rng(0)
    x = {name: rng.standard_normal((1, 128, 128, 1), dtype=np.float32) for name in ("qlen", "ulen")}
    out = full_model(x, training=False)
    assert len(out) == 3
    for y in out:
        y = keras.ops.convert_to_numpy(y)
        assert y.shape == (1, 128, 128, 1) and y.dtype == np.float32 and np.isfinite(y).all()


@pytest.mark.parametrize("size", [16, 32, 64])
def test_parameter_count_does_not_depend_on_the_image_size(size):
    assert ResUNet_CMB({"imagesize": size, "dropval": 0.3}).count_params() == PAPER_PARAMETERS


@pytest.mark.parametrize("size", [30, 0, 18.0])
def test_imagesize_must_be_a_multiple_of_four(size):
    with pytest.raises(TrainingError, match="imagesize must be a positive multiple of 4"):
        ResUNet_CMB({"imagesize": size, "dropval": 0.3})


def test_registry():
    assert get_model_builder("ResUNet_CMB") is ResUNet_CMB
    with pytest.raises(TrainingError, match="unknown model 'ResUnet'; registered models: ResUNet_CMB"):
        get_model_builder("ResUnet")

    @register_model
    def tiny_test_model(params):
        inp = keras.Input((params["imagesize"], params["imagesize"], 1), name="qlen")
        return keras.Model(inp, keras.layers.Conv2D(1, 1, name="kappa")(inp))

    try:
        assert get_model_builder("tiny_test_model") is tiny_test_model
        assert get_model_builder("tiny_test_model")({"imagesize": 8}).output_names == ["kappa"]
    finally:
        del MODELS["tiny_test_model"]
    assert "tiny_test_model" not in resunet.MODELS


def test_mixed_precision_keeps_float32_outputs():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = ResUNet_CMB({"imagesize": 16, "dropval": 0.0})
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert conv.compute_dtype == "bfloat16"
    x = {name: np.ones((2, 16, 16, 1), np.float32) for name in ("qlen", "ulen")}
    for y in model.predict(x, verbose=0):
        assert y.dtype == np.float32


def test_save_and_load_give_identical_predictions(tmp_path):
    keras.utils.set_random_seed(1)
    model = ResUNet_CMB({"imagesize": 16, "dropval": 0.3})
    rng = np.random.default_rng(1)
    x = {name: rng.standard_normal((3, 16, 16, 1), dtype=np.float32) for name in ("qlen", "ulen")}
    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "m.weights.h5")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    rebuilt = ResUNet_CMB({"imagesize": 16, "dropval": 0.3})
    rebuilt.load_weights(tmp_path / "m.weights.h5")
    for other in (loaded, rebuilt):
        for a, b in zip(expected, other.predict(x, verbose=0), strict=True):
            np.testing.assert_array_equal(a, b)


def _head_parameters(filters: int = 64, kernel: int = 5) -> int:
    """Parameters of one output head: conv 64 + BN, BN of the decoder output, conv 64 + BN, conv 1 + BN."""
    conv64 = kernel * kernel * filters * filters + filters
    conv1 = kernel * kernel * filters + 1
    bn = 4  # gamma, beta, moving mean, moving variance per channel
    return conv64 + bn * filters + bn * filters + conv64 + bn * filters + conv1 + bn


def test_four_output_model_adds_a_rotation_head_built_like_the_others():
    from training.resunet import ResUNet_CMB_4out

    model = ResUNet_CMB_4out({"imagesize": 32, "dropval": 0.3})
    assert get_model_builder("ResUNet_CMB_4out") is ResUNet_CMB_4out
    assert [t.name for t in model.inputs] == ["qlen", "ulen"]
    assert list(model.output_names) == ["tau", "unle", "kappa", "cbf"]
    assert _head_parameters() == 207_301
    # The paper's trunk and three heads plus one more head: 5,292,367 + 207,301.
    assert model.count_params() == PAPER_PARAMETERS + _head_parameters() == 5_499_668
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    # The head's BatchNorm layers have 64 + 64 + 64 + 1 channels, with 2 non-trainable statistics each.
    assert trainable == 5_287_113 + _head_parameters() - 2 * 193 == 5_494_028
    heads = {name: model.get_layer(name) for name in model.output_names}
    assert all(isinstance(layer, keras.layers.BatchNormalization) for layer in heads.values())
    assert tuple(heads["cbf"].output.shape) == (None, 32, 32, 1)
    acts = [layer.get_config()["activation"] for layer in model.layers if isinstance(layer, keras.layers.Activation)]
    assert acts.count("linear") == 4
