"""Stage decode on a tiny generated dataset: it copies validate's decoded images into split
order, and they are the images the training decoder gives for each split's files; a
validated image that is not the manifest's, one of another size, or a damaged images file
stops it by name."""
import io
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from catsdogs import paths
from catsdogs.decoded import load_decoded, read_split
from conftest import decode_files
from stages import decode, fetch, split, validate


@pytest.fixture
def decoded(tmp_path, tiny_dataset, write_params, monkeypatch):
    """fetch -> validate -> split -> decode run in tmp_path; returns the image size."""
    raw = write_params(tmp_path, tiny_dataset)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # validate sets it
    for stage in (fetch, validate, split, decode):
        stage.main()
    return raw["model"]["image_size"]


def test_each_split_holds_the_images_of_its_files_in_order(decoded):
    total = 0
    for name in paths.SPLITS:
        frame = read_split(name)
        images, labels = load_decoded(name)
        # Decoding each file now, in the split file's order, gives the same bytes.
        np.testing.assert_array_equal(images[:], decode_files(frame["path"], decoded))
        np.testing.assert_array_equal(labels, frame["label"].to_numpy("float32"))
        total += len(frame)
    assert total == len(pd.read_csv(paths.MANIFEST))  # every accepted image, once


def rewrite_validated(change):
    """The validated images file, its array passed through change(array)."""
    array = np.load(decode.VALIDATED_IMAGES)
    np.save(decode.VALIDATED_IMAGES, change(array))


def test_a_validated_image_that_is_not_the_manifests_stops_decode(decoded):
    manifest = pd.read_csv(paths.MANIFEST)
    row = len(manifest) - 1

    def tamper(array):
        array[row, 0, 0, 0] ^= 1  # one bit of one pixel
        return array

    rewrite_validated(tamper)
    with pytest.raises(SystemExit, match=f"image {row + 1} of data/validated/manifest.images"
                       rf"\.npy is not the one data/validated/manifest.csv row {row + 1} "
                       rf"names \({manifest['path'][row]}\); rerun"):
        decode.main()
    assert not paths.DECODED.exists()  # no partial result left


def test_validated_images_of_another_size_stop_decode(decoded):
    rewrite_validated(lambda array: array[:, :-1, :-1])
    with pytest.raises(SystemExit, match=rf"holds \(\d+, {decoded - 1}, {decoded - 1}, 3\), "
                       rf"not \d+ images of {decoded}x{decoded}x3"):
        decode.main()


def test_a_split_file_not_in_the_manifest_stops_decode(decoded):
    test_csv = paths.SPLIT / "test.csv"
    frame = pd.read_csv(test_csv, dtype=str)
    frame.loc[0, "path"] = "data/raw/validation/cats/elsewhere.jpg"
    frame.to_csv(test_csv, index=False)
    with pytest.raises(SystemExit, match="elsewhere.jpg .data/split/test.csv. is not in "
                       "data/validated/manifest.csv; rerun python -m stages.split"):
        decode.main()


class Planted:
    """Unpickling it would write a file: a pickled images file must never be unpickled."""

    def __reduce__(self):
        return (open, ("unpickled", "w"))


def saved(array):
    """The bytes np.save writes for array (an object array: pickled after the header)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


DAMAGED = {  # what the file holds -> what the message must say about it
    "truncated": (lambda data: data[:len(data) // 2], r"[\d,]+ bytes, too few for its header's "
                                                      r"\(\d+, \d+, \d+, 3\) array"),
    "empty": (lambda data: b"", "EOF: reading magic string"),
    "text": (lambda data: b"image,label\n1,cats\n", "the magic string is not correct"),
    "object array": (lambda data: saved(np.array([Planted()], dtype=object)),
                     r"object \(1,\) is not uint8 N x S x S x 3"),
    "pickle": (lambda data: pickle.dumps(np.zeros((2, 2, 2, 3), np.uint8)),
               "the magic string is not correct"),
}


@pytest.mark.parametrize("damage", DAMAGED)
def test_a_damaged_validated_images_file_is_named_and_nothing_else_is_touched(decoded, damage):
    make, problem = DAMAGED[damage]
    kept = {path: path.read_bytes() for path in [paths.MANIFEST, *sorted(paths.SPLIT.glob("*"))]}
    decode.VALIDATED_IMAGES.write_bytes(make(decode.VALIDATED_IMAGES.read_bytes()))
    with pytest.raises(SystemExit) as error:
        decode.main()
    message = str(error.value)
    assert re.fullmatch(rf"decode: data/validated/manifest\.images\.npy: {problem}.* "
                        r"\(damaged\?\); rerun python -m stages\.validate", message), message
    assert "\n" not in message
    assert not paths.DECODED.exists()  # no partial result
    assert {path: path.read_bytes() for path in kept} == kept  # the manifest and split files
    assert not Path("unpickled").exists()
