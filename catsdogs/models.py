"""Backbones from keras.applications, the classifier head, and the fine-tuning unfreeze."""
import functools
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import tensorflow as tf

from catsdogs import paths


@dataclass(frozen=True)
class Backbone:
    constructor: Callable
    # Makes the backbone's preprocess_input as a built-in Keras layer (named preprocess), the
    # first of every model: models take RGB 0-255 and load with no code of ours (safe_mode).
    preprocess_layer: Callable
    weights_file: str  # the official no-top ImageNet file Keras keeps in KERAS_HOME/models


# MobileNets' preprocess_input: x / 127.5 - 1. EfficientNet rescales inside itself (its
# preprocess_input is the identity).
MINUS_ONE_TO_ONE = functools.partial(keras.layers.Rescaling, 1 / 127.5, offset=-1.0,
                                     name="preprocess")
BACKBONES = {
    "mobilenet_v2": Backbone(
        keras.applications.MobileNetV2, MINUS_ONE_TO_ONE,
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5"),
    "mobilenet": Backbone(keras.applications.MobileNet, MINUS_ONE_TO_ONE,
                          "mobilenet_1_0_{size}_tf_no_top.h5"),
    "efficientnet_b0": Backbone(
        keras.applications.EfficientNetB0,
        functools.partial(keras.layers.Identity, name="preprocess"), "efficientnetb0_notop.h5"),
}


class WeightsUnavailable(SystemExit):
    """No ImageNet weights cached, downloadable or converted: the message alone, no traceback."""


def converted_weights_file(name):
    """Converted headless ImageNet weights, used when Keras cannot get its official file (a
    name of its own: Keras md5-checks the EfficientNet files)."""
    return paths.keras_cache() / "models" / f"{name}_imagenet_notop.weights.h5"


def imagenet_base(name, image_size):
    """(headless backbone, its weights file): Keras' official ImageNet file, else the converted."""
    spec = BACKBONES[name]
    official = paths.keras_cache() / "models" / spec.weights_file.format(size=image_size)

    def damaged(file, error, remedy):
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        return WeightsUnavailable(f"ImageNet weights for {name} at {image_size}px: {file} is "
                                  f"damaged or not {name}'s ({reason}); {remedy}")
    try:
        return spec.constructor(input_shape=(image_size, image_size, 3), include_top=False,
                                weights="imagenet"), official
    except Exception as error:  # Keras raises a bare Exception when the download fails
        if "fetch failure" not in str(error):
            # Reading the cached file failed (h5py's OSError, Keras' ValueError on other
            # shapes); anything else is no damaged file: as it is.
            if official.is_file() and isinstance(error, (OSError, ValueError)):
                raise damaged(official, error, "delete it; Keras downloads it again") from None
            raise
        official_error = error
    converted = converted_weights_file(name)
    if not converted.is_file():
        raise WeightsUnavailable(
            f"ImageNet weights for {name} at {image_size}px: the official Keras file is not "
            f"cached at {official} and could not be downloaded ({official_error}), and there "
            f"is no converted file at {converted}. Copy either file there (see README, "
            f"'Offline weights'), or set KERAS_HOME to a cache that holds one.")
    try:
        return build_base(name, image_size, converted), converted
    except Exception as error:  # h5py's OSError, Keras' ValueError on other shapes
        raise damaged(converted, error, "replace it (README, 'Offline weights')") from None


def build_base(name, image_size, weights):
    """The headless backbone; weights: None (random init), "imagenet" or a weights file."""
    if weights == "imagenet":
        return imagenet_base(name, image_size)[0]
    base = BACKBONES[name].constructor(input_shape=(image_size, image_size, 3),
                                       include_top=False, weights=None)
    if weights is not None:
        base.load_weights(weights)
    return base


def build_classifier(name, image_size, weights, dropout, seed, num_classes, preprocess=None):
    """RGB 0-255 in -> preprocess (the backbone's unless given) -> frozen base -> pooling ->
    dropout -> `classes`: one sigmoid unit, p(the second class), for two classes; else softmax."""
    base = build_base(name, image_size, weights)
    base.trainable = False
    inputs = keras.Input((image_size, image_size, 3), name="image")
    pixels = (preprocess or BACKBONES[name].preprocess_layer())(inputs)
    # training=False keeps BatchNorm in inference mode while the base is frozen.
    features = base(pixels, training=False)
    features = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    if dropout:
        features = keras.layers.Dropout(dropout, seed=seed, name="dropout")(features)
    units, activation = (1, "sigmoid") if num_classes == 2 else (num_classes, "softmax")
    outputs = keras.layers.Dense(units, activation=activation, name="classes")(features)
    return keras.Model(inputs, outputs, name=f"{name}_classifier")


def find_base(model):
    """The backbone inside a classifier build_classifier made."""
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def unfreeze_top(base, count, freeze_batchnorm=True):
    """The last `count` layers of the base trainable, BatchNorm frozen unless freeze_batchnorm
    is False (Keras 3 trains a trainable BatchNorm even under training=False, keras#20285).
    Checked here too: a head.keras of another backbone may have fewer layers than params knew."""
    if not 1 <= count <= len(base.layers):
        raise ValueError(f"unfreeze_last must be in [1, {len(base.layers)}] for {base.name}, "
                         f"got {count}")
    base.trainable = True
    for layer in base.layers[:-count]:
        layer.trainable = False
    for layer in base.layers:
        if freeze_batchnorm and isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def count_params(model):
    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    total = sum(int(keras.ops.size(w)) for w in model.weights)
    return {"params_total": total, "params_trainable": trainable}


def save_model(model, path):
    """model.save, the same bytes for the same model: no save times, shared objects numbered in
    order (not by memory address)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamped = path.with_name(path.name + ".partial.keras")
    model.save(stamped)
    with zipfile.ZipFile(stamped) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "metadata.json":
                data = json.dumps({k: v for k, v in json.loads(data).items()
                                   if k != "date_saved"}).encode()
            elif item.filename == "config.json":
                data = json.dumps(_renumber_shared(json.loads(data), {})).encode()
            target.writestr(zipfile.ZipInfo(item.filename, date_time=(1980, 1, 1, 0, 0, 0)),
                            data, compress_type=item.compress_type)
    stamped.unlink()


def _renumber_shared(node, numbers):
    """The config with each shared_object_id (an id()) replaced by its order of appearance."""
    if isinstance(node, list):
        return [_renumber_shared(value, numbers) for value in node]
    if not isinstance(node, dict):
        return node
    return {key: numbers.setdefault(value, len(numbers)) if key == "shared_object_id"
            else _renumber_shared(value, numbers) for key, value in node.items()}


def seed_everything(seed):
    """Python, NumPy, TensorFlow and Keras seeds, and deterministic TF kernels."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def compile_classifier(model, learning_rate):
    """Adam; cross-entropy, sparse for a softmax (labels are class indices)."""
    loss = ("binary_crossentropy" if model.output_shape[-1] == 1
            else "sparse_categorical_crossentropy")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss,
                  metrics=["accuracy"])
