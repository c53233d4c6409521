"""Input: split files -> images decoded once (stage decode) -> tf.data batches.

Decoding and resizing happen once, in the decode stage, into uint8 arrays that every
training and evaluation stage reuses; augmentation stays on the fly, on training batches.
"""
import math
from typing import NamedTuple

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from catsdogs import paths

# Every stateless seed is (seed, counter * STREAMS + stream): no two kinds of draw share one.
# (STREAMS is 3, not 2, so that the draws, and the results, stay those of earlier runs.)
SHUFFLE_STREAM, AUGMENT_STREAM, STREAMS = 0, 1, 3
VALIDATION_AUGMENT_STREAM = 2  # augmented validation (studies/legacy)
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


def read_split(split, classes=None):
    """data/split/<split>.csv: one row per image (path, label, class), as split wrote it.

    Path and class are text whatever they look like (a class "007", "True", "NA" or "1e3"
    stays that name, not a number, a bool or a missing value); labels are ints. With classes
    (params.classes), each row's class must be one of them and its label the class's place
    in sorted order: else the run stops naming the file and the row.
    """
    file = paths.SPLIT / f"{split}.csv"
    frame = pd.read_csv(file, dtype=str, keep_default_na=False)
    labels = {name: str(label) for label, name in enumerate(sorted(classes or []))}
    for row, (path, label, name) in enumerate(zip(frame["path"], frame["label"],
                                                  frame["class"]), start=1):
        if classes and name not in labels:
            problem = f"class {name!r} is not in classes {sorted(classes)}"
        elif classes and label != labels[name]:
            problem = f"label {label!r}, but class {name!r} has label {labels[name]}"
        elif not label.isdigit():
            problem = f"label {label!r} is not a whole number"
        else:
            continue
        raise SystemExit(f"{file} row {row} ({path}): {problem}; rerun python -m stages.split")
    return frame.astype({"label": int})


def decode_files(files, image_size, name="images"):
    """All files as one uint8 array (N, size, size, 3), in the order given."""
    files = list(files)
    images = tf.data.Dataset.from_tensor_slices(files).map(
        lambda path: decode_image(tf.io.read_file(path), image_size),
        num_parallel_calls=tf.data.AUTOTUNE)  # order is kept (deterministic)
    decoded = np.empty((len(files), image_size, image_size, 3), dtype=np.uint8)
    for i, image in enumerate(images.as_numpy_iterator()):
        decoded[i] = image
        if (i + 1) % PROGRESS_EVERY == 0:
            print(f"decode: {name}: {i + 1}/{len(files)}")
    return decoded


