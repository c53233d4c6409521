"""Split files, the one image decoder, decoded arrays on disk, and the tf.data input
(file order, seeded shuffles per epoch, float32 pixels 0-255 for the model to preprocess,
stateless augmentation)."""
import io

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from catsdogs import params as P
from catsdogs import paths as project_paths
from catsdogs.data import (TrainingData, augmentation, decode_image, eval_dataset, eval_split,
                           train_dataset)
from catsdogs.decoded import DecodedImages, load_decoded, read_split, save_decoded
from conftest import ROOT, decode_files

# ---- read_split ------------------------------------------------------------------------

def test_read_split_reads_the_split_file_in_file_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    project_paths.SPLIT.mkdir(parents=True)
    (project_paths.SPLIT / "val.csv").write_text(
        "path,label,class\nb.jpg,1,dogs\na.jpg,0,NA\n")
    frame = read_split("val")
    assert list(frame["path"]) == ["b.jpg", "a.jpg"]
    assert list(frame["label"]) == [1, 0]
    assert list(frame["class"]) == ["dogs", "NA"]   # a class may be named "NA"


# ---- decode_image ----------------------------------------------------------------------

def png_bytes(tmp_path, name, array, mode=None):
    path = tmp_path / name
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    image.save(path, format="PNG")
    return path.read_bytes()


def variants(tmp_path):
    """(bytes, expected uint8 RGB) of a 12x20 grayscale, RGBA and 16-bit grayscale PNG."""
    gray = np.arange(12 * 20, dtype=np.uint8).reshape(12, 20)
    rgba = np.random.default_rng(0).integers(0, 256, (12, 20, 4), dtype=np.uint8)
    gray16 = gray.astype(np.uint16) * 257           # 8-bit value v is v * 257 in 16 bits
    return {
        "grayscale": (png_bytes(tmp_path, "gray.png", gray), np.stack([gray] * 3, axis=-1)),
        "rgba": (png_bytes(tmp_path, "rgba.png", rgba), rgba[..., :3]),
        "16-bit": (png_bytes(tmp_path, "gray16.png", gray16), np.stack([gray] * 3, axis=-1)),
    }


@pytest.mark.parametrize("kind", ["grayscale", "rgba", "16-bit"])
def test_decode_image_gives_uint8_rgb_whatever_the_file_holds(tmp_path, kind):
    data, expected = variants(tmp_path)[kind]
    if kind == "16-bit":
        assert Image.open(io.BytesIO(data)).mode.startswith("I")  # really a 16-bit file
    image = decode_image(data).numpy()
    assert image.dtype == np.uint8 and image.shape == (12, 20, 3)
    np.testing.assert_allclose(image.astype(int), expected.astype(int), atol=1)


@pytest.mark.parametrize("kind", ["grayscale", "rgba", "16-bit"])
def test_decode_image_with_a_size_gives_a_square_uint8_image(tmp_path, kind):
    data, _ = variants(tmp_path)[kind]
    image = decode_image(data, 16)
    assert image.shape == (16, 16, 3)
    assert image.dtype == tf.uint8
    # Bilinear resize of the full decode, rounded to the nearest value (not truncated).
    resized = tf.image.resize(decode_image(data), [16, 16]).numpy()
    np.testing.assert_array_equal(image.numpy(), np.clip(np.round(resized), 0, 255))


# ---- decode_files, save_decoded, load_decoded -------------------------------------------

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255),
           (255, 0, 255), (10, 20, 30), (200, 100, 50), (128, 128, 128), (0, 0, 0),
           (255, 255, 255), (90, 180, 45)]


@pytest.fixture
def solid_files(tmp_path):
    """Twelve solid-colour PNGs of different sizes, listed in a non-alphabetical order."""
    paths = []
    for i, colour in enumerate(COLOURS):
        path = tmp_path / "images" / f"{(7 * i) % 12:02d}.png"   # names out of list order
        path.parent.mkdir(exist_ok=True)
        size = (10 + i, 24 - i)
        Image.fromarray(np.full((size[1], size[0], 3), colour, dtype=np.uint8)).save(path)
        paths.append(str(path))
    labels = [float(i % 2) for i in range(len(paths))]
    return paths, labels


