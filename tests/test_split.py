"""Stage split: seeded, stratified, disjoint by content; test = the validation folder."""
import pandas as pd
import pytest
import yaml

from catsdogs import params as P
from conftest import tiny_params
from stages import split

MANIFEST_COLUMNS = ["path", "class", "split", "sha256"]


def write_manifest(directory, per_class=50, test_per_class=10):
    rows = []
    for class_name in ("cats", "dogs"):
        for source_split, count in (("train", per_class), ("validation", test_per_class)):
            for i in range(count):
                path = f"data/raw/{source_split}/{class_name}/{class_name}.{i}.jpg"
                rows.append([path, class_name, source_split, f"sha-{path}"])
    manifest = directory / "data/validated/manifest.csv"
    manifest.parent.mkdir(parents=True)
    pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_csv(manifest, index=False)
    return manifest


def run_split(directory, monkeypatch, seed=42, val_fraction=0.2, classes=("dogs", "cats")):
    params = tiny_params("unused")
    params["split"].update(val_fraction=val_fraction, seed=seed)
    params["validate"]["classes"] = list(classes)
    (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(directory)
    split.main()
    return {name: pd.read_csv(directory / f"data/split/{name}.csv") for name in ("train", "val", "test")}


def test_split_is_stratified_disjoint_and_labels_follow_sorted_classes(tmp_path, monkeypatch):
    write_manifest(tmp_path)
    splits = run_split(tmp_path, monkeypatch)
    assert splits["val"]["class"].value_counts().to_dict() == {"cats": 10, "dogs": 10}
    assert splits["train"]["class"].value_counts().to_dict() == {"cats": 40, "dogs": 40}
    assert splits["test"]["path"].str.contains("/validation/").all()
    paths = [set(frame["path"]) for frame in splits.values()]
    assert sum(map(len, paths)) == len(set().union(*paths)) == 120
    for frame in splits.values():
        assert (frame["label"] == frame["class"].map({"cats": 0, "dogs": 1})).all()


def test_same_seed_same_split_other_seed_other_split(tmp_path, monkeypatch):
    write_manifest(tmp_path)
    first = run_split(tmp_path, monkeypatch, seed=1)["val"]["path"].tolist()
    again = run_split(tmp_path, monkeypatch, seed=1)["val"]["path"].tolist()
    other = run_split(tmp_path, monkeypatch, seed=2)["val"]["path"].tolist()
    assert first == again
    assert first != other


def test_the_same_content_in_two_splits_is_refused(tmp_path, monkeypatch):
    manifest = write_manifest(tmp_path)
    frame = pd.read_csv(manifest)
    frame.loc[frame["split"] == "validation", "sha256"] = frame["sha256"].iloc[0]
    frame.to_csv(manifest, index=False)
    with pytest.raises(SystemExit, match="same content"):
        run_split(tmp_path, monkeypatch)


def test_a_fraction_that_empties_a_split_is_refused(tmp_path, monkeypatch):
    write_manifest(tmp_path, per_class=2)
    with pytest.raises(SystemExit, match="empty split"):
        run_split(tmp_path, monkeypatch, val_fraction=0.1)


def test_more_than_two_classes_are_refused_by_the_binary_classifier(tmp_path, monkeypatch):
    write_manifest(tmp_path)
    with pytest.raises(P.ParamError, match="'validate.classes'"):
        run_split(tmp_path, monkeypatch, classes=("cats", "dogs", "birds"))


def test_a_missing_manifest_says_to_run_validate(tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match="manifest.csv does not exist; run the validate stage"):
        run_split(tmp_path, monkeypatch)
