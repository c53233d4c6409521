"""Stage fetch: get the raw dataset into data/raw/<split>/<class>/, unchanged.

The source is a URL (downloaded through keras.utils.get_file, so a seeded $KERAS_HOME
works offline), a local .zip, or a local folder. Either way it must hold
train/<class>/ and validation/<class>/ somewhere inside.
"""
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from catsdogs import params as P

RAW_DIR = Path("data/raw")
SOURCE_SPLITS = ("train", "validation")


def download(url):
    import keras  # heavy import, only when a download is needed

    from catsdogs.models import keras_cache_dir

    filename = url.rstrip("/").split("/")[-1]
    try:
        return Path(keras.utils.get_file(filename, origin=url))
    except Exception as error:
        cached = os.path.join(keras_cache_dir(), "datasets", filename)
        raise SystemExit(
            f"fetch: {filename} is not in the Keras cache ({cached}) and downloading it from "
            f"{url} failed: {error}. Put the file there (or set KERAS_HOME to a cache that "
            f"holds datasets/{filename}), or set fetch.source to a local folder or zip.")


def find_root(folder):
    """The folder that holds train/ and validation/ (the zip nests it one level down)."""
    for candidate in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
        if all((candidate / split).is_dir() for split in SOURCE_SPLITS):
            return candidate
    raise SystemExit(f"fetch: no folder with {' and '.join(SOURCE_SPLITS)}/ inside {folder}")


def copy_splits(root):
    """Copy every class folder of each split as it is; validate decides what is usable."""
    if RAW_DIR.exists():
        shutil.rmtree(RAW_DIR)
    for split in SOURCE_SPLITS:
        for entry in sorted((root / split).iterdir()):
            if entry.is_dir():
                shutil.copytree(entry, RAW_DIR / split / entry.name)
                print(f"fetch: {split}/{entry.name}: {sum(1 for _ in entry.rglob('*'))} files")
            else:
                print(f"fetch: not in a class folder, left out: {split}/{entry.name}")
    others = [p for p in root.iterdir() if p.name not in SOURCE_SPLITS]
    for other in others:
        print(f"fetch: outside the splits, left out: {other.name}")


def main():
    params = P.load()
    source = P.get(params, "fetch.source", str)
    with tempfile.TemporaryDirectory() as scratch:
        if source.startswith(("http://", "https://")):
            source_path = download(source)
        else:
            source_path = Path(source).expanduser()
            if not source_path.exists():
                raise SystemExit(f"fetch: fetch.source {source} does not exist")
        if source_path.is_file():
            if not zipfile.is_zipfile(source_path):
                raise SystemExit(f"fetch: {source_path} is neither a folder nor a zip file")
            with zipfile.ZipFile(source_path) as archive:
                archive.extractall(scratch)
            source_path = Path(scratch)
        copy_splits(find_root(source_path))


if __name__ == "__main__":
    main()