def test_decode_files_keeps_the_order_given(solid_files):
    paths, _ = solid_files
    images = decode_files(pd.Series(paths), 16)      # the decode stage passes a column
    assert images.shape == (len(paths), 16, 16, 3) and images.dtype == np.uint8
    expected = np.broadcast_to(np.array(COLOURS, dtype=np.uint8)[:, None, None, :],
                               images.shape)
    np.testing.assert_array_equal(images, expected)


def test_saved_decoded_arrays_load_back_unchanged(solid_files, tmp_path, monkeypatch):
    paths, labels = solid_files
    images = decode_files(paths, 16)
    monkeypatch.chdir(tmp_path)
    save_decoded("train", images, pd.Series(labels))
    assert (tmp_path / "data" / "decoded" / "train.images.npy").is_file()
    assert (tmp_path / "data" / "decoded" / "train.labels.npy").is_file()
    loaded_images, loaded_labels = load_decoded("train")
    np.testing.assert_array_equal(loaded_images, images)
    assert loaded_images.dtype == np.uint8
    np.testing.assert_array_equal(loaded_labels, np.array(labels, dtype=np.float32))
    assert loaded_labels.dtype == np.float32
    # Colour i is still at row i, with label i % 2.
    np.testing.assert_array_equal(loaded_images[:][:, 0, 0], np.array(COLOURS, dtype=np.uint8))


