"""Checked params, split files, and the tf.data input (order, seeds, preprocessing, augmentation)."""
import keras
import numpy as np
import pandas as pd
import pytest

from catsdogs.data import augmentation, make_dataset, read_split
from catsdogs.params import ParamError, get
from conftest import make_dataset as make_image_folders

SIZE = 32
PREPROCESS = keras.applications.mobilenet_v2.preprocess_input
AUGMENT = {"rotation_degrees": 20, "shift_fraction": 0.2, "horizontal_flip": True}
NO_AUGMENT = {"rotation_degrees": 0, "shift_fraction": 0, "horizontal_flip": False}


# ---- catsdogs.params.get ----------------------------------------------------------------

PARAMS = {"train": {"epochs": 3, "lr": "1e-5", "flag": True, "rate": 0.3, "zero": 0.0},
          "validate": {"classes": ["cats", "dogs"], "empty": []}}


def test_get_reads_dotted_keys_and_accepts_yaml_strings_and_ints_as_floats():
    assert get(PARAMS, "train.epochs", int, low=1, high=3) == 3
    assert get(PARAMS, "train.lr", float) == pytest.approx(1e-5)
    assert isinstance(get(PARAMS, "train.epochs", float), float)
    assert get(PARAMS, "validate.classes", list, choices=("cats", "dogs")) == ["cats", "dogs"]


@pytest.mark.parametrize("key, kind, options, message", [
    ("train.missing", int, {}, "'train.missing' is missing"),
    ("train.epochs.deeper", int, {}, "'train.epochs.deeper' is missing"),
    ("train.lr", int, {}, "'train.lr' must be int"),
    ("train.flag", int, {}, "'train.flag' must be int"),       # True is an int to Python
    ("train.flag", float, {}, "'train.flag' must be float"),
    ("train.epochs", bool, {}, "'train.epochs' must be bool"),
    ("train.epochs", int, {"low": 4}, "'train.epochs' must be >= 4"),
    ("train.rate", float, {"high": 0.2}, "'train.rate' must be <= 0.2"),
    ("train.zero", float, {"above": 0.0}, "'train.zero' must be > 0.0"),
    ("train.epochs", int, {"choices": (1, 2)}, "'train.epochs' has 3"),
    ("validate.classes", list, {"choices": ("cats", "birds")}, "'validate.classes' has 'dogs'"),
    ("validate.empty", list, {}, "'validate.empty' must not be empty"),
])
def test_get_rejects_bad_values_naming_the_key(key, kind, options, message):
    with pytest.raises(ParamError, match=message):
        get(PARAMS, key, kind, **options)


# ---- read_split ------------------------------------------------------------------------

def test_read_split_rejects_missing_columns_and_empty_files_naming_the_file(tmp_path):
    no_class = tmp_path / "no_class.csv"
    no_class.write_text("path,label\na.jpg,0\n")
    with pytest.raises(ValueError, match=r"no_class\.csv.*\['class'\]"):
        read_split(no_class)
    header_only = tmp_path / "header_only.csv"
    header_only.write_text("path,label,class\n")
    with pytest.raises(ValueError, match=r"header_only\.csv"):
        read_split(header_only)
    zero_bytes = tmp_path / "zero_bytes.csv"
    zero_bytes.write_text("")
    with pytest.raises(ValueError, match=r"zero_bytes\.csv"):
        read_split(zero_bytes)


# ---- make_dataset ----------------------------------------------------------------------

@pytest.fixture
def split_frame(tmp_path):
    """Five reddish cats and five bluish dogs, interleaved: cat.0, dog.0, cat.1, ..."""
    root = make_image_folders(tmp_path / "images", per_class={"train": 5})
    paths = [root / "train" / f"{c}s" / f"{c}.{i}.jpg" for i in range(5) for c in ("cat", "dog")]
    return pd.DataFrame({"path": [str(p) for p in paths],
                         "label": [int(p.parent.name == "dogs") for p in paths],
                         "class": [p.parent.name for p in paths]})


