"""Stage fetch: local folder, local zip, URL cache errors, the left-out report, atomicity.

fetch only gets bytes: every file of the dataset folder (the one with train/ and validation/)
is copied; judging them is validate's job (tests/test_validate.py, tests/test_bad_data.py).
"""
import csv
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import pytest

from catsdogs import paths
from stages import fetch


def raw_files(directory):
    raw = directory / "data/raw"
    return sorted(str(p.relative_to(raw)) for p in raw.rglob("*") if p.is_file())


def raw_snapshot(directory):
    raw = directory / "data/raw"
    return {p.relative_to(raw).as_posix(): p.read_bytes() for p in raw.rglob("*") if p.is_file()}


def source_files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def left_out(directory):
    with open(directory / "reports/fetch/left_out.csv", newline="") as f:
        return {row["path"]: row["reason"] for row in csv.DictReader(f)}


def fetch_metrics(directory):
    return json.loads((directory / "reports/fetch/metrics.json").read_text())


def test_local_folder_is_copied_unchanged(tmp_path, tiny_dataset, monkeypatch, write_params,
                                          capsys):
    # Not images, or not where images belong: fetch copies them all, validate judges them.
    (tiny_dataset / "README.txt").write_text("not an image")
    (tiny_dataset / "train/loose.jpg").write_bytes((tiny_dataset / "train/cats/cat.0.jpg")
                                                   .read_bytes())
    (tiny_dataset / "test/cats").mkdir(parents=True)
    (tiny_dataset / "test/cats/t0.jpg").write_bytes(b"whatever")
    (tiny_dataset / "train/empty_folder").mkdir()
    write_params(tmp_path, tiny_dataset)
    monkeypatch.chdir(tmp_path)
    fetch.main()
    expected = source_files(tiny_dataset)
    assert "README.txt" in expected and "test/cats/t0.jpg" in expected
    assert raw_files(tmp_path) == expected
    for one in expected:
        assert (tmp_path / "data/raw" / one).read_bytes() == (tiny_dataset / one).read_bytes()
    assert (tmp_path / "data/raw/train/empty_folder").is_dir()  # so validate can name it
    # Every source file is accounted for: copied, or left out with a reason.
    assert left_out(tmp_path) == {}
    assert fetch_metrics(tmp_path) == {"files": len(expected), "copied": len(expected),
                                       "left_out": 0}
    assert (f"fetch: {len(expected)} files in the source: {len(expected)} copied to data/raw, "
            f"0 left out") in capsys.readouterr().out


def test_what_cannot_be_copied_safely_or_lies_outside_the_dataset_is_left_out(
        tmp_path, tiny_dataset, monkeypatch, write_params):
    source = tmp_path / "download"
    shutil.copytree(tiny_dataset, source / "cats_and_dogs_filtered")
    dataset = source / "cats_and_dogs_filtered"
    (source / "LICENSE.txt").write_text("outside the dataset folder")
    (source / "extra/cats").mkdir(parents=True)
    (source / "extra/cats/x.jpg").write_bytes(b"also outside")
    (dataset / "train/cats/big.jpg").write_bytes(bytes(600 * 1024))
    (dataset / "train/cats/link.jpg").symlink_to(dataset / "train/cats/cat.0.jpg")
    os.mkfifo(dataset / "train/dogs/pipe.jpg")  # reading it would block forever
    write_params(tmp_path, source, fetch__max_file_mb=0.5)
    monkeypatch.chdir(tmp_path)
    fetch.main()
    outside = ("outside the dataset folder cats_and_dogs_filtered/ "
               "(the one with train/ and validation/)")
    assert left_out(tmp_path) == {
        "LICENSE.txt": outside,
        "extra/cats/x.jpg": outside,
        "cats_and_dogs_filtered/train/cats/big.jpg": "0.6 MB, over fetch.max_file_mb (0.5)",
        "cats_and_dogs_filtered/train/cats/link.jpg":
            f"symbolic link (to {dataset / 'train/cats/cat.0.jpg'}), not followed",
        "cats_and_dogs_filtered/train/dogs/pipe.jpg": "not a regular file",
    }
    # Copied with paths relative to the dataset folder; nothing left out lands in data/raw.
    copied = source_files(tiny_dataset)
    assert raw_files(tmp_path) == copied
    for name in ("train/cats/big.jpg", "train/cats/link.jpg", "train/dogs/pipe.jpg"):
        assert not os.path.lexists(tmp_path / "data/raw" / name), name
    assert fetch_metrics(tmp_path) == {"files": len(copied) + 5, "copied": len(copied),
                                       "left_out": 5}