def test_load_decoded_refuses_pickled_object_arrays(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    project_paths.DECODED.mkdir(parents=True)
    np.save(project_paths.DECODED / "evil.images.npy", np.array([{"a": 1}, None], dtype=object),
            allow_pickle=True)
    np.save(project_paths.DECODED / "evil.labels.npy", np.zeros(2, dtype=np.float32))
    with pytest.raises(ValueError, match="not uint8"):
        load_decoded("evil")


def test_a_split_not_decoded_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_decoded("val", np.zeros((1, 8, 8, 3), np.uint8), [0.0])
    with pytest.raises(FileNotFoundError, match=r"test\.images\.npy"):
        load_decoded("test")
    with pytest.raises(FileNotFoundError, match=r"test\.images\.npy"):
        eval_split("test", 4)


def test_decode_writes_a_plain_npy_row_by_row(solid_files, tmp_path):
    paths, labels = solid_files
    rows = iter(decode_files(paths, 16))  # a one-pass stream, as validate writes it
    save_decoded("train", rows, labels, folder=tmp_path)
    # Any numpy reads the files, without pickle: the images as decode_files gives them.
    np.testing.assert_array_equal(np.load(tmp_path / "train.images.npy", allow_pickle=False),
                                  decode_files(paths, 16))
    saved_labels = np.load(tmp_path / "train.labels.npy", allow_pickle=False)
    assert saved_labels.dtype == np.float32 and list(saved_labels) == labels


def test_save_decoded_refuses_rows_that_do_not_match_the_labels(tmp_path):
    with pytest.raises(ValueError, match="2 images for 3 labels"):
        save_decoded("val", np.zeros((2, 8, 8, 3), np.uint8), [0.0, 1.0, 0.0], folder=tmp_path)
    with pytest.raises(ValueError, match="row 1"):
        save_decoded("val", [np.zeros((8, 8, 3), np.uint8), np.zeros((4, 4, 3), np.uint8)],
                     [0.0, 1.0], folder=tmp_path)


@pytest.fixture
def on_disk(tmp_path):
    """(in-memory images, the same rows as a DecodedImages read from disk, labels)."""
    images = np.random.default_rng(0).integers(0, 256, (23, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(23, dtype=np.float32) % 2
    save_decoded("train", images, labels, folder=tmp_path)
    return images, DecodedImages(tmp_path / "train.images.npy"), labels


@pytest.mark.parametrize("key", [0, 22, -1, slice(None), slice(5, 12), slice(None, None, 7),
                                 slice(20, 2, -3), slice(30, 40), [3, 1, 3, 22],
                                 np.arange(4, 9), np.array([], int), np.array([[1, 2], [0, 5]])])
def test_rows_read_from_disk_are_the_arrays_rows(on_disk, key):
    images, stored, _ = on_disk
    assert len(stored) == 23 and stored.shape == images.shape
    rows = stored[key]
    assert rows.dtype == np.uint8
    np.testing.assert_array_equal(rows, images[key])


@pytest.mark.parametrize("key", [23, -24, [0, 23]])
def test_rows_out_of_range_are_refused(on_disk, key):
    with pytest.raises(IndexError):
        on_disk[1][key]


def test_batches_from_disk_equal_batches_from_memory(on_disk):
    """The same rows, order and augmentation draws whichever way the images are held."""
    images, stored, labels = on_disk
    augment = augmentation(P.Augment(rotation_degrees=20.0, shift_fraction=0.2,
                                     horizontal_flip=True))
    for epoch in (0, 3):
        memory, disk = (train_dataset(x, labels, 5, augment, 7)
                        for x in (images, stored))
        for a, b in zip(one_pass(memory.epochs(epoch, epoch + 1))[1],
                        one_pass(disk.epochs(epoch, epoch + 1))[1]):
            np.testing.assert_array_equal(a, b)
    batches = [one_pass(eval_dataset(x, labels, 5))[0] for x in (images, stored)]
    assert [x.shape for x, _ in batches[0]] == [x.shape for x, _ in batches[1]]
    for (a, a_labels), (b, b_labels) in zip(*batches):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a_labels, b_labels)


# ---- eval_dataset ----------------------------------------------------------------------

def numbered(count, size=8):
    """Image i is filled with the value 10 * i (unique per image); label i is 100 + i."""
    images = np.stack([np.full((size, size, 3), 10 * i, dtype=np.uint8) for i in range(count)])
    return images, np.arange(100, 100 + count, dtype=np.float32)


def one_pass(dataset):
    batches = [(x.numpy(), y.numpy()) for x, y in dataset]
    return batches, (np.concatenate([x for x, _ in batches]),
                     np.concatenate([y for _, y in batches]))


def ids(images):
    """The number of each image of numbered() (asserting it is still uniform)."""
    flat = images.reshape(len(images), -1)
    assert (flat == flat[:, :1]).all()
    return np.round(flat[:, 0] / 10).astype(int)


def test_eval_dataset_batches_in_file_order_with_labels_aligned():
    images, labels = numbered(10)
    batches, (out, out_labels) = one_pass(eval_dataset(images, labels, 4))
    assert [x.shape[0] for x, _ in batches] == [4, 4, 2]
    assert all(x.dtype == np.float32 for x, _ in batches)
    np.testing.assert_array_equal(ids(out), np.arange(10))
    np.testing.assert_array_equal(out_labels, labels)


def test_eval_dataset_gives_the_pixels_unscaled_for_the_model_to_preprocess():
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    images[0], images[1] = 0, 255
    _, (out, _) = one_pass(eval_dataset(images, np.zeros(3, np.float32), 2))
    # Every model preprocesses inside itself: a scaling here would be applied twice.
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, images.astype(np.float32))


def test_eval_split_batches_a_decoded_split_in_file_order(tmp_path, monkeypatch):
    images, labels = numbered(7)
    monkeypatch.chdir(tmp_path)
    save_decoded("val", images, labels)
    batches, split_labels = eval_split("val", 3)
    np.testing.assert_array_equal(split_labels, labels)
    sizes = [x.shape[0] for x, _ in batches]
    assert sizes == [3, 3, 1]
    _, (out, out_labels) = one_pass(batches)
    np.testing.assert_array_equal(ids(out), np.arange(7))   # file order
    np.testing.assert_array_equal(out_labels, labels)


# ---- train_dataset without augmentation ------------------------------------------------

def order_of(dataset):
    """The image numbers of one pass, checking each image carries its own label."""
    batches, (out, labels) = one_pass(dataset)
    numbers = ids(out)
    np.testing.assert_array_equal(labels, 100 + numbers)
    return numbers, [x.shape[0] for x, _ in batches]


def test_train_dataset_yields_each_image_once_with_its_label():
    images, labels = numbered(13)
    train = train_dataset(images, labels, 4, None, 1)
    assert isinstance(train, TrainingData)
    assert train.images == 13
    np.testing.assert_array_equal(train.labels, labels)  # file order, for class weights
    assert train.epoch.numpy() == 0 and not train.epoch.trainable
    assert train.steps == 4 and train.epochs(0, 1).cardinality().numpy() == 4
    assert train.epochs(2, 5).cardinality().numpy() == 12
    order, sizes = order_of(train.epochs(0, 1))
    assert sizes == [4, 4, 4, 1]
    assert sorted(order) == list(range(13))
    assert list(order) != list(range(13))          # shuffled


def test_train_dataset_order_is_a_function_of_seed_and_epoch():
    images, labels = numbered(13)
    train = train_dataset(images, labels, 4, None, 1)
    first, _ = order_of(train.epochs(0, 1))
    again, _ = order_of(train.epochs(0, 1))
    np.testing.assert_array_equal(first, again)     # same (seed, epoch): same order
    next_epoch, _ = order_of(train.epochs(1, 2))
    assert list(next_epoch) != list(first)
    assert sorted(next_epoch) == list(range(13))
    other_seed, _ = order_of(train_dataset(images, labels, 4, None, 2).epochs(0, 1))
    assert list(other_seed) != list(first)
    # A fresh pipeline starting at the same epoch, as after a resume: the same order.
    fresh = train_dataset(images, labels, 4, None, 1)
    np.testing.assert_array_equal(order_of(fresh.epochs(1, 2))[0], next_epoch)


def test_several_epochs_are_those_epochs_one_after_the_other():
    """fit takes one dataset of the epochs left (a resumed run: from its first epoch on)."""
    images, labels = numbered(13)
    augment = augmentation(P.Augment(rotation_degrees=20.0, shift_fraction=0.2,
                                     horizontal_flip=True))
    train = train_dataset(images, labels, 4, augment, 1)
    together, _ = one_pass(train.epochs(2, 5))
    one_by_one = [batch for epoch in (2, 3, 4)
                  for batch in one_pass(train.epochs(epoch, epoch + 1))[0]]
    assert len(together) == len(one_by_one) == 12
    for (x1, y1), (x2, y2) in zip(together, one_by_one):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_train_dataset_without_augmentation_gives_the_pixels_unscaled():
    images, labels = numbered(4)
    images[3] = 255
    _, (out, out_labels) = one_pass(train_dataset(images, labels, 2, None, 0).epochs(0, 1))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, images[(out_labels - 100).astype(int)].astype(np.float32))


