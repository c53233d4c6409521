"""tf.data input: file lists (CSV) -> decoded, resized, cached, batched images."""
import keras
import pandas as pd
import tensorflow as tf

from catsdogs.params import get

SPLIT_COLUMNS = ["path", "label", "class"]


def decode_image(image_bytes, image_size=None):
    """The one decoder used everywhere (validation checks decodability with it too)."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    if image_size is None:
        return image
    image = tf.image.resize(image, [image_size, image_size])
    image.set_shape([image_size, image_size, 3])
    return image


def read_split(csv_path):
    """A split file written by stages/split.py: one row per image (path, label, class)."""
    try:
        frame = pd.read_csv(csv_path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{csv_path}: empty file, no images") from None
    missing = [c for c in SPLIT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{csv_path}: missing columns {missing}; expected {SPLIT_COLUMNS}")
    if frame.empty:
        raise ValueError(f"{csv_path}: no images")
    return frame


def augmentation(params):
    """Random flip/rotation/shift, seeded from params; applied to training batches only.

    None when every augmentation is switched off (Keras cannot build an empty Sequential).
    """
    seed = get(params, "train.seed", int)
    degrees = get(params, "augment.rotation_degrees", (int, float), low=0, high=180)
    shift = get(params, "augment.shift_fraction", float, low=0.0, high=1.0)
    flip = get(params, "augment.horizontal_flip", bool)
    layers = []
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if degrees:
        layers.append(keras.layers.RandomRotation(degrees / 360.0, seed=seed + 1))
    if shift:
        layers.append(keras.layers.RandomTranslation(shift, shift, seed=seed + 2))
    return keras.Sequential(layers, name="augmentation") if layers else None


def make_dataset(frame, image_size, batch_size, preprocess, *, augment=None, shuffle_seed=None):
    """Batches of (preprocessed image, float label). Decoding happens once, then is cached."""
    def load(path, label):
        return decode_image(tf.io.read_file(path), image_size), label

    labels = frame["label"].astype("float32").to_numpy()
    dataset = tf.data.Dataset.from_tensor_slices((frame["path"].to_numpy(), labels))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE).cache()
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(frame), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if augment is not None:
        dataset = dataset.map(lambda x, y: (augment(x, training=True), y),
                              num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.map(lambda x, y: (preprocess(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
