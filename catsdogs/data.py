"""Input: image bytes -> uint8 pixels (validate decodes each file once) -> tf.data batches of
float32 pixels 0-255 (every model preprocesses inside itself), read from the decoded splits a
batch at a time and augmented on the fly."""
import functools
import math
from typing import Callable, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from catsdogs.decoded import load_decoded

# Every stateless seed is (seed, counter * STREAMS + stream): no two kinds of draw share one.
# Stream 2 is studies/legacy's augmented validation.
SHUFFLE_STREAM, AUGMENT_STREAM, STREAMS = 0, 1, 3


def decode_image(image_bytes, image_size=None):
    """The one decoder used everywhere: uint8 RGB whatever the file holds (an animation: its
    first frame); with image_size, resized to a square."""
    image = tf.io.decode_image(image_bytes, channels=3, dtype=tf.uint8, expand_animations=False)
    if image_size is None:
        return image
    image = resize(image, image_size)
    image.set_shape([image_size, image_size, 3])
    return image


def resize(images, image_size):
    """uint8 image(s) -> uint8 image_size squares: bilinear in float, rounded, clipped."""
    resized = tf.image.resize(images, [image_size, image_size])
    return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)


@functools.cache
def image_decoder(image_size):
    """decode_image as one graph: threads decode at once (eager ops hold the GIL between ops)."""
    return tf.function(lambda data: decode_image(data, image_size),
                       input_signature=[tf.TensorSpec([], tf.string)])


def augmentation(knobs):
    """augment(images, seed): flip, rotation and shift of a float batch as ONE affine resampling
    (None if all are off); Keras' RandomRotation + RandomTranslation resample twice."""
    shift_fraction, horizontal_flip = knobs.shift_fraction, knobs.horizontal_flip
    if not (knobs.rotation_degrees or shift_fraction or horizontal_flip):
        return None
    max_radians = math.radians(knobs.rotation_degrees)

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


def model_input(dataset):
    return dataset.map(lambda x, y: (tf.cast(x, tf.float32), y),
                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def rows_of(images, indices):
    """The uint8 rows of images (an array or a DecodedImages) at indices, read in the graph."""
    batch = tf.numpy_function(lambda i: images[i], [indices], tf.uint8, stateful=False)
    batch.set_shape([None, *images.shape[1:]])
    return batch


def batches_in_order(images, labels, batch_size):
    count, labels = len(labels), tf.constant(labels)

    def batch(step):
        indices = tf.range(step * batch_size, tf.minimum((step + 1) * batch_size, count))
        return rows_of(images, indices), tf.gather(labels, indices)
    steps = math.ceil(count / batch_size)
    return tf.data.Dataset.range(steps).map(batch, num_parallel_calls=tf.data.AUTOTUNE)


def eval_dataset(images, labels, batch_size):
    return model_input(batches_in_order(images, labels, batch_size))


class TrainingData(NamedTuple):
    epochs: Callable          # epochs(first, stop): those epochs' batches, one after the other
    steps: int                # batches per epoch
    epoch: tf.Variable        # training.fit sets it as each epoch begins (the batches do not
                              # read it; the legacy study's augmented validation does)
    images: int
    batch_size: int
    labels: np.ndarray        # in file order (training.class_weights counts them)


def train_dataset(images, labels, batch_size, augment, seed):
    """Shuffled batches, augmented unless augment is None, drawn from (seed, epoch, batch)
    alone: a resumed run's epoch is a straight run's."""
    count, label_tensor = len(labels), tf.constant(labels)  # images: read batch by batch
    steps = math.ceil(count / batch_size)

    def batch(step, order, epoch):
        indices = order[step * batch_size:tf.minimum((step + 1) * batch_size, count)]
        batch_seed = stream_seed(seed, AUGMENT_STREAM, epoch * steps + step)
        return rows_of(images, indices), tf.gather(label_tensor, indices), batch_seed

    def epoch_batches(epoch):  # the order is drawn once per epoch
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count, dtype=tf.int64), seed=stream_seed(seed, SHUFFLE_STREAM, epoch))
        return tf.data.Dataset.range(steps).map(lambda step: batch(step, order, epoch),
                                                num_parallel_calls=tf.data.AUTOTUNE)

    def epochs(first, stop):
        # The epoch comes from the dataset itself, not from a variable: under op determinism
        # a variable read anywhere upstream makes tf.data run every map after it sequentially.
        dataset = tf.data.Dataset.range(first, stop).flat_map(epoch_batches).apply(
            tf.data.experimental.assert_cardinality((stop - first) * steps))
        if augment is None:
            dataset = dataset.map(lambda x, y, _: (x, y))
        else:
            dataset = dataset.map(lambda x, y, seed: (augment(tf.cast(x, tf.float32), seed), y),
                                  num_parallel_calls=tf.data.AUTOTUNE)
        return model_input(dataset)

    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    return TrainingData(epochs, steps, epoch, count, batch_size, np.asarray(labels))


def eval_split(split, batch_size):
    """(batches in file order, labels) of a decoded split."""
    images, labels = load_decoded(split)
    return eval_dataset(images, labels, batch_size), labels
