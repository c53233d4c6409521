"""The check on real data: the frozen-head phase with ImageNet weights learns cats vs dogs.

Wrong preprocessing, wrong or missing weights, or broken labels all land near 50%.
Runs only where the Keras cache already holds the dataset zip and the MobileNetV2 weights
(KERAS_HOME=/path/to/seeded/cache pytest tests/test_real_data.py).
"""
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from catsdogs import params as P
from catsdogs.data import DECODED_DIR, decode_files, save_decoded
from catsdogs.models import keras_cache_dir
from catsdogs.training import head_phase

ROOT = Path(__file__).resolve().parents[1]
ZIP = Path(keras_cache_dir()) / "datasets" / "cats_and_dogs_filtered.zip"
WEIGHTS = (Path(keras_cache_dir()) / "models"
           / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5")
MISSING = [str(path) for path in (ZIP, WEIGHTS) if not path.is_file()]
PER_CLASS = {"train": 300, "val": 100}   # drawn from the zip's train/ and validation/
CLASSES = ["cats", "dogs"]               # labels 0, 1


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
def test_frozen_head_on_imagenet_features_separates_real_cats_and_dogs(tmp_path, monkeypatch):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["model"].update(backbone="mobilenet_v2", weights="imagenet", image_size=160)  # = WEIGHTS
    raw["compare"]["backbones"] = ["mobilenet"]  # anything but model.backbone
    raw["train_head"]["epochs"] = 2
    params = P.parse(raw)
    monkeypatch.chdir(tmp_path)
    # What stages split + decode would write: data/decoded/<split>.npz in split-file order.
    DECODED_DIR.mkdir(parents=True)
    with zipfile.ZipFile(ZIP) as archive:
        for split, source_split in (("train", "train"), ("val", "validation")):
            frame = extract_subset(archive, source_split, PER_CLASS[split], tmp_path / "images")
            images = decode_files(frame["path"], params.model.image_size, name=split)
            save_decoded(DECODED_DIR / f"{split}.npz", images, frame["label"])

    # A relative live dir, as the stages use (training keeps backups under .backups/<live dir>).
    _, summary = head_phase(params, "mobilenet_v2", "live")

    assert summary["val_accuracy"] > 0.90, summary
    assert (tmp_path / "live" / "metrics.json").is_file()
