"""Input: split file lists -> images decoded once (stage decode) -> tf.data batches.

Decoding and resizing happen once, in the decode stage, into uint8 arrays that every
training and evaluation stage reuses; augmentation stays on the fly, on training batches.
"""
import math
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

SPLIT_COLUMNS = ["path", "label", "class"]
DECODED_DIR = Path("data/decoded")
# One stream per kind of random draw, folded into every stateless seed: no two draws share one.
SHUFFLE_STREAM, AUGMENT_STREAM, VIEW_STREAM = 0, 1, 2
PROGRESS_EVERY = 500  # images between progress lines


def decode_image(image_bytes, image_size=None):
    """The one decoder used everywhere: validation checks decodability with it too.

    uint8 RGB whatever the file holds (grayscale, RGBA, 16-bit, CMYK); animations give
    their first frame. With image_size, resized to a square uint8 image.
    """
    image = tf.io.decode_image(image_bytes, channels=3, dtype=tf.uint8, expand_animations=False)
    if image_size is None:
        return image
    image = tf.image.resize(image, [image_size, image_size])
    image = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)
    image.set_shape([image_size, image_size, 3])
    return image


def read_split(csv_path):
    """A split file written by stages/split.py: one row per image (path, label, class)."""
    try:
        frame = pd.read_csv(csv_path, keep_default_na=False)  # a class may be named "NA"
    except pd.errors.EmptyDataError:
        raise ValueError(f"{csv_path}: empty file, no images") from None
    missing = [c for c in SPLIT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{csv_path}: missing columns {missing}; expected {SPLIT_COLUMNS}")
    if frame.empty:
        raise ValueError(f"{csv_path}: no images")
    return frame


def decode_files(paths, image_size, name="images"):
    """All files as one uint8 array (N, size, size, 3), in the order given."""
    files = tf.data.Dataset.from_tensor_slices(list(paths))
    images = files.map(lambda p: decode_image(tf.io.read_file(p), image_size),
                       num_parallel_calls=tf.data.AUTOTUNE)  # order is kept (deterministic)
    decoded = np.empty((len(paths), image_size, image_size, 3), dtype=np.uint8)
    for i, image in enumerate(images.as_numpy_iterator()):
        decoded[i] = image
        if (i + 1) % PROGRESS_EVERY == 0:
            print(f"decode: {name}: {i + 1}/{len(paths)}")
    return decoded


def save_decoded(path, images, labels):
    np.savez(path, images=images, labels=np.asarray(labels, dtype=np.float32))


def load_decoded(path):
    """(images uint8 N x S x S x 3, labels float32 N); plain arrays, no pickle."""
    with np.load(path, allow_pickle=False) as arrays:
        return arrays["images"], arrays["labels"]


class Augmentation:
    """Random horizontal flip, rotation and shift of a batch, as ONE affine resampling per
    image (keras.ops.image.affine_transform, bilinear, reflected borders, the defaults of
    Keras' RandomRotation/RandomTranslation, whose ranges these knobs follow).

    Why not those layers: chained they resample twice, and their random state lives in a
    variable, so tf.data must run them one batch at a time to stay reproducible. Here the
    draws come from a stateless seed per batch, so batches augment in parallel, and
    deterministically.
    """

    def __init__(self, rotation_degrees, shift_fraction, horizontal_flip):
        self.max_radians = math.radians(rotation_degrees)
        self.shift, self.flip = shift_fraction, horizontal_flip

    def __call__(self, images, seed):
        count = tf.shape(images)[0]
        height, width = (tf.cast(tf.shape(images)[i], tf.float32) for i in (1, 2))
        draws = tf.random.stateless_uniform([count, 4], seed=seed, minval=-1.0, maxval=1.0)
        angle = draws[:, 0] * self.max_radians
        shift_x, shift_y = draws[:, 1] * self.shift * width, draws[:, 2] * self.shift * height
        mirror = tf.cast(draws[:, 3] < 0, tf.float32) if self.flip else tf.zeros([count])
        # The transform maps each output pixel back to its source: undo the shift, then the
        # rotation about the centre, then the mirror (x -> width - 1 - x).
        cos, sin = tf.cos(angle), tf.sin(angle)
        cx, cy = (width - 1) / 2, (height - 1) / 2
        x0, y0 = -shift_x - cx, -shift_y - cy   # shifted, centred origin
        a0, a1, a2 = cos, -sin, cos * x0 - sin * y0 + cx
        b0, b1, b2 = sin, cos, sin * x0 + cos * y0 + cy
        sign = 1 - 2 * mirror
        a0, a1, a2 = sign * a0, sign * a1, sign * a2 + mirror * (width - 1)
        zeros = tf.zeros([count])
        transform = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        return keras.ops.image.affine_transform(images, transform, interpolation="bilinear",
                                                fill_mode="reflect")


def augmentation(params):
    """The training augmentation from params, or None when every part is switched off."""
    knobs = params.augment
    if not (knobs.rotation_degrees or knobs.shift_fraction or knobs.horizontal_flip):
        return None
    return Augmentation(knobs.rotation_degrees, knobs.shift_fraction, knobs.horizontal_flip)


def stream_seed(seed, stream, counter):
    """The stateless seed pair of draw `counter` of `stream`: (seed, counter * 3 + stream)."""
    return tf.stack([tf.constant(seed, tf.int64),
                     tf.cast(counter, tf.int64) * 3 + stream])


def epoch_order(count, seed, epoch):
    """The shuffled indices 0..count-1 of the epoch `epoch` (a tf.Variable) holds."""
    return tf.random.experimental.stateless_shuffle(
        tf.range(count, dtype=tf.int64), seed=stream_seed(seed, SHUFFLE_STREAM,
                                                          epoch.read_value()))


def one_epoch(epoch_batches, steps):
    """A dataset of one element that expands into the epoch's `steps` batches, so the
    order is drawn once per epoch; the cardinality is declared for Keras' progress."""
    dataset = tf.data.Dataset.range(1).flat_map(epoch_batches)
    return dataset.apply(tf.data.experimental.assert_cardinality(steps))


def _to_model_input(dataset, preprocess):
    cast = dataset.map(lambda x, y: (preprocess(tf.cast(x, tf.float32)), y),
                       num_parallel_calls=tf.data.AUTOTUNE)
    return cast.prefetch(tf.data.AUTOTUNE)


def eval_dataset(images, labels, batch_size, preprocess):
    """Batches in file order, no augmentation."""
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)
    return _to_model_input(dataset, preprocess)


