"""Backbones, the preprocessing inside every model, the head (sigmoid for two classes, softmax
for more), and the fine-tuning unfreeze (BatchNorm must stay in inference mode)."""
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import keras

from catsdogs import paths
from catsdogs.models import (BACKBONES, WeightsUnavailable, build_base, build_classifier,
                             compile_classifier, converted_weights_file, find_base,
                             imagenet_base, save_model, unfreeze_top)
from catsdogs.params import BACKBONE_LAYERS

SIZE = 32
# What each model's preprocess layer must do: the backbone's own function, as Keras gives it.
PREPROCESS_INPUT = {"mobilenet_v2": keras.applications.mobilenet_v2.preprocess_input,
                    "mobilenet": keras.applications.mobilenet.preprocess_input,
                    "efficientnet_b0": keras.applications.efficientnet.preprocess_input}


def random_images(n=4, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, SIZE, SIZE, 3)).astype("float32")


def raw_pixels(n=4, seed=0):
    """uint8 RGB, as a user's decoded photos are."""
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype="uint8")


def calibrated_batchnorm(model, pixels):
    """A random-init backbone's features vanish (each ReLU halves their variance: ~1e-13 at
    the top), so every image gets the same probabilities. BatchNorm statistics taken from
    `pixels`, as training would take them, make the outputs depend on the image."""
    base = find_base(model)
    base.trainable = True  # BatchNorm updates its statistics only when trainable
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0  # this batch's statistics, at once
    base(model.get_layer("preprocess")(pixels), training=True)
    base.trainable = False


def test_head_is_pooling_dropout_sigmoid_on_a_frozen_base():
    model = build_classifier("mobilenet_v2", SIZE, None, dropout=0.3, seed=1, num_classes=2)
    assert [type(layer).__name__ for layer in model.layers[3:]] == \
        ["GlobalAveragePooling2D", "Dropout", "Dense"]
    assert model.get_layer("dropout").rate == 0.3
    assert model.output_shape == (None, 1)
    assert model.get_layer("classes").activation.__name__ == "sigmoid"
    assert not find_base(model).trainable
    head_weights = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert head_weights == 1280 + 1  # MobileNetV2's 1280 features -> one unit
    compile_classifier(model, 1e-3)
    assert model.loss == "binary_crossentropy"


@pytest.mark.slow
@pytest.mark.parametrize("num_classes", [3, 5])
def test_more_classes_get_a_softmax_unit_each(num_classes):
    model = build_classifier("mobilenet_v2", SIZE, None, dropout=0.3, seed=1,
                             num_classes=num_classes)
    assert model.get_layer("classes").activation.__name__ == "softmax"
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == \
        (1280 + 1) * num_classes
    outputs = model.predict(raw_pixels(), verbose=0)
    assert outputs.shape == (4, num_classes)
    np.testing.assert_allclose(outputs.sum(axis=1), 1.0, atol=1e-5)
    compile_classifier(model, 1e-3)
    assert model.loss == "sparse_categorical_crossentropy"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_the_model_preprocesses_raw_pixels_as_the_backbone_expects(name):
    """Every model takes 0-255 pixels: its first layer, `preprocess`, does what the backbone's
    preprocess_input did outside it, and everything else is fed from it."""
    model = build_classifier(name, SIZE, None, dropout=0.0, seed=1, num_classes=3)
    layer = model.get_layer("preprocess")
    assert model.layers[1] is layer and model.layers[2] is find_base(model)
    pixels = raw_pixels().astype("float32")
    expected = PREPROCESS_INPUT[name](pixels.copy())  # (it works in place on arrays)
    np.testing.assert_allclose(layer(pixels), expected, atol=1e-5)
    if name != "efficientnet_b0":  # which rescales inside itself (preprocess_input: identity)
        assert -1 <= np.min(layer(pixels)) < 0 < np.max(layer(pixels)) <= 1
    # Raw pixels in: the rest of the model gets the layer's output (= preprocess_input's).
    calibrated_batchnorm(model, pixels)
    rest = keras.Model(layer.output, model.output)  # "Graph disconnected" if it bypassed it
    probabilities = model.predict(pixels, verbose=0)
    np.testing.assert_allclose(rest.predict(layer(pixels), verbose=0), probabilities, atol=1e-6)
    if name != "efficientnet_b0":  # the control: unscaled pixels give other probabilities
        assert np.abs(rest.predict(pixels, verbose=0) - probabilities).max() > 0.05


