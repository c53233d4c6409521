"""Input: split files -> images decoded once (stage decode) -> tf.data batches.

Decoding and resizing happen once, in the decode stage, into a uint8 .npy file per split
that every training and evaluation stage reuses, reading only the batches it needs (memory
stays flat as the dataset grows); augmentation stays on the fly, on training batches.
"""
import functools
import itertools
import math
import os
from pathlib import Path
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


@functools.cache
def image_decoder(image_size):
    """decode_image(bytes, image_size) as one TensorFlow graph: a call runs all its ops
    outside Python, so threads decode at once (eager ops hold the GIL between ops)."""
    return tf.function(lambda data: decode_image(data, image_size),
                       input_signature=[tf.TensorSpec([], tf.string)])


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


def decoded_rows(files, image_size, name="images"):
    """Each file's uint8 image (size, size, 3), in the order given, as it is decoded
    (tf.data decodes several files at once, on every core)."""
    files = list(files)
    images = tf.data.Dataset.from_tensor_slices(files).map(
        lambda path: decode_image(tf.io.read_file(path), image_size),
        num_parallel_calls=tf.data.AUTOTUNE)  # order is kept (deterministic)
    for i, image in enumerate(images.as_numpy_iterator(), 1):
        yield image
        if i % PROGRESS_EVERY == 0:
            print(f"decode: {name}: {i}/{len(files)}")


def decode_files(files, image_size, name="images"):
    """All files as one uint8 array (N, size, size, 3), in the order given: for small sets
    (the decode stage streams decoded_rows to disk instead)."""
    files = list(files)
    decoded = np.empty((len(files), image_size, image_size, 3), dtype=np.uint8)
    for i, image in enumerate(decoded_rows(files, image_size, name)):
        decoded[i] = image
    return decoded


def save_decoded(split, images, labels, folder=paths.DECODED):
    """<folder>/<split>.images.npy (uint8 N x S x S x 3) and <split>.labels.npy (float32 N).
    images: an array or any iterable of N equal uint8 rows (decoded_rows); the .npy header
    goes first, then one row at a time, so memory holds one row, never the split. (The
    decode stage writes a temporary folder, then renames it.)"""
    labels = np.asarray(labels, "float32")
    rows = iter(images)
    first = next(rows, np.zeros((0, 0, 3), np.uint8))
    folder.mkdir(parents=True, exist_ok=True)
    header = {"descr": "|u1", "fortran_order": False, "shape": (len(labels), *first.shape)}
    with open(folder / f"{split}.images.npy", "wb") as file:
        np.lib.format.write_array_header_1_0(file, header)
        written = 0
        for row in itertools.chain([first] if len(labels) else [], rows):
            if row.shape != first.shape or row.dtype != np.uint8:
                raise ValueError(f"{split}: row {written} is {row.dtype} {row.shape}, "
                                 f"not uint8 {first.shape}")
            file.write(np.ascontiguousarray(row).data)
            written += 1
    if written != len(labels):
        raise ValueError(f"{split}: {written} images for {len(labels)} labels")
    np.save(folder / f"{split}.labels.npy", labels)


class DecodedImages:
    """The images of a decoded split (a .npy save_decoded wrote), read from the file on
    demand: len(), shape, and rows by [i], [i:j:k] or [array of indices] as uint8 arrays.
    Memory holds the rows asked for, never the split. os.preadv reads into the result
    directly: the file goes through the page cache, which (unlike a memory map's pages)
    is not the process's memory, and threads can read at once (no shared file offset)."""

    def __init__(self, file):
        self.file = Path(file)
        with open(self.file, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran_order, dtype = read_header(f)  # no pickle: a header is a literal
            self.offset = f.tell()
        if dtype != np.uint8 or fortran_order or len(shape) != 4:
            raise ValueError(f"{self.file}: {dtype} {shape} is not uint8 N x S x S x 3")
        self.shape, self.dtype = shape, np.dtype(np.uint8)
        self.row_bytes = math.prod(shape[1:])

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self[np.arange(*key.indices(len(self)))]
        index = np.asarray(key)
        if index.dtype.kind not in "iu":
            raise TypeError(f"rows are chosen by integers or slices, not {index.dtype}")
        if index.size and not (-len(self) <= index.min() and index.max() < len(self)):
            raise IndexError(f"rows {index.min()}..{index.max()} of {len(self)}")
        index = index % max(len(self), 1)  # negative indices count from the end
        out = np.empty((*index.shape, *self.shape[1:]), np.uint8)
        rows = out.reshape(-1, self.row_bytes)
        with open(self.file, "rb") as f:
            flat = index.ravel()
            # Consecutive rows (eval batches) in one read, else a read per row.
            runs = ([(0, flat.size)] if flat.size and flat[-1] - flat[0] == flat.size - 1
                    and np.all(np.diff(flat) == 1) else [(k, 1) for k in range(flat.size)])
            for start, count in runs:
                target = rows[start:start + count]
                if os.preadv(f.fileno(), [target], self.offset + int(flat[start]) *
                             self.row_bytes) != target.nbytes:
                    raise ValueError(f"{self.file} is shorter than its header says")
        return out

    def __array__(self, dtype=None, copy=None):
        return self[:] if dtype is None else self[:].astype(dtype)


def load_decoded(split):
    """(images, labels float32 N) of a split: images a DecodedImages, read on demand."""
    images = DecodedImages(paths.DECODED / f"{split}.images.npy")
    return images, np.load(paths.DECODED / f"{split}.labels.npy", allow_pickle=False)


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


def _rows(images, indices):
    """The uint8 rows of images (an array, or a DecodedImages read from disk) at indices, as
    a batch is made: only the batches tf.data holds at a time are in memory."""
    batch = tf.numpy_function(lambda i: images[i], [indices], tf.uint8, stateful=False)
    batch.set_shape([None, *images.shape[1:]])
    return batch


def _in_order(images, labels, batch_size):
    """(images, labels) batches in file order, each read when tf.data asks for it."""
    count, labels = len(labels), tf.constant(labels)

    def batch(step):
        indices = tf.range(step * batch_size, tf.minimum((step + 1) * batch_size, count))
        return _rows(images, indices), tf.gather(labels, indices)
    steps = math.ceil(count / batch_size)
    return tf.data.Dataset.range(steps).map(batch, num_parallel_calls=tf.data.AUTOTUNE)


def eval_dataset(images, labels, batch_size, preprocess):
    """Batches in file order, no augmentation."""
    return _to_model_input(_in_order(images, labels, batch_size), preprocess)


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
    labels = tf.constant(labels)  # small; the images are read batch by batch
    count = len(labels)
    steps = math.ceil(count / batch_size)

    def batch(step, order):
        indices = order[step * batch_size:tf.minimum((step + 1) * batch_size, count)]
        batch_seed = stream_seed(seed, AUGMENT_STREAM, epoch.read_value() * steps + step)
        return _rows(images, indices), tf.gather(labels, indices), batch_seed

    def epoch_batches(_):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count, dtype=tf.int64),
            seed=stream_seed(seed, SHUFFLE_STREAM, epoch.read_value()))
        return tf.data.Dataset.range(steps).map(lambda step: batch(step, order),
                                                num_parallel_calls=tf.data.AUTOTUNE)

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

    dataset = _in_order(images, labels, batch_size).enumerate()
    return _to_model_input(dataset.map(augmented, num_parallel_calls=tf.data.AUTOTUNE), preprocess)


def eval_split(split, batch_size, preprocess):
    """(batches in file order, labels) of a decoded split."""
    images, labels = load_decoded(split)
    return eval_dataset(images, labels, batch_size, preprocess), labels