def train_dataset(images, labels, batch_size, preprocess, augment, seed, epoch):
    """One epoch of training batches: shuffled, augmented, preprocessed.

    The shuffle and the augmentation draws are functions of (seed, epoch, batch) alone;
    `epoch` is a tf.Variable that training.EpochRandomness sets as each epoch begins
    (Keras opens a new iterator per epoch, after that callback), so an epoch is the same
    whether a run reached it directly or resumed after a kill.
    """
    images, labels = tf.constant(images), tf.constant(labels)
    count = len(labels)
    steps = math.ceil(count / batch_size)

    def batch(step, order):
        indices = order[step * batch_size:tf.minimum((step + 1) * batch_size, count)]
        batch_seed = stream_seed(seed, AUGMENT_STREAM, epoch.read_value() * steps + step)
        return tf.gather(images, indices), tf.gather(labels, indices), batch_seed

    def epoch_batches(_):
        order = epoch_order(count, seed, epoch)
        return tf.data.Dataset.range(steps).map(lambda step: batch(step, order))

    dataset = one_epoch(epoch_batches, steps)
    if augment is None:
        dataset = dataset.map(lambda x, y, _: (x, y))
    else:
        dataset = dataset.map(lambda x, y, batch_seed: (augment(tf.cast(x, tf.float32),
                                                                batch_seed), y),
                              num_parallel_calls=tf.data.AUTOTUNE)
    return _to_model_input(dataset, preprocess)


def view_dataset(images, batch_size, preprocess, augment, seed, view):
    """Every image once, in file order: the view-th augmented copy of the set (the
    training augmentation, with its own stream of seeds), or the images as they are."""
    steps = math.ceil(len(images) / batch_size)
    batches = tf.data.Dataset.from_tensor_slices(images).batch(batch_size).enumerate()
    if augment is not None:
        batches = batches.map(
            lambda step, x: (step, augment(tf.cast(x, tf.float32),
                                           stream_seed(seed, VIEW_STREAM, view * steps + step))),
            num_parallel_calls=tf.data.AUTOTUNE)
    return batches.map(lambda _, x: preprocess(tf.cast(x, tf.float32)),
                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def feature_batches(views, labels, batch_size, seed, epoch):
    """Epoch e of a head trained on cached features (views: K x N x D): view e mod K,
    shuffled by (seed, e) as train_dataset shuffles images."""
    views, labels = tf.constant(views), tf.constant(labels)
    count = len(labels)

    def epoch_batches(_):
        order = epoch_order(count, seed, epoch)
        view = tf.gather(views, epoch.read_value() % views.shape[0])
        return tf.data.Dataset.from_tensor_slices(
            (tf.gather(view, order), tf.gather(labels, order))).batch(batch_size)

    return one_epoch(epoch_batches, math.ceil(count / batch_size)).prefetch(tf.data.AUTOTUNE)