def save_decoded(split, images, labels, folder=paths.DECODED):
    """<folder>/<split>.npz (the decode stage writes a temporary folder, then renames it)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"{split}.npz", images=images, labels=np.asarray(labels, "float32"))


def load_decoded(split):
    """(images uint8 N x S x S x 3, labels float32 N) of a split; plain arrays, no pickle."""
    with np.load(paths.DECODED / f"{split}.npz", allow_pickle=False) as arrays:
        return arrays["images"], arrays["labels"]


def augmentation(rotation_degrees, shift_fraction, horizontal_flip):
    """augment(images, seed): random horizontal flip, rotation and shift of a float batch,
    as ONE affine resampling per image (bilinear, reflected borders: the defaults of Keras'
    RandomRotation/RandomTranslation, whose ranges these knobs follow); None if all are off.

    Why not those layers: chained they resample twice, and their random state lives in a
    variable, so tf.data must run them one batch at a time to stay reproducible. Here the
    draws come from a stateless seed per batch: batches augment in parallel, deterministically.
    """
    if not (rotation_degrees or shift_fraction or horizontal_flip):
        return None
    max_radians = math.radians(rotation_degrees)

    def augment(images, seed):
        count = tf.shape(images)[0]
        height, width = (tf.cast(tf.shape(images)[i], tf.float32) for i in (1, 2))
        draws = tf.random.stateless_uniform([count, 4], seed=seed, minval=-1.0, maxval=1.0)
        angle = draws[:, 0] * max_radians
        shift_x = draws[:, 1] * shift_fraction * width
        shift_y = draws[:, 2] * shift_fraction * height
        mirror = tf.cast(draws[:, 3] < 0, tf.float32) if horizontal_flip else tf.zeros([count])
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
    return augment


def stream_seed(seed, stream, counter):
    return tf.stack([tf.constant(seed, tf.int64), tf.cast(counter, tf.int64) * STREAMS + stream])


def _to_model_input(dataset, preprocess):
    return dataset.map(lambda x, y: (preprocess(tf.cast(x, tf.float32)), y),
                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def eval_dataset(images, labels, batch_size, preprocess):
    """Batches in file order, no augmentation."""
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)
    return _to_model_input(dataset, preprocess)


class TrainingData(NamedTuple):
    batches: tf.data.Dataset  # one epoch of batches, drawn for the epoch `epoch` holds
    epoch: tf.Variable        # set as each epoch begins (training.fit does)
    images: int


def train_dataset(images, labels, batch_size, preprocess, augment, seed):
    """Training batches: shuffled, augmented (unless augment is None), preprocessed.

    The shuffle and the augmentation draws are functions of (seed, epoch, batch) alone;
    Keras opens a new iterator per epoch, after the epoch variable is set, so an epoch is
    the same whether a run reached it directly or resumed after a kill.
    """
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    images, labels = tf.constant(images), tf.constant(labels)
    count = len(labels)
    steps = math.ceil(count / batch_size)

    def batch(step, order):
        indices = order[step * batch_size:tf.minimum((step + 1) * batch_size, count)]
        batch_seed = stream_seed(seed, AUGMENT_STREAM, epoch.read_value() * steps + step)
        return tf.gather(images, indices), tf.gather(labels, indices), batch_seed

    def epoch_batches(_):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count, dtype=tf.int64),
            seed=stream_seed(seed, SHUFFLE_STREAM, epoch.read_value()))
        return tf.data.Dataset.range(steps).map(lambda step: batch(step, order))

    # One element that expands into the epoch's batches, so the order is drawn once per
    # epoch; the cardinality is declared for Keras' progress.
    dataset = tf.data.Dataset.range(1).flat_map(epoch_batches).apply(
        tf.data.experimental.assert_cardinality(steps))
    if augment is None:
        dataset = dataset.map(lambda x, y, _: (x, y))
    else:
        dataset = dataset.map(lambda x, y, seed: (augment(tf.cast(x, tf.float32), seed), y),
                              num_parallel_calls=tf.data.AUTOTUNE)
    return TrainingData(_to_model_input(dataset, preprocess), epoch, count)


def augmented_eval_dataset(images, labels, batch_size, preprocess, augment, epoch, seed):
    """Batches in file order, augmented anew each epoch: validation drawn through the training
    generator, as `validation_split` on one augmenting ImageDataGenerator does. The draws are
    functions of (seed, epoch, batch) on their own stream; `epoch` is the training data's
    (TrainingData.epoch, set by training.fit), and Keras opens a new iterator per epoch."""
    steps = math.ceil(len(labels) / batch_size)

    def augmented(step, batch):
        batch_seed = stream_seed(seed, VALIDATION_AUGMENT_STREAM, epoch.read_value() * steps + step)
        return augment(tf.cast(batch[0], tf.float32), batch_seed), batch[1]

    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size).enumerate()
    return _to_model_input(dataset.map(augmented, num_parallel_calls=tf.data.AUTOTUNE), preprocess)


def eval_split(split, batch_size, preprocess):
    """(batches in file order, labels) of a decoded split."""
    images, labels = load_decoded(split)
    return eval_dataset(images, labels, batch_size, preprocess), labels
