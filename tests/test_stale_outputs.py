"""A failed validate, split or decode leaves nothing a later stage could take for its result:
the previous run's outputs go before any work, new ones appear whole (a rename), and the
next stage, run directly, stops naming the missing input and the stage that makes it.
"""
import json

import pytest
from PIL import Image

from catsdogs import paths
from catsdogs.files import replaced
from conftest import make_dataset
from stages import decode, split, validate
from test_validate_safety import assert_accounted, entries

SPLIT_FILES = [paths.SPLIT / f"{name}.csv" for name in paths.SPLITS]
VALIDATE_REPORTS = paths.VALIDATE_REPORTS


@pytest.fixture
def good_run(tmp_path, monkeypatch, write_params):
    """validate -> split -> decode once, successfully, on a tiny data/raw in tmp_path."""
    make_dataset(tmp_path / "data/raw", per_class={"train": 5, "validation": 3})
    write_params(tmp_path, validate__min_images_per_class=3)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # validate sets it
    validate.main()
    assert_accounted(tmp_path, entries(tmp_path))
    split.main()
    decode.main()
    assert paths.MANIFEST.is_file() and all(f.is_file() for f in SPLIT_FILES)
    assert len(list(paths.DECODED.glob("*.images.npy"))) == len(paths.SPLITS)
    return tmp_path


def leftovers(root):
    """Partial files or folders a run left behind (.<name>.partial-*)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(".*.partial-*"))


def assert_no_validate_result(root):
    assert not paths.MANIFEST.exists() and not paths.MANIFEST.parent.exists()
    assert not (VALIDATE_REPORTS / "metrics.json").exists()
    assert leftovers(root) == []


def assert_split_and_decode_refuse(root):
    with pytest.raises(SystemExit) as failure:
        split.main()
    assert str(failure.value) == (
        "split: data/validated/manifest.csv is missing: run python -m stages.validate first "
        "(a validate run that failed leaves none)")
    assert not paths.SPLIT.exists() and not paths.SPLIT_METRICS.exists()  # the old ones went
    with pytest.raises(SystemExit) as failure:
        decode.main()
    assert str(failure.value) == (
        "decode: data/split/train.csv is missing: run python -m stages.split first "
        "(a split run that failed leaves none)")
    assert not paths.DECODED.exists()
    assert leftovers(root) == []


def test_a_fatal_validate_after_a_good_run_leaves_no_manifest(good_run, write_params):
    write_params(good_run, validate__min_images_per_class=4)  # validation has only 3 per class
    with pytest.raises(SystemExit, match="only 3 accepted 'cats' images in validation"):
        validate.main()
    assert_no_validate_result(good_run)
    # This run's reports stay readable: every file is in quarantine.csv or would be accepted.
    quarantine = (VALIDATE_REPORTS / "quarantine.csv").read_text().splitlines()
    assert quarantine[0].startswith("path,") and len(quarantine) == 1  # nothing bad here
    assert_split_and_decode_refuse(good_run)


def test_a_crashing_validate_after_a_good_run_leaves_no_manifest(good_run, monkeypatch):
    def broken_context(*args, **kwargs):
        raise RuntimeError("Great Expectations crashed")
    monkeypatch.setattr(validate.gx, "get_context", broken_context)
    with pytest.raises(RuntimeError, match="Great Expectations crashed"):
        validate.main()
    assert_no_validate_result(good_run)
    assert list(VALIDATE_REPORTS.iterdir()) == []  # no report of the previous run either
    assert_split_and_decode_refuse(good_run)


def test_a_failed_split_after_a_good_run_leaves_no_split_files(good_run, write_params):
    write_params(good_run, validate__min_images_per_class=3, split__val_fraction=0.01)
    with pytest.raises(SystemExit, match="leaves class 'cats' .* with an empty split"):
        split.main()
    assert not paths.SPLIT.exists() and not paths.SPLIT_METRICS.exists()
    with pytest.raises(SystemExit, match=r"^decode: data/split/train\.csv is missing: run "
                                         r"python -m stages\.split first"):
        decode.main()
    assert not paths.DECODED.exists()
    assert leftovers(good_run) == []
    # The manifest is validate's and still current: split runs again once the params do.
    assert paths.MANIFEST.is_file()
    metrics = json.loads((VALIDATE_REPORTS / "metrics.json").read_text())
    assert metrics["accepted"] + metrics["quarantined"] == metrics["images"]


def test_a_decode_failing_halfway_leaves_no_arrays(good_run):
    # train and val decode, then test names an image validate never saw: no split's
    # arrays may remain.
    test_csv = paths.SPLIT / "test.csv"
    test_csv.write_text(test_csv.read_text().replace("data/raw/", "data/elsewhere/", 1))
    with pytest.raises(SystemExit, match="data/elsewhere/.* is not in"):
        decode.main()
    assert not paths.DECODED.exists()
    assert leftovers(good_run) == []


def test_decode_refuses_when_one_split_file_is_missing(good_run):
    (paths.SPLIT / "test.csv").unlink()
    with pytest.raises(SystemExit, match=r"^decode: data/split/test\.csv is missing"):
        decode.main()
    assert not paths.DECODED.exists()


def test_replaced_puts_a_folder_in_place_whole_or_not_at_all(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("previous run")
    with pytest.raises(KeyboardInterrupt):
        with replaced(target) as partial:
            partial.mkdir()
            (partial / "new.txt").write_text("half")
            raise KeyboardInterrupt  # Ctrl-C halfway
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no partial folder left
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with replaced(target) as partial:
        partial.mkdir()
        (partial / "new.txt").write_text("whole")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in target.iterdir()] == ["new.txt"]