def test_zip_with_a_nested_top_folder_is_extracted(tmp_path, tiny_dataset, monkeypatch, capsys,
                                                   write_params):
    nested = tmp_path / "pack" / "cats_and_dogs_filtered"
    shutil.copytree(tiny_dataset, nested)
    (tmp_path / "pack/NOTICE").write_text("next to the dataset folder, not in it")
    archive = shutil.make_archive(str(tmp_path / "dataset"), "zip", tmp_path / "pack")
    work = tmp_path / "work"
    work.mkdir()
    write_params(work, archive)
    monkeypatch.chdir(work)
    fetch.main()
    assert raw_files(work) == source_files(tiny_dataset)
    assert left_out(work) == {"NOTICE": "outside the dataset folder cats_and_dogs_filtered/ "
                                        "(the one with train/ and validation/)"}
    digest = hashlib.sha256(Path(archive).read_bytes()).hexdigest()
    assert f"has sha256 {digest}" in capsys.readouterr().out  # so users can pin it
    assert sorted(p.name for p in (work / "data").iterdir()) == ["raw"]  # no temp folder left


def test_a_pinned_sha256_is_checked(tmp_path, tiny_dataset, monkeypatch, write_params):
    archive = shutil.make_archive(str(tmp_path / "dataset"), "zip", tiny_dataset)
    digest = hashlib.sha256(Path(archive).read_bytes()).hexdigest()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    write_params(work, archive, fetch__sha256=digest)
    fetch.main()
    before = raw_snapshot(work)
    assert before
    write_params(work, archive, fetch__sha256="0" * 64)
    with pytest.raises(SystemExit, match=f"has sha256 {digest}, not the 0{{64}} that fetch.sha256 pins"):
        fetch.main()
    # Nothing is deleted before a new copy is complete: the last good data/raw stays.
    assert raw_snapshot(work) == before
    assert sorted(p.name for p in (work / "data").iterdir()) == ["raw"]


def test_a_rerun_replaces_data_raw_and_clears_stale_partial_folders(tmp_path, tiny_dataset,
                                                                     monkeypatch, write_params):
    write_params(tmp_path, tiny_dataset)
    monkeypatch.chdir(tmp_path)
    stale = tmp_path / "data" / (fetch.PARTIAL_PREFIX + "killed")
    stale.mkdir(parents=True)
    (tmp_path / "data/raw/train/cats").mkdir(parents=True)
    (tmp_path / "data/raw/train/cats/old.jpg").write_bytes(b"from an earlier source")
    fetch.main()
    assert "train/cats/old.jpg" not in raw_files(tmp_path)
    assert raw_files(tmp_path) == source_files(tiny_dataset)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["raw"]


def test_missing_source_and_layout_are_clear_errors(tmp_path, monkeypatch, write_params):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, tmp_path / "nowhere")
    with pytest.raises(SystemExit, match="nowhere does not exist"):
        fetch.main()
    (tmp_path / "flat").mkdir()
    write_params(tmp_path, tmp_path / "flat")
    with pytest.raises(SystemExit, match="no folder with train and validation/ inside"):
        fetch.main()
    assert list((tmp_path / "data").iterdir()) == []  # nothing half-done left behind


def test_offline_with_an_empty_cache_names_the_file_and_cache(tmp_path, monkeypatch,
                                                              write_params):
    # A file no cache holds, from an unreachable local address: the download fails with or
    # without a network. (Keras fixes its cache folder at import, so the test cannot move it.)
    write_params(tmp_path, "http://127.0.0.1:9/no_such_dataset.zip")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as error:
        fetch.main()
    message = str(error.value)
    assert "no_such_dataset.zip is not in the Keras cache" in message
    assert str(paths.keras_cache() / "datasets" / "no_such_dataset.zip") in message


@pytest.fixture
def cached_download(tiny_dataset, tmp_path):
    """A uniquely named zip in the real Keras cache (Keras fixes its folder at import),
    removed afterwards; yields (URL that is never reached, cached path)."""
    datasets = paths.keras_cache() / "datasets"
    if not os.access(datasets, os.W_OK):
        pytest.skip(f"the Keras cache {datasets} is not writable")
    name = f"catsdogs_test_{uuid.uuid4().hex}.zip"
    shutil.copy(shutil.make_archive(str(tmp_path / "dataset"), "zip", tiny_dataset),
                datasets / name)
    yield f"http://127.0.0.1:9/{name}", datasets / name
    (datasets / name).unlink(missing_ok=True)


def test_a_truncated_cached_download_names_the_file_and_says_delete_it(
        tmp_path, monkeypatch, cached_download, write_params):
    url, cached = cached_download
    cached.write_bytes(cached.read_bytes()[:-100])  # an interrupted download
    work = tmp_path / "work"
    work.mkdir()
    write_params(work, url)
    monkeypatch.chdir(work)
    with pytest.raises(SystemExit, match=f"the cached download {cached} is not a complete zip "
                                         f"file \\(truncated\\?\\); delete it"):
        fetch.main()
    assert list((work / "data").iterdir()) == []


def test_a_cached_download_that_does_not_match_the_pin_is_named(
        tmp_path, monkeypatch, cached_download, write_params):
    url, cached = cached_download
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    write_params(work, url, fetch__sha256=hashlib.sha256(cached.read_bytes()).hexdigest())
    fetch.main()  # the cached copy is used offline when it matches
    assert raw_files(work)
    write_params(work, url, fetch__sha256="1" * 64)
    with pytest.raises(SystemExit, match=f"{cached} does not match fetch.sha256"):
        fetch.main()
