"""Stage fetch: local folder, local zip, and a clear error offline with an empty cache."""
import os
import shutil

import pytest
import yaml

from catsdogs.models import keras_cache_dir
from stages import fetch


def use_params(directory, monkeypatch, source):
    (directory / "params.yaml").write_text(yaml.safe_dump({"fetch": {"source": str(source)}}))
    monkeypatch.chdir(directory)


def raw_files(directory):
    raw = directory / "data/raw"
    return sorted(str(p.relative_to(raw)) for p in raw.rglob("*") if p.is_file())


def test_local_folder_is_copied_unchanged(tmp_path, tiny_dataset, monkeypatch):
    (tiny_dataset / "README.txt").write_text("not an image")
    use_params(tmp_path, monkeypatch, tiny_dataset)
    fetch.main()
    expected = sorted(str(p.relative_to(tiny_dataset)) for p in tiny_dataset.rglob("*.jpg"))
    assert raw_files(tmp_path) == expected
    one = "train/cats/cat.0.jpg"
    assert (tmp_path / "data/raw" / one).read_bytes() == (tiny_dataset / one).read_bytes()


def test_zip_with_a_nested_top_folder_is_extracted(tmp_path, tiny_dataset, monkeypatch):
    nested = tmp_path / "pack" / "cats_and_dogs_filtered"
    shutil.copytree(tiny_dataset, nested)
    archive = shutil.make_archive(str(tmp_path / "dataset"), "zip", tmp_path / "pack")
    work = tmp_path / "work"
    work.mkdir()
    use_params(work, monkeypatch, archive)
    fetch.main()
    assert len(raw_files(work)) == len(list(tiny_dataset.rglob("*.jpg")))


def test_missing_source_and_layout_are_clear_errors(tmp_path, monkeypatch):
    use_params(tmp_path, monkeypatch, tmp_path / "nowhere")
    with pytest.raises(SystemExit, match="nowhere does not exist"):
        fetch.main()
    (tmp_path / "flat").mkdir()
    use_params(tmp_path, monkeypatch, tmp_path / "flat")
    with pytest.raises(SystemExit, match="no folder with train and validation"):
        fetch.main()


def test_offline_with_an_empty_cache_names_the_file_and_cache(tmp_path, monkeypatch):
    # A file no cache holds, from an unreachable local address: the download fails with or
    # without a network. (Keras fixes its cache folder at import, so the test cannot move it.)
    use_params(tmp_path, monkeypatch, "http://127.0.0.1:9/no_such_dataset.zip")
    with pytest.raises(SystemExit) as error:
        fetch.main()
    message = str(error.value)
    assert "no_such_dataset.zip is not in the Keras cache" in message
    assert os.path.join(keras_cache_dir(), "datasets") in message