# Run by a python that cannot import this project: isolated (-I: no PYTHONPATH, no script or
# working folder on sys.path), in an empty folder. Plain Keras loads the model (safe_mode).
LOAD_ELSEWHERE = """
import importlib.util, sys
import keras, numpy as np
assert importlib.util.find_spec("catsdogs") is None, "the project is importable"
model = keras.models.load_model(sys.argv[1])
np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))
"""


@pytest.mark.slow
@pytest.mark.parametrize("name, num_classes", [("mobilenet_v2", 2), ("mobilenet", 3),
                                               ("efficientnet_b0", 5)])
def test_a_saved_model_gives_the_same_probabilities_on_raw_pixels_without_this_project(
        tmp_path, name, num_classes):
    keras.utils.set_random_seed(2)
    model = build_classifier(name, SIZE, None, dropout=0.3, seed=1, num_classes=num_classes)
    pixels = raw_pixels(6, seed=3)
    calibrated_batchnorm(model, pixels)
    assert np.ptp(model.predict(pixels, verbose=0), axis=0).max() > 0.01  # so it can fail
    save_model(model, tmp_path / "model" / "final.keras")
    np.save(tmp_path / "pixels.npy", pixels)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, "-I", "-c", LOAD_ELSEWHERE,
                             str(tmp_path / "model" / "final.keras"), str(tmp_path / "pixels.npy"),
                             str(tmp_path / "outputs.npy")],
                            cwd=elsewhere, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = np.load(tmp_path / "outputs.npy")
    assert outputs.shape == (6, 1 if num_classes == 2 else num_classes)
    np.testing.assert_allclose(outputs, model.predict(pixels, verbose=0), atol=1e-6)


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


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_headless_with_random_weights(name):
    model = build_classifier(name, SIZE, None, dropout=0.3, seed=1, num_classes=2)
    assert model.predict(random_images(2), verbose=0).shape == (2, 1)


@pytest.fixture
def offline_efficientnet(monkeypatch, tmp_path):
    """No official EfficientNetB0 file: its origin is an unreachable local address (the
    download fails, network or not), and the converted-file lookup sees an empty cache."""
    official = paths.keras_cache() / "models" / BACKBONES["efficientnet_b0"].weights_file
    if official.exists():
        pytest.skip(f"{official} is cached here, so the official file is never missing")
    from keras.src.applications import efficientnet
    monkeypatch.setattr(efficientnet, "BASE_WEIGHTS_PATH", "http://127.0.0.1:9/")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return paths.keras_cache() / "models" / official.name  # where the message says to put it


def test_missing_imagenet_weights_fail_naming_both_files(offline_efficientnet):
    with pytest.raises(WeightsUnavailable, match="efficientnet_b0") as error:
        build_base("efficientnet_b0", SIZE, "imagenet")
    assert str(offline_efficientnet) in str(error.value)
    assert str(converted_weights_file("efficientnet_b0")) in str(error.value)


@pytest.mark.slow
def test_without_the_official_file_a_converted_one_is_used(offline_efficientnet):
    keras.utils.set_random_seed(3)
    donor = build_base("efficientnet_b0", SIZE, None)
    converted = converted_weights_file("efficientnet_b0")
    converted.parent.mkdir(parents=True)
    donor.save_weights(converted)
    keras.utils.set_random_seed(4)  # a different random init, which the file must replace
    base, source = imagenet_base("efficientnet_b0", SIZE)
    assert source == converted
    for loaded, original in zip(base.weights, donor.weights):
        np.testing.assert_array_equal(loaded.numpy(), original.numpy())


def test_a_weights_file_gives_back_the_same_base(tmp_path):
    keras.utils.set_random_seed(5)
    original = build_base("mobilenet", SIZE, None)
    original.save_weights(tmp_path / "start.weights.h5")
    keras.utils.set_random_seed(6)
    loaded = build_base("mobilenet", SIZE, tmp_path / "start.weights.h5")
    images = random_images()
    np.testing.assert_array_equal(loaded(images), original(images))


