"""Stage validate on tiny generated image folders: quarantine reasons, outputs, fatal checks.

validate is the one accept/reject step: fetch copies every file of the dataset folder, so
files outside a split or class folder reach validate and are quarantined here.
"""
import json
import os
import tempfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from catsdogs import params, scan
from conftest import decode_files
from stages import validate

SIDE = 40

# Expected quarantine: path -> reason fragments that must all appear.
QUARANTINED = {
    # Pillow cannot read its size, so TensorFlow is not asked to decode it.
    "data/raw/train/cats/corrupt.jpg": ["unreadable by Pillow"],
    "data/raw/train/dogs/truncated.jpg": ["not decodable by TensorFlow"],
    "data/raw/train/cats/tiny.jpg": ["too small (16x16 px; validate.min_side_px is 32)"],
    # One rule on the shorter side catches either side.
    "data/raw/train/cats/wide.jpg": ["too small (64x16 px; validate.min_side_px is 32)"],
    "data/raw/train/dogs/tall.jpg": ["too small (16x64 px; validate.min_side_px is 32)"],
    "data/raw/train/dogs/anim.gif": ["format GIF not allowed (validate.formats is JPEG, PNG)"],
    "data/raw/train/birds/b0.jpg": ["unknown class 'birds'"],
    # train/ sorts before validation/, so the validation copy is the later one.
    "data/raw/validation/cats/dup.jpg": ["duplicate of data/raw/train/cats/c0.jpg"],
    # Copied by fetch from the dataset folder, judged here.
    "data/raw/README.txt": ["not in a split folder", "unreadable by Pillow"],
    "data/raw/train/loose.jpg": ["not in a class folder"],
    "data/raw/test/cats/t0.jpg": ["unknown split 'test'"],
}
ACCEPTED_COUNTS = {"train_cats": 3, "train_dogs": 3, "validation_cats": 2, "validation_dogs": 2}


def save_image(path, shade, size=SIDE, fmt=None):
    """A distinct solid-colour image per shade, so no two files are accidentally equal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    size = size if isinstance(size, tuple) else (size, size)
    Image.new("RGB", size, (shade, 255 - shade, (shade * 7) % 256)).save(path, format=fmt)


def build_project(root, write_params, **changes):
    """The standard raw tree, and params (min_images_per_class 2, then `changes`)."""
    raw = root / "data" / "raw"
    shades = iter(range(10, 250, 9))
    for name in ["c0.jpg", "c1.jpg", "c2.png"]:
        save_image(raw / "train" / "cats" / name, next(shades))
    for name in ["d0.jpg", "d1.png", "d2.jpg"]:
        save_image(raw / "train" / "dogs" / name, next(shades))
    for split, cls in [("validation", "cats"), ("validation", "dogs")]:
        for i in range(2):
            save_image(raw / split / cls / f"{cls[0]}{i}.jpg", next(shades))
    (raw / "train" / "cats" / "corrupt.jpg").write_bytes(os.urandom(2048))
    save_image(raw / "train" / "dogs" / "whole.jpg", next(shades))
    whole = (raw / "train" / "dogs" / "whole.jpg").read_bytes()
    (raw / "train" / "dogs" / "whole.jpg").unlink()
    (raw / "train" / "dogs" / "truncated.jpg").write_bytes(whole[:-10])  # the header survives
    save_image(raw / "train" / "cats" / "tiny.jpg", next(shades), size=16)
    save_image(raw / "train" / "cats" / "wide.jpg", next(shades), size=(64, 16))
    save_image(raw / "train" / "dogs" / "tall.jpg", next(shades), size=(16, 64))
    save_image(raw / "train" / "dogs" / "anim.gif", next(shades), fmt="GIF")
    save_image(raw / "train" / "birds" / "b0.jpg", next(shades))
    (raw / "validation" / "cats" / "dup.jpg").write_bytes((raw / "train/cats/c0.jpg").read_bytes())
    (raw / "README.txt").write_text("the dataset\n")
    save_image(raw / "train" / "loose.jpg", next(shades))
    save_image(raw / "test" / "cats" / "t0.jpg", next(shades))
    write_params(root, **{"validate__min_images_per_class": 2, **changes})
    return raw


def snapshot(raw):
    return {p.as_posix(): p.read_bytes() for p in sorted(raw.rglob("*")) if p.is_file()}


def run_stage(root):
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        # validate switches Pillow's bomb guard off for its own process; keep it on for the
        # other tests in this one.
        patch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
        validate.main()


@pytest.fixture(scope="module")
def project(tmp_path_factory, write_params):
    """One stage run on the standard tree, shared by the read-only checks below."""
    root = tmp_path_factory.mktemp("project")
    raw = build_project(root, write_params)
    before = snapshot(raw)
    run_stage(root)
    return root, raw, before


def read_quarantine(root):
    return pd.read_csv(root / "reports/validate/quarantine.csv", keep_default_na=False)


def test_quarantines_each_bad_file_with_its_reason(project):
    root, _, _ = project
    quarantine = read_quarantine(root)
    reasons = dict(zip(quarantine["path"], quarantine["reason"]))
    assert sorted(reasons) == sorted(QUARANTINED)
    for path, fragments in QUARANTINED.items():
        for fragment in fragments:
            assert fragment in reasons[path], (path, reasons[path])
    assert reasons["data/raw/train/cats/corrupt.jpg"] == "unreadable by Pillow"
    assert reasons["data/raw/README.txt"] == "not in a split folder; unreadable by Pillow"
    assert list(quarantine.columns) == scan.COLUMNS + ["reason"]  # min_side is dropped


def test_manifest_holds_only_accepted_images_sorted(project):
    root, _, _ = project
    manifest = pd.read_csv(root / "data/validated/manifest.csv")
    assert list(manifest.columns) == scan.COLUMNS
    assert "min_side" not in manifest.columns
    assert not set(manifest["path"]) & set(QUARANTINED)
    assert list(manifest["path"]) == sorted(manifest["path"])
    assert len(manifest) == sum(ACCEPTED_COUNTS.values())
    assert manifest["decodable"].all()
    assert set(manifest["format"]) == {"JPEG", "PNG"}
    assert (manifest[["width", "height"]] == SIDE).all().all()
    assert manifest["sha256"].is_unique


def test_manifest_images_are_the_accepted_files_decoded_in_manifest_order(project):
    """Decoded files that were quarantined (too small, a copy) sit between accepted ones in
    the scan: the images kept are still exactly the manifest's rows, and their labels."""
    root, _, _ = project
    manifest = pd.read_csv(root / "data/validated/manifest.csv")
    quarantined = pd.read_csv(root / "reports/validate/quarantine.csv")
    decoded_between = quarantined[(quarantined["decodable"] == True)  # noqa: E712 (NA too)
                                  & (quarantined["path"] < manifest["path"].iloc[-1])]
    assert len(decoded_between) >= 3  # tiny.jpg, wide.jpg, dup.jpg, ...
    size = params.load(root / "params.yaml").model.image_size
    images = np.load(root / "data/validated/manifest.images.npy", allow_pickle=False)
    paths = [str(root / path) for path in manifest["path"]]
    np.testing.assert_array_equal(images, decode_files(paths, size))
    labels = np.load(root / "data/validated/manifest.labels.npy", allow_pickle=False)
    np.testing.assert_array_equal(labels, (manifest["class"] == "dogs").astype("float32"))