# ---- Augmentation ----------------------------------------------------------------------

def augment_from(**knobs):
    return augmentation(P.Augment(**{"rotation_degrees": 0.0, "shift_fraction": 0.0,
                                     "horizontal_flip": False, **knobs}))


def test_augmentation_is_none_when_every_part_is_off_and_built_otherwise():
    assert augment_from(rotation_degrees=0, shift_fraction=0, horizontal_flip=False) is None
    for knobs in ({"rotation_degrees": 10, "shift_fraction": 0, "horizontal_flip": False},
                  {"rotation_degrees": 0, "shift_fraction": 0.1, "horizontal_flip": False},
                  {"rotation_degrees": 0, "shift_fraction": 0, "horizontal_flip": True}):
        assert callable(augment_from(**knobs)), knobs
    # The committed params' augment section, as the stages pass it: augmentation on.
    committed = P.load(ROOT / "params.yaml").augment
    assert callable(augmentation(committed))


def noise_batch(count=32, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.uniform(0, 255, (count, size, size, 3)).astype(np.float32))


def seed_tensor(a, b=0):
    return tf.constant([a, b], dtype=tf.int64)


def test_flip_only_gives_the_image_or_its_exact_mirror_and_both_occur():
    augment = augment_from(rotation_degrees=0, shift_fraction=0, horizontal_flip=True)
    images = noise_batch()
    out = augment(images, seed_tensor(3)).numpy()
    source = images.numpy()
    same = [np.allclose(o, s, atol=1e-3) for o, s in zip(out, source)]
    mirrored = [np.allclose(o, s[:, ::-1], atol=1e-3) for o, s in zip(out, source)]
    assert all(a or b for a, b in zip(same, mirrored))
    assert any(same) and any(mirrored)


