"""Backbones, the head, and the fine-tuning unfreeze (BatchNorm must stay in inference mode)."""
import os

import numpy as np
import pytest
import keras

from catsdogs.models import (BACKBONES, WeightsUnavailable, build_base, build_classifier,
                             find_base, keras_cache_dir, unfreeze_top)

SIZE = 32


def random_images(n=4, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, SIZE, SIZE, 3)).astype("float32")


def test_head_is_pooling_dropout_sigmoid_on_a_frozen_base():
    model = build_classifier("mobilenet_v2", SIZE, None, dropout=0.3, seed=1)
    assert [type(layer).__name__ for layer in model.layers[2:]] == \
        ["GlobalAveragePooling2D", "Dropout", "Dense"]
    assert model.get_layer("dropout").rate == 0.3
    assert model.output_shape == (None, 1)
    assert model.get_layer("cat_or_dog").activation.__name__ == "sigmoid"
    assert not find_base(model).trainable
    head_weights = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert head_weights == 1280 + 1  # MobileNetV2's 1280 features -> one unit


def test_unfreeze_top_trains_only_the_last_layers_and_never_batchnorm():
    base = build_base("mobilenet_v2", SIZE, None)
    unfreeze_top(base, 20)
    trainable = [layer.trainable for layer in base.layers]
    assert not any(trainable[:-20])
    for layer in base.layers[-20:]:
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        assert layer.trainable == (not is_bn), layer.name
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in base.layers[-20:])


def test_after_unfreezing_batchnorm_gives_the_same_features_in_training_mode():
    base = build_base("mobilenet_v2", SIZE, None)
    images = random_images()
    # Control: a plainly trainable base uses batch statistics, so the check below can fail.
    base.trainable = True
    assert not np.allclose(base(images, training=True), base(images, training=False), atol=1e-4)
    unfreeze_top(base, 20)
    np.testing.assert_allclose(base(images, training=True), base(images, training=False),
                               atol=1e-5)


@pytest.mark.parametrize("count", [0, -1, 10_000])
def test_unfreeze_top_rejects_counts_outside_the_base(count):
    base = build_base("mobilenet", SIZE, None)
    with pytest.raises(ValueError, match="unfreeze_last"):
        unfreeze_top(base, count)


def test_imagenet_weights_at_a_size_they_do_not_exist_for_are_refused():
    with pytest.raises(ValueError, match="mobilenet_v2 has ImageNet weights for input sizes"):
        build_base("mobilenet_v2", 150, "imagenet")


def test_unknown_backbone_is_named_with_the_choices():
    with pytest.raises(ValueError, match="resnet.*efficientnet_b0"):
        build_base("resnet", SIZE, None)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_headless_with_random_weights(name):
    model = build_classifier(name, SIZE, None, dropout=0.3, seed=1)
    assert model.predict(random_images(2), verbose=0).shape == (2, 1)


def test_missing_imagenet_weights_fail_naming_the_file_and_the_cache(monkeypatch):
    expected = os.path.join(keras_cache_dir(), "models", "efficientnetb0_notop.h5")
    if os.path.exists(expected):
        pytest.skip(f"{expected} is cached here, so nothing is missing")
    # The origin becomes an unreachable local address: the download fails, network or not.
    from keras.src.applications import efficientnet
    monkeypatch.setattr(efficientnet, "BASE_WEIGHTS_PATH", "http://127.0.0.1:9/")
    with pytest.raises(WeightsUnavailable, match="efficientnet_b0") as error:
        build_base("efficientnet_b0", 224, "imagenet")
    assert expected in str(error.value)
