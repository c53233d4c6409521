"""The check on real data: a frozen MobileNetV2 (ImageNet weights) and a new head, trained
with the library as stage train_head does, learns cats vs dogs.

Wrong preprocessing, wrong or missing weights, or broken labels all land near 50%.
Runs only where the Keras cache already holds the dataset zip and the MobileNetV2 weights
(KERAS_HOME=/path/to/seeded/cache pytest tests/test_real_data.py).
"""
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from catsdogs import params as P
from catsdogs import paths
from catsdogs.data import augmentation, eval_split, train_dataset
from catsdogs.decoded import load_decoded, save_decoded
from catsdogs.models import (BACKBONES, build_classifier, compile_classifier, find_base,
                             seed_everything)
from catsdogs.training import fit
from conftest import decode_files

pytestmark = pytest.mark.real_data

BACKBONE, SIZE = "mobilenet_v2", 160
ZIP = paths.keras_cache() / "datasets" / "cats_and_dogs_filtered.zip"
WEIGHTS = paths.keras_cache() / "models" / BACKBONES[BACKBONE].weights_file.format(size=SIZE)
MISSING = [str(path) for path in (ZIP, WEIGHTS) if not path.is_file()]
PER_CLASS = {"train": 300, "val": 100}   # drawn from the zip's train/ and validation/
CLASSES = ["cats", "dogs"]               # labels 0, 1
EPOCHS = 2


def extract_subset(archive, source_split, count, destination):
    """The first `count` images per class by file number: a fixed, stratified choice."""
    rows = []
    for label, class_name in enumerate(CLASSES):
        pattern = re.compile(rf"cats_and_dogs_filtered/{source_split}/{class_name}/\w+\.(\d+)\.jpg$")
        members = sorted((int(m.group(1)), name) for name in archive.namelist()
                         if (m := pattern.match(name)))[:count]
        assert len(members) == count, f"{ZIP}: too few {source_split}/{class_name} images"
        for _, name in members:
            path = destination / source_split / class_name / Path(name).name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(archive.read(name))
            rows.append([str(path.relative_to(destination.parent)), label, class_name])
    return pd.DataFrame(rows, columns=["path", "label", "class"])


@pytest.mark.skipif(bool(MISSING), reason=f"real data not in the Keras cache "
                    f"(set KERAS_HOME to a seeded cache); missing: {', '.join(MISSING)}")
def test_frozen_head_on_imagenet_features_separates_real_cats_and_dogs(
        tmp_path, monkeypatch, write_params):
    monkeypatch.chdir(tmp_path)
    # The committed recipe (batch size, augmentation, dropout, learning rate) at the weights'
    # size; params.yaml in the working folder, where the resume backup reads it.
    write_params(tmp_path, model__backbone=BACKBONE, model__weights="imagenet",
                 model__image_size=SIZE, train__batch_size=32, train_head__epochs=EPOCHS)
    p = P.load()
    assert p.model.image_size == SIZE and p.model.weights == "imagenet"
    # What stages split + decode would write: data/decoded/<split>.images.npy and
    # .labels.npy, in split-file order.
    with zipfile.ZipFile(ZIP) as archive:
        for split, source_split in (("train", "train"), ("val", "validation")):
            frame = extract_subset(archive, source_split, PER_CLASS[split], tmp_path / "images")
            save_decoded(split, decode_files(frame["path"], SIZE), frame["label"])

    seed = p.train.seed
    seed_everything(seed)
    val = eval_split("val", p.train.batch_size)
    val_labels = val[1]
    assert len(val_labels) == 2 * PER_CLASS["val"]
    model = build_classifier(BACKBONE, SIZE, "imagenet", p.train_head.dropout, seed, 2)
    assert not find_base(model).trainable
    compile_classifier(model, p.train_head.learning_rate)
    augment = augmentation(p.augment)
    train = train_dataset(*load_decoded("train"), p.train.batch_size, augment, seed)
    assert train.images == 2 * PER_CLASS["train"]
    # A relative live dir, as the stages use (training keeps backups under .backups/<live dir>).
    summary = fit(model, train, val, EPOCHS, seed, "live")

    assert summary["val_accuracy"] > 0.90, summary
    assert summary["resumed_after_epoch"] == 0
    assert (tmp_path / "live" / "metrics.json").is_file()
