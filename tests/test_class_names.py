"""Class names that look like numbers, booleans or missing values keep their labels through
every CSV: fetch -> validate -> split -> decode, and a split file that disagrees with
params.classes stops decode naming the file and the row.
"""
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from catsdogs import paths
from catsdogs.decoded import load_decoded, read_split
from conftest import write_image
from stages import decode, fetch, split, validate
from test_fetch_safety import assert_accounted as assert_fetch_accounted
from test_fetch_safety import source_files
from test_validate_safety import assert_accounted, entries

# The first class (sorted) reddish, the second bluish, then greenish and yellowish.
TINTS = [(200, 60, 60), (60, 60, 200), (60, 200, 60), (200, 200, 60)]
PER_SPLIT = {"train": 5, "validation": 2}


def write_params_quoted(directory, write_params, source, classes):
    """tiny params with these classes, written with the class names quoted (JSON is YAML),
    so 1e3 or true in params.yaml mean the folder names, not a number or a bool."""
    raw = write_params(directory, source, validate__min_images_per_class=2,
                       split__val_fraction=0.4)
    rest = {key: value for key, value in raw.items() if key != "classes"}
    (directory / "params.yaml").write_text(f"classes: {json.dumps(classes)}\n" + yaml.safe_dump(
        rest, sort_keys=False, allow_unicode=True))


@pytest.mark.parametrize("classes", [["007", "True"], ["NA", "null"], ["1", "1e3"],
                                     ["nan", "false"], ["2", "10", "1", "0"]], ids="/".join)
def test_class_names_that_look_like_values_keep_their_labels(tmp_path, monkeypatch,
                                                             write_params, classes):
    source = tmp_path / "source"
    rng = np.random.default_rng(0)
    for split_name, count in PER_SPLIT.items():
        for name, tint in zip(sorted(classes), TINTS):
            for i in range(count):
                write_image(source / split_name / name / f"{i}.jpg", tint, rng)
    work = tmp_path / "work"
    work.mkdir()
    write_params_quoted(work, write_params, source, classes)
    monkeypatch.chdir(work)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # validate sets it
    fetch.main()
    validate.main()
    split.main()
    decode.main()

    # Every file accounted for: source = copied + left out; copied = accepted + quarantined.
    assert_fetch_accounted(work, source_files(source))
    assert_accounted(work, entries(work))
    manifest = pd.read_csv(paths.MANIFEST, dtype=str, keep_default_na=False)
    assert len(manifest) == len(source_files(source))  # nothing lost on the way
    assert sorted(set(manifest["class"])) == sorted(classes)

    labels = {name: label for label, name in enumerate(sorted(classes))}
    total = 0
    for split_name in paths.SPLITS:
        frame = read_split(split_name, classes)
        folders = frame["path"].str.split("/").str[3]  # data/raw/<split>/<class>/<file>
        assert list(frame["class"]) == list(folders)
        assert list(frame["label"]) == [labels[name] for name in folders]
        assert frame["label"].dtype.kind == "i"
        images, decoded_labels = load_decoded(split_name)
        assert list(decoded_labels) == list(frame["label"])
        # The decoded images are the class's: each nearest its label's tint.
        colours = images[:].mean(axis=(1, 2))  # all rows, read from disk
        nearest = np.abs(colours[:, None] - np.array(TINTS[:len(classes)])).sum(-1).argmin(1)
        assert list(nearest) == list(frame["label"])
        total += len(frame)
    assert total == len(manifest)
    metrics = json.loads((work / "reports/split/metrics.json").read_text())
    assert metrics["test_images"] + metrics["train_images"] + metrics["val_images"] == total


def write_split_files(rows):
    paths.SPLIT.mkdir(parents=True, exist_ok=True)
    for split_name in paths.SPLITS:
        (paths.SPLIT / f"{split_name}.csv").write_text("path,label,class\n" + "".join(
            f"{path},{label},{name}\n" for path, label, name in rows))


@pytest.mark.parametrize("bad_row, problem", [
    (("data/raw/train/birds/b.jpg", "1", "birds"),
     "class 'birds' is not in classes ['007', 'True']"),
    (("data/raw/train/True/t.jpg", "0", "True"), "label '0', but class 'True' has label 1"),
    (("data/raw/train/007/x.jpg", "", "007"), "label '', but class '007' has label 0"),
])
def test_a_split_file_that_disagrees_with_classes_is_named_with_its_row(
        tmp_path, monkeypatch, write_params, bad_row, problem):
    monkeypatch.chdir(tmp_path)
    write_params_quoted(tmp_path, write_params, "unused", ["007", "True"])
    write_split_files([("data/raw/train/007/a.jpg", "0", "007"),
                       ("data/raw/train/True/b.jpg", "1", "True"), bad_row])
    expected = f"data/split/train.csv row 3 ({bad_row[0]}): {problem}; rerun python -m stages.split"
    with pytest.raises(SystemExit) as failure:
        decode.main()
    assert str(failure.value) == expected
    assert not paths.DECODED.exists()


def test_a_label_that_is_not_a_number_is_named_without_classes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_split_files([("data/raw/train/007/a.jpg", "0", "007"),
                       ("data/raw/train/True/b.jpg", "True", "True")])
    with pytest.raises(SystemExit, match=r"^data/split/val\.csv row 2 \(data/raw/train/True/"
                                         r"b\.jpg\): label 'True' is not a whole number"):
        read_split("val")


def test_split_names_the_manifest_row_of_a_class_not_in_params(tmp_path, monkeypatch,
                                                               write_params):
    monkeypatch.chdir(tmp_path)
    write_params_quoted(tmp_path, write_params, "unused", ["007", "True"])
    paths.MANIFEST.parent.mkdir(parents=True)
    paths.MANIFEST.write_text("path,class,split\ndata/raw/train/007/a.jpg,007,train\n"
                              "data/raw/train/7/b.jpg,7,train\n")
    with pytest.raises(SystemExit) as failure:
        split.main()
    assert str(failure.value).startswith(
        "split: data/validated/manifest.csv row 2 (data/raw/train/7/b.jpg): class '7'")
    assert not paths.SPLIT.exists()