def test_the_schema_layer_counts_match_keras():
    """params.BACKBONE_LAYERS bounds finetune.unfreeze_last; it must be Keras's own count."""
    assert set(BACKBONE_LAYERS) == set(BACKBONES)
    actual = {name: len(build_base(name, SIZE, None).layers) for name in sorted(BACKBONES)}
    assert BACKBONE_LAYERS == actual


def all_layers(model):
    """Every layer, nested models included."""
    found, stack = [], [model]
    while stack:
        layer = stack.pop()
        found.append(layer)
        stack.extend(getattr(layer, "layers", []))
    return found


def config_objects(node):
    """Every dict in a JSON tree."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from config_objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from config_objects(value)


@pytest.mark.slow
def test_a_fine_tuned_classifier_saves_as_keras_without_code_and_loads_in_safe_mode(tmp_path):
    model = build_classifier("mobilenet_v2", SIZE, None, dropout=0.3, seed=1, num_classes=2)
    unfreeze_top(find_base(model), 20)
    compile_classifier(model, 1e-3)
    labels = np.array([0, 1] * 4, dtype="float32")
    model.fit(random_images(8), labels, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)

    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        config_text = archive.read("config.json").decode()
    assert "config.json" in names and "model.weights.h5" in names
    assert not [n for n in names if n.lower().endswith((".pkl", ".pickle"))], names
    assert "lambda" not in config_text.lower()
    for obj in config_objects(json.loads(config_text)):
        # Only Keras's own classes; no serialized function, no Lambda, no user module.
        assert "function" not in obj, obj
        assert obj.get("class_name") not in ("Lambda", "function", "__lambda__"), obj
        assert obj.get("registered_name") not in ("Lambda", "function"), obj
        if "module" in obj:
            assert obj["module"] == "keras" or obj["module"].startswith("keras."), obj["module"]

    loaded = keras.models.load_model(path, safe_mode=True)
    assert not [layer for layer in all_layers(loaded) if isinstance(layer, keras.layers.Lambda)]
    assert len(all_layers(loaded)) == len(all_layers(model))
    images = random_images(6, seed=1)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0),
                                  model.predict(images, verbose=0))
    # The fine-tuning state survives too: the same layers with weights are trainable.
    def trainable(m):
        return {layer.name: layer.trainable for layer in find_base(m).layers if layer.weights}
    assert 0 < sum(trainable(model).values()) < len(trainable(model))
    assert trainable(loaded) == trainable(model)


def test_the_keras_cache_is_keras_home_else_dot_keras(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert paths.keras_cache() == tmp_path
    monkeypatch.delenv("KERAS_HOME")
    assert paths.keras_cache() == Path.home() / ".keras"


@pytest.mark.slow
def test_a_saved_model_is_byte_for_byte_the_same_when_saved_again(tmp_path):
    """Keras stamps the time and memory addresses into a .keras file; save_model does not, so
    an identical rerun leaves the model's hash in dvc.lock unchanged."""
    from catsdogs.models import save_model

    def build():  # a new model, as in another run: same names, new memory addresses
        keras.backend.clear_session()
        keras.utils.set_random_seed(1)
        return build_classifier("mobilenet_v2", SIZE, None, dropout=0.3, seed=1, num_classes=2)

    model = build()
    save_model(model, tmp_path / "a" / "model.keras")
    time.sleep(1.1)  # the stamp has one-second resolution
    save_model(build(), tmp_path / "b" / "model.keras")
    assert (tmp_path / "a/model.keras").read_bytes() == (tmp_path / "b/model.keras").read_bytes()
    assert not list(tmp_path.rglob("*.partial.keras"))
    loaded = keras.models.load_model(tmp_path / "a" / "model.keras", safe_mode=True)
    images = random_images(3)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), model.predict(images, verbose=0))
    # Control: plain model.save does differ, so the comparison above can fail.
    model.save(tmp_path / "plain.keras")
    time.sleep(1.1)
    model.save(tmp_path / "plain2.keras")
    assert (tmp_path / "plain.keras").read_bytes() != (tmp_path / "plain2.keras").read_bytes()
