"""DVC sees every change of what the data stages read, by content (issue 12, classes 1 and 4):
new pixels under the same names, images added to or removed from a local source."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from catsdogs.data import decode_image
from conftest import CLASS_TINT, dvc, write_image

pytestmark = pytest.mark.slow

DATA_STAGES = ["fetch", "validate", "split", "decode"]


def ran(output):
    return [stage for stage in DATA_STAGES if f"Running stage '{stage}'" in output]


def decoded_row(project, relative):
    """The decoded pixels data/decoded/ holds for data/raw/<relative>, found via the split CSVs."""
    for split in ("train", "val", "test"):
        frame = pd.read_csv(project / f"data/split/{split}.csv", dtype=str, keep_default_na=False)
        rows = np.flatnonzero(frame["path"] == f"data/raw/{relative}")
        if len(rows):
            return np.load(project / f"data/decoded/{split}.images.npy")[rows[0]]
    raise AssertionError(f"{relative} is in no split")


def expected_pixels(file, size):
    return decode_image(file.read_bytes(), size).numpy()


def repaint(path, tint, seed):
    """New pixels under the same name (and the same size, so only the content differs)."""
    size = Image.open(path).size
    write_image(path, tint, np.random.default_rng(seed), size=size)


def test_new_pixels_and_added_or_removed_images_are_seen_and_rerun(project, tiny_dataset):
    size = 32  # tiny_params' model.image_size
    first = dvc(project, "repro", "decode")
    assert ran(first) == DATA_STAGES
    image = "train/cats/cat.0.jpg"
    before = decoded_row(project, image)

    # 1. The local source repainted in place: fetch depends on fetch.path, by content.
    repaint(tiny_dataset / image, CLASS_TINT["dogs"], seed=99)
    assert "fetch" in dvc(project, "status", "dvc.yaml")
    second = dvc(project, "repro", "decode")
    assert ran(second) == DATA_STAGES
    after = decoded_row(project, image)
    assert not np.array_equal(after, before)
    assert np.array_equal(after, expected_pixels(tiny_dataset / image, size))

    # 2. data/raw repainted behind DVC's back (say, by hand): fetch's output changed, and
    # validate depends on data/raw (decode on what validate and split wrote): nothing
    # downstream is called up to date.
    repaint(project / "data/raw" / image, CLASS_TINT["cats"], seed=7)
    status = dvc(project, "status", "dvc.yaml")
    assert "fetch:" in status and "validate:" in status and "modified" in status
    dvc(project, "repro", "decode")  # fetch restores data/raw from the source
    assert np.array_equal(decoded_row(project, image),
                          expected_pixels(tiny_dataset / image, size))

    # 3. An image added to the source, then one removed: each is a change fetch reruns for.
    added = tiny_dataset / "train/dogs/dog.100.jpg"
    write_image(added, CLASS_TINT["dogs"], np.random.default_rng(5))
    assert "fetch" in dvc(project, "status", "dvc.yaml")
    dvc(project, "repro", "decode")
    assert (project / "data/raw/train/dogs/dog.100.jpg").read_bytes() == added.read_bytes()
    added.unlink()
    assert "fetch" in dvc(project, "status", "dvc.yaml")
    dvc(project, "repro", "decode")
    assert not (project / "data/raw/train/dogs/dog.100.jpg").exists()
    assert "up to date" in dvc(project, "status", "decode")