def one_pass(dataset):
    """(images, labels) of one pass over the dataset, batches concatenated."""
    batches = list(dataset)
    return (np.concatenate([x.numpy() for x, _ in batches]),
            np.concatenate([y.numpy() for _, y in batches]))


def red_minus_blue(images):
    return images[..., 0].mean(axis=(1, 2)) - images[..., 2].mean(axis=(1, 2))


def test_batches_have_the_image_size_and_labels_follow_the_file_order(split_frame):
    dataset = make_dataset(split_frame, SIZE, 4, PREPROCESS)
    shapes = [(tuple(x.shape), tuple(y.shape)) for x, y in dataset]
    assert shapes == [((4, SIZE, SIZE, 3), (4,))] * 2 + [((2, SIZE, SIZE, 3), (2,))]
    images, labels = one_pass(dataset)
    np.testing.assert_array_equal(labels, split_frame["label"].to_numpy())
    # Each image stays with its own label: cats are the reddish ones.
    np.testing.assert_array_equal(red_minus_blue(images) > 0, labels == 0)


def test_same_shuffle_seed_same_order_and_images_keep_their_labels(split_frame):
    first, labels = one_pass(make_dataset(split_frame, SIZE, 4, PREPROCESS, shuffle_seed=7))
    again, _ = one_pass(make_dataset(split_frame, SIZE, 4, PREPROCESS, shuffle_seed=7))
    other, _ = one_pass(make_dataset(split_frame, SIZE, 4, PREPROCESS, shuffle_seed=8))
    unshuffled, _ = one_pass(make_dataset(split_frame, SIZE, 4, PREPROCESS))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first, unshuffled)
    np.testing.assert_array_equal(red_minus_blue(first) > 0, labels == 0)


def test_mobilenet_v2_preprocessing_spans_minus_one_to_one(split_frame):
    images, _ = one_pass(make_dataset(split_frame, SIZE, 4, PREPROCESS))
    assert images.min() >= -1.0 and images.max() <= 1.0
    # A stray 1/255 rescale before preprocess_input would squeeze everything near -1.
    assert images.min() < -0.5 and images.max() > 0.5


def augment_params(augment):
    return {"train": {"seed": 1}, "augment": dict(augment)}


def test_augmentation_changes_training_images_and_plain_data_is_stable(split_frame):
    plain = make_dataset(split_frame, SIZE, 4, PREPROCESS)
    plain_images, _ = one_pass(plain)
    np.testing.assert_array_equal(plain_images, one_pass(plain)[0])
    augmented = make_dataset(split_frame, SIZE, 4, PREPROCESS,
                             augment=augmentation(augment_params(AUGMENT)))
    first_epoch, labels = one_pass(augmented)
    second_epoch, _ = one_pass(augmented)
    np.testing.assert_array_equal(labels, split_frame["label"].to_numpy())
    assert not np.allclose(first_epoch, plain_images, atol=1e-3)
    assert not np.allclose(first_epoch, second_epoch, atol=1e-3)  # fresh draws each epoch


def test_zero_augment_params_give_an_identity_pipeline(split_frame):
    augment = augmentation(augment_params(NO_AUGMENT))
    assert augment is None or augment.layers == []
    plain_images, _ = one_pass(make_dataset(split_frame, SIZE, 4, PREPROCESS))
    images, _ = one_pass(make_dataset(split_frame, SIZE, 4, PREPROCESS, augment=augment))
    np.testing.assert_array_equal(images, plain_images)


def test_augmentation_rejects_out_of_range_knobs():
    with pytest.raises(ParamError, match="augment.rotation_degrees"):
        augmentation(augment_params({**AUGMENT, "rotation_degrees": 200}))
    with pytest.raises(ParamError, match="augment.shift_fraction"):
        augmentation(augment_params({**AUGMENT, "shift_fraction": -0.1}))
