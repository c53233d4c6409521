"""Stage split: seeded, stratified, disjoint; test = the validation folder."""
import json

import pandas as pd
import pytest

from stages import split

MANIFEST_COLUMNS = ["path", "class", "split", "sha256"]


def write_manifest(directory, per_class=50, test_per_class=10, classes=("cats", "dogs")):
    rows = []
    for class_name in classes:
        for source_split, count in (("train", per_class), ("validation", test_per_class)):
            for i in range(count):
                path = f"data/raw/{source_split}/{class_name}/{class_name}.{i}.jpg"
                rows.append([path, class_name, source_split, f"sha-{path}"])
    manifest = directory / "data/validated/manifest.csv"
    manifest.parent.mkdir(parents=True)
    pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_csv(manifest, index=False)
    return manifest


@pytest.fixture
def run_split(tmp_path, monkeypatch, write_params):
    """run_split(seed=, val_fraction=, classes=): split.main() in tmp_path; the split files."""
    monkeypatch.chdir(tmp_path)

    def run(seed=42, val_fraction=0.2, classes=("dogs", "cats")):
        write_params(tmp_path, split__seed=seed, split__val_fraction=val_fraction,
                     classes=list(classes))
        split.main()
        return {name: pd.read_csv(tmp_path / f"data/split/{name}.csv")
                for name in ("train", "val", "test")}
    return run


def test_split_is_stratified_disjoint_and_labels_follow_sorted_classes(tmp_path, run_split):
    write_manifest(tmp_path)
    splits = run_split()  # classes listed as dogs, cats: labels still follow the sorted names
    assert splits["val"]["class"].value_counts().to_dict() == {"cats": 10, "dogs": 10}
    assert splits["train"]["class"].value_counts().to_dict() == {"cats": 40, "dogs": 40}
    assert splits["test"]["path"].str.contains("/validation/").all()
    paths = [set(frame["path"]) for frame in splits.values()]
    assert sum(map(len, paths)) == len(set().union(*paths)) == 120
    for frame in splits.values():
        assert list(frame.columns) == ["path", "label", "class"]
        assert (frame["label"] == frame["class"].map({"cats": 0, "dogs": 1})).all()


def test_same_seed_same_split_other_seed_other_split(tmp_path, run_split):
    write_manifest(tmp_path)
    first = run_split(seed=1)["val"]["path"].tolist()
    again = run_split(seed=1)["val"]["path"].tolist()
    other = run_split(seed=2)["val"]["path"].tolist()
    assert first == again
    assert first != other


def test_a_fraction_that_empties_a_split_is_refused(tmp_path, run_split):
    write_manifest(tmp_path, per_class=2)
    with pytest.raises(SystemExit, match="val_fraction 0.1 leaves class 'cats' "
                                         r"\(2 images\) with an empty split"):
        run_split(val_fraction=0.1)


def test_more_classes_are_split_per_class_and_counted_per_split_and_class(tmp_path, run_split):
    classes = ("dogs", "birds", "cats")
    write_manifest(tmp_path, per_class=20, test_per_class=5, classes=classes)
    # An imbalanced class: fewer birds, still a fifth of them in val.
    manifest = tmp_path / "data/validated/manifest.csv"
    rows = pd.read_csv(manifest)
    rows.drop(rows[(rows["class"] == "birds") & (rows["split"] == "train")].index[10:]).to_csv(
        manifest, index=False)
    splits = run_split(classes=classes)
    labels = {"birds": 0, "cats": 1, "dogs": 2}  # the sorted names
    for frame in splits.values():
        assert (frame["label"] == frame["class"].map(labels)).all()
    assert splits["val"]["class"].value_counts().to_dict() == {"birds": 2, "cats": 4, "dogs": 4}
    metrics = json.loads((tmp_path / "reports/split/metrics.json").read_text())
    assert metrics == {"train_images": 40, "train_birds": 8, "train_cats": 16, "train_dogs": 16,
                       "val_images": 10, "val_birds": 2, "val_cats": 4, "val_dogs": 4,
                       "test_images": 15, "test_birds": 5, "test_cats": 5, "test_dogs": 5}