def test_shift_only_keeps_a_constant_image_constant_and_moves_a_gradient():
    augment = augment_from(rotation_degrees=0, shift_fraction=0.3, horizontal_flip=False)
    constant = tf.fill([8, 16, 16, 3], 77.0)
    out = augment(constant, seed_tensor(5)).numpy()
    np.testing.assert_allclose(out, 77.0, atol=1e-3)      # reflected borders, no fill value
    ramp = np.linspace(0, 255, 16, dtype=np.float32)
    gradient = np.broadcast_to((ramp[None, :, None] + ramp[:, None, None]) / 2,
                               (16, 16, 3))
    batch = tf.constant(np.stack([gradient] * 8))
    moved = augment(batch, seed_tensor(5)).numpy()
    changed = [not np.allclose(m, gradient, atol=1e-2) for m in moved]
    assert sum(changed) >= 6          # a zero draw on both axes is vanishingly rare


def test_augmentation_is_a_function_of_the_seed():
    augment = augment_from(rotation_degrees=30, shift_fraction=0.2, horizontal_flip=True)
    images = noise_batch(8)
    first = augment(images, seed_tensor(1, 2)).numpy()
    np.testing.assert_array_equal(first, augment(images, seed_tensor(1, 2)).numpy())
    assert not np.allclose(first, augment(images, seed_tensor(1, 3)).numpy(), atol=1e-3)
    assert not np.allclose(first, augment(images, seed_tensor(2, 2)).numpy(), atol=1e-3)


def test_extreme_knobs_run_keep_shape_dtype_and_the_value_range():
    augment = augment_from(rotation_degrees=180, shift_fraction=0.5, horizontal_flip=True)
    images = noise_batch(16, size=24, seed=4) * (200 / 255) + 20     # values in [20, 220]
    out = augment(images, seed_tensor(9))
    assert out.shape == images.shape and out.dtype == tf.float32
    out = out.numpy()
    source = images.numpy()
    assert out.min() >= source.min() - 1e-3 and out.max() <= source.max() + 1e-3
    assert not np.allclose(out, source, atol=1e-3)


# ---- train_dataset with augmentation ---------------------------------------------------

def test_augmented_training_batches_repeat_exactly_for_the_same_seed_and_epoch():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    labels = np.arange(40, dtype=np.float32)
    augment = augment_from(rotation_degrees=20, shift_fraction=0.2, horizontal_flip=True)
    train = train_dataset(images, labels, 4, augment, 7)
    dataset = train.epochs(3, 4)
    first, (first_images, first_labels) = one_pass(dataset)   # ten batches, mapped in parallel
    second, _ = one_pass(dataset)
    assert len(first) == len(second) == 10
    for (x1, y1), (x2, y2) in zip(first, second):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    # Also from a fresh pipeline (a resumed run) ...
    resumed = train_dataset(images, labels, 4, augment, 7)
    fresh, _ = one_pass(resumed.epochs(3, 4))
    for (x1, _), (x2, _) in zip(first, fresh):
        np.testing.assert_array_equal(x1, x2)
    # ... while the images really are augmented, and differ in another epoch.
    assert sorted(first_labels) == list(range(40))
    plain = images[first_labels.astype(int)].astype(np.float32)
    assert not np.allclose(first_images, plain, atol=1e-3)
    _, (other_epoch, _) = one_pass(train.epochs(4, 5))
    assert not np.allclose(other_epoch, first_images, atol=1e-3)


def test_each_training_batch_and_epoch_gets_its_own_augmentation_draws():
    # Sixteen copies of one asymmetric image, one per batch: were the per-batch seed the
    # same for every batch, every batch would be flipped alike.
    ramp = np.linspace(0, 255, 8).astype(np.uint8)
    images = np.broadcast_to(ramp[None, None, :, None], (16, 8, 8, 3)).copy()
    augment = augment_from(rotation_degrees=0, shift_fraction=0, horizontal_flip=True)
    train = train_dataset(images, np.zeros(16, np.float32), 1, augment, 0)
    image = images[0].astype(np.float32)

    def flips(epoch):
        _, (out, _) = one_pass(train.epochs(epoch, epoch + 1))
        flipped = [np.allclose(o, image[:, ::-1], atol=1e-3) for o in out]
        kept = [np.allclose(o, image, atol=1e-3) for o in out]
        assert all(a or b for a, b in zip(flipped, kept))
        return flipped

    first = flips(0)
    assert any(first) and not all(first)
    # ... and new draws each epoch (the images are identical, so the shuffle cannot matter).
    assert flips(1) != first
