"""Stage fetch: local folder, local zip, URL cache errors, the left-out report, atomicity."""
import csv
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import pytest
import yaml

from catsdogs.models import keras_cache_dir
from conftest import tiny_params
from stages import fetch


def use_params(directory, monkeypatch, source, **fetch_params):
    """A complete params.yaml (the schema checks all of it) with this fetch section."""
    params = tiny_params(source)
    params["fetch"].update(fetch_params)
    (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(directory)


def raw_files(directory):
    raw = directory / "data/raw"
    return sorted(str(p.relative_to(raw)) for p in raw.rglob("*") if p.is_file())


def left_out(directory):
    with open(directory / "reports/fetch/left_out.csv", newline="") as f:
        return {row["path"]: row["reason"] for row in csv.DictReader(f)}


def test_local_folder_is_copied_unchanged(tmp_path, tiny_dataset, monkeypatch):
    (tiny_dataset / "README.txt").write_text("not an image")
    use_params(tmp_path, monkeypatch, tiny_dataset)
    fetch.main()
    expected = sorted(str(p.relative_to(tiny_dataset)) for p in tiny_dataset.rglob("*.jpg"))
    assert raw_files(tmp_path) == expected
    one = "train/cats/cat.0.jpg"
    assert (tmp_path / "data/raw" / one).read_bytes() == (tiny_dataset / one).read_bytes()
    # Every source file is accounted for: copied, or left out with a reason.
    assert left_out(tmp_path) == {"README.txt": "outside the train/ and validation/ folders"}
    metrics = json.loads((tmp_path / "reports/fetch/metrics.json").read_text())
    assert metrics == {"files": len(expected) + 1, "copied": len(expected), "left_out": 1}


def test_zip_with_a_nested_top_folder_is_extracted(tmp_path, tiny_dataset, monkeypatch, capsys):
    nested = tmp_path / "pack" / "cats_and_dogs_filtered"
    shutil.copytree(tiny_dataset, nested)
    archive = shutil.make_archive(str(tmp_path / "dataset"), "zip", tmp_path / "pack")
    work = tmp_path / "work"
    work.mkdir()
    use_params(work, monkeypatch, archive)
    fetch.main()
    assert len(raw_files(work)) == len(list(tiny_dataset.rglob("*.jpg")))
    assert left_out(work) == {}
    digest = hashlib.sha256(Path(archive).read_bytes()).hexdigest()
    assert f"has sha256 {digest}" in capsys.readouterr().out  # so users can pin it
    assert sorted(p.name for p in (work / "data").iterdir()) == ["raw"]  # no temp folder left


def test_a_pinned_sha256_is_checked(tmp_path, tiny_dataset, monkeypatch):
    archive = shutil.make_archive(str(tmp_path / "dataset"), "zip", tiny_dataset)
    digest = hashlib.sha256(Path(archive).read_bytes()).hexdigest()
    work = tmp_path / "work"
    work.mkdir()
    use_params(work, monkeypatch, archive, sha256=digest)
    fetch.main()
    assert raw_files(work)
    use_params(work, monkeypatch, archive, sha256="0" * 64)
    with pytest.raises(SystemExit, match=f"has sha256 {digest}, not the 0{{64}} that fetch.sha256 pins"):
        fetch.main()
    assert not (work / "data/raw").exists()


def test_a_rerun_replaces_data_raw_and_clears_stale_partial_folders(tmp_path, tiny_dataset,
                                                                     monkeypatch):
    use_params(tmp_path, monkeypatch, tiny_dataset)
    stale = tmp_path / "data" / (fetch.PARTIAL_PREFIX + "killed")
    stale.mkdir(parents=True)
    (tmp_path / "data/raw/train/cats").mkdir(parents=True)
    (tmp_path / "data/raw/train/cats/old.jpg").write_bytes(b"from an earlier source")
    fetch.main()
    assert "train/cats/old.jpg" not in raw_files(tmp_path)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["raw"]


def test_missing_source_and_layout_are_clear_errors(tmp_path, monkeypatch):
    use_params(tmp_path, monkeypatch, tmp_path / "nowhere")
    with pytest.raises(SystemExit, match="nowhere does not exist"):
        fetch.main()
    (tmp_path / "flat").mkdir()
    use_params(tmp_path, monkeypatch, tmp_path / "flat")
    with pytest.raises(SystemExit, match="no folder with train and validation"):
        fetch.main()
    assert list((tmp_path / "data").iterdir()) == []  # nothing half-done left behind


def test_offline_with_an_empty_cache_names_the_file_and_cache(tmp_path, monkeypatch):
    # A file no cache holds, from an unreachable local address: the download fails with or
    # without a network. (Keras fixes its cache folder at import, so the test cannot move it.)
    use_params(tmp_path, monkeypatch, "http://127.0.0.1:9/no_such_dataset.zip")
    with pytest.raises(SystemExit) as error:
        fetch.main()
    message = str(error.value)
    assert "no_such_dataset.zip is not in the Keras cache" in message
    assert os.path.join(keras_cache_dir(), "datasets") in message


@pytest.fixture
def cached_download(tiny_dataset, tmp_path):
    """A uniquely named zip in the real Keras cache (Keras fixes its folder at import),
    removed afterwards; yields (URL that is never reached, cached path)."""
    datasets = Path(keras_cache_dir()) / "datasets"
    if not os.access(datasets, os.W_OK):
        pytest.skip(f"the Keras cache {datasets} is not writable")
    name = f"catsdogs_test_{uuid.uuid4().hex}.zip"
    shutil.copy(shutil.make_archive(str(tmp_path / "dataset"), "zip", tiny_dataset),
                datasets / name)
    yield f"http://127.0.0.1:9/{name}", datasets / name
    (datasets / name).unlink(missing_ok=True)


def test_a_truncated_cached_download_names_the_file_and_says_delete_it(
        tmp_path, monkeypatch, cached_download):
    url, cached = cached_download
    cached.write_bytes(cached.read_bytes()[:-100])  # an interrupted download
    work = tmp_path / "work"
    work.mkdir()
    use_params(work, monkeypatch, url)
    with pytest.raises(SystemExit, match=f"the cached download {cached} is not a complete zip "
                                         f"file \\(truncated\\?\\); delete it"):
        fetch.main()
    assert list((work / "data").iterdir()) == []


def test_a_cached_download_that_does_not_match_the_pin_is_named(
        tmp_path, monkeypatch, cached_download):
    url, cached = cached_download
    work = tmp_path / "work"
    work.mkdir()
    use_params(work, monkeypatch, url, sha256=hashlib.sha256(cached.read_bytes()).hexdigest())
    fetch.main()  # the cached copy is used offline when it matches
    assert raw_files(work)
    use_params(work, monkeypatch, url, sha256="1" * 64)
    with pytest.raises(SystemExit, match=f"{cached} does not match fetch.sha256"):
        fetch.main()