def test_raw_files_are_untouched(project):
    _, raw, before = project
    assert snapshot(raw) == before


def test_metrics(project):
    root, _, _ = project
    metrics = json.loads((root / "reports/validate/metrics.json").read_text())
    assert metrics["images"] == sum(ACCEPTED_COUNTS.values()) + len(QUARANTINED)
    assert metrics["accepted"] == sum(ACCEPTED_COUNTS.values())
    assert metrics["quarantined"] == len(QUARANTINED)
    for key, count in ACCEPTED_COUNTS.items():
        assert metrics[f"accepted_{key}"] == count
    assert metrics["expectations_failed"] > 0
    assert not (root / "reports/validate/summary.md").exists()  # no longer written


def test_files_described_in_parallel_give_the_serial_table(project):
    """Threads describe the files; the table (and so every output) is the one-thread one,
    row for row in path order."""
    root, _, _ = project
    p = params.load(root / "params.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
        serial, parallel = (scanned(p, workers) for workers in (1, 4))
    assert list(serial[0]["path"]) == sorted(serial[0]["path"])
    pd.testing.assert_frame_equal(parallel[0], serial[0])
    assert parallel[1] == serial[1] and len(serial[1]) > 0  # the same images, in that order


def scanned(p, workers):
    """(validate's table, the images its scan wrote) with `workers` threads."""
    with tempfile.TemporaryFile() as pixels_file:
        table = scan.scan_raw(p.validate_, p.model.image_size, pixels_file, workers)
        pixels_file.seek(0)
        return table, pixels_file.read()


def test_gx_result_reports_the_failed_expectations(project):
    root, _, _ = project
    result = json.loads((root / "reports/validate/gx_result.json").read_text())
    assert result["success"] is False
    outcome = {(e["expectation_type"], e["kwargs"].get("column")): e
               for e in result["expectations"]}
    assert len(outcome) == len(result["expectations"])  # one expectation per column and kind
    for column in ["split", "class", "format", "decodable"]:
        assert not outcome[("expect_column_values_to_be_in_set", column)]["success"], column
    # Width and height are judged once, through the shorter side.
    min_side = outcome[("expect_column_values_to_be_between", "min_side")]
    assert not min_side["success"]
    assert sorted(row["path"] for row in min_side["result"]["unexpected_index_list"]) == [
        "data/raw/train/cats/tiny.jpg", "data/raw/train/cats/wide.jpg",
        "data/raw/train/dogs/tall.jpg"]
    assert ("expect_column_values_to_be_between", "width") not in outcome
    assert ("expect_column_values_to_be_between", "height") not in outcome
    assert not outcome[("expect_column_values_to_be_unique", "sha256")]["success"]
    assert outcome[("expect_column_values_to_be_unique", "path")]["success"]
    # COMPLETE result format: the failing rows are listed by path. Files outside a split
    # folder have no class to judge: only the split rule names them.
    unknown_class = outcome[("expect_column_values_to_be_in_set", "class")]["result"]
    assert [row["path"] for row in unknown_class["unexpected_index_list"]] == [
        "data/raw/train/birds/b0.jpg", "data/raw/train/loose.jpg"]
    unknown_split = outcome[("expect_column_values_to_be_in_set", "split")]["result"]
    assert [row["path"] for row in unknown_split["unexpected_index_list"]] == [
        "data/raw/README.txt", "data/raw/test/cats/t0.jpg"]


def test_missing_class_is_fatal_and_named(tmp_path, write_params):
    raw = build_project(tmp_path, write_params)
    for image in (raw / "validation" / "dogs").iterdir():
        image.unlink()
    (raw / "validation" / "dogs").rmdir()
    with pytest.raises(SystemExit, match=r"class 'dogs' missing in data/raw/validation/ "
                                         r"\(no folder data/raw/validation/dogs/\): add it to "
                                         r"the source or fix classes$"):
        run_stage(tmp_path)
    assert (tmp_path / "reports/validate/quarantine.csv").exists()  # reports still written


def test_classes_come_from_the_top_level_key(tmp_path, write_params):
    build_project(tmp_path, write_params, classes=["cats", "birds"])
    with pytest.raises(SystemExit) as failure:
        run_stage(tmp_path)
    message = str(failure.value)
    # birds has a train folder (1 image, too few) but none in validation; dogs is unknown now.
    assert "only 1 accepted 'birds' images in train" in message
    assert "class 'birds' missing in data/raw/validation/" in message
    assert "'dogs'" not in message
    quarantine = read_quarantine(tmp_path)
    reasons = dict(zip(quarantine["path"], quarantine["reason"]))
    assert reasons["data/raw/train/dogs/d0.jpg"] == "unknown class 'dogs'"


def test_too_few_images_is_fatal_and_named(tmp_path, write_params):
    build_project(tmp_path, write_params, validate__min_images_per_class=3)
    with pytest.raises(SystemExit) as failure:
        run_stage(tmp_path)
    message = str(failure.value)
    # train has 3 accepted per class; validation only 2.
    assert "only 2 accepted 'cats' images in validation" in message
    assert "only 2 accepted 'dogs' images in validation" in message
    assert "in train" not in message


def test_missing_raw_folder_is_fatal(tmp_path, write_params):
    write_params(tmp_path, validate__min_images_per_class=2)
    with pytest.raises(SystemExit) as failure:
        run_stage(tmp_path)
    message = str(failure.value)
    for split in ("train", "validation"):
        for name in ("cats", "dogs"):
            assert (f"class '{name}' missing in data/raw/{split}/ (no folder "
                    f"data/raw/{split}/{name}/)") in message


def test_files_linked_from_dvcs_cache_are_judged_by_their_content(tmp_path, write_params):
    # With `dvc config cache.type symlink`, DVC links every output file from its cache:
    # validate must judge what the link points to, as it would the copied file.
    raw = build_project(tmp_path, write_params)
    cache = tmp_path / ".dvc" / "cache"
    save_image(cache / "good", 3, fmt="JPEG")
    (cache / "broken").write_bytes(b"not an image")
    (raw / "train/cats/linked_good.jpg").symlink_to(cache / "good")
    (raw / "train/dogs/linked_broken.jpg").symlink_to(cache / "broken")
    run_stage(tmp_path)
    manifest = pd.read_csv(tmp_path / "data/validated/manifest.csv")
    assert "data/raw/train/cats/linked_good.jpg" in set(manifest["path"])
    quarantine = read_quarantine(tmp_path)
    reasons = dict(zip(quarantine["path"], quarantine["reason"]))
    assert reasons["data/raw/train/dogs/linked_broken.jpg"] == "unreadable by Pillow"
