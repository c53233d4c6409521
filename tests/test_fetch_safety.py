"""fetch under attack: sources inside outputs, two runs at once, unreadable files and folders,
zip edge cases, and messages that name what the user can act on.

Every run that completes accounts for every source file: copied + left out (each with a
reason) = the files it found, and no real file is missing from both. Every refusal is one
line naming the file or member and its cause, with no traceback, and leaves data/ and the
reports as they were.
"""
import csv
import ctypes
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT, make_dataset
from stages import fetch, validate


def source_files(folder):
    """Every regular file under folder, as root sees it (no symbolic link followed)."""
    return sorted(os.path.relpath(os.path.join(d, n), folder) for d, _, names in os.walk(folder)
                  for n in names if os.path.isfile(os.path.join(d, n))
                  and not os.path.islink(os.path.join(d, n)))


def raw_files(work):
    return source_files(work / "data/raw")


def left_out(work):
    with open(work / "reports/fetch/left_out.csv", newline="") as f:
        return {row["path"]: row["reason"] for row in csv.DictReader(f)}


def state(work):
    """Every file under data/ and reports/ with its bytes: what a refused run must not change."""
    return {p.relative_to(work).as_posix(): p.read_bytes() if p.is_file() else None
            for top in ("data", "reports") for p in sorted((work / top).rglob("*"))}


def assert_accounted(work, real_files):
    """The invariant: files = copied + left out, each left-out line has a reason, and every
    real source file is copied, left out, or inside a folder that is left out."""
    metrics = json.loads((work / "reports/fetch/metrics.json").read_text())
    copied, left = raw_files(work), left_out(work)
    assert metrics == {"files": len(copied) + len(left), "copied": len(copied),
                       "left_out": len(left)}
    assert all(left.values())
    folders = [name for name in left if name.endswith("/")]
    for name in real_files:
        assert (name in copied or name in left
                or any(name.startswith(folder) for folder in folders)), name


def assert_one_line(message):
    assert "\n" not in message and "Traceback" not in message, message
    assert fetch.PARTIAL_PREFIX not in message, message  # never a temporary folder's name


@pytest.fixture
def work(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


# ---------------------------------------------------------------------------------------
# 2. A source inside an output (or holding one) is refused before anything is deleted.

@pytest.mark.parametrize("source, message", [
    ("data/raw", "fetch.path data/raw is inside data/raw, which the pipeline writes"),
    ("data/raw/train", "is inside data/raw, which the pipeline writes"),
    ("data/split/../raw", "is inside data/raw"),
    ("{tmp}/link_to_raw", "link_to_raw is inside data/raw"),
    ("data/validated/dataset.zip", "is inside data/validated"),
    ("reports/fetch", "is inside reports"),
    (".", "fetch.path . holds data/raw, which the pipeline writes"),
])
def test_a_source_inside_or_holding_an_output_is_refused_and_nothing_is_deleted(
        tmp_path, work, tiny_dataset, write_params, source, message):
    write_params(work, tiny_dataset)
    fetch.main()
    for folder in ("data/validated", "data/split"):
        (work / folder).mkdir()
    shutil.make_archive(str(work / "data/validated/dataset"), "zip", tiny_dataset)
    (tmp_path / "link_to_raw").symlink_to(work / "data/raw")
    before = state(work)
    write_params(work, source.format(tmp=tmp_path, work=work))
    with pytest.raises(SystemExit) as failure:
        fetch.main()
    assert message in str(failure.value)
    assert_one_line(str(failure.value))
    assert state(work) == before  # the first run's data/raw and reports, untouched
    assert_accounted(work, source_files(tiny_dataset))


def test_an_interrupted_run_keeps_the_last_complete_data_raw(tmp_path, work, tiny_dataset,
                                                             write_params, monkeypatch):
    write_params(work, tiny_dataset)
    fetch.main()
    before = state(work)
    other = make_dataset(tmp_path / "other", seed=1)
    write_params(work, other)
    copies, copy = [], fetch.copy_limited

    def interrupted(stream, dest, max_bytes):
        if len(copies) == 3:
            raise KeyboardInterrupt  # Ctrl-C halfway through the new copy
        copies.append(dest)
        return copy(stream, dest, max_bytes)

    monkeypatch.setattr(fetch, "copy_limited", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch.main()
    assert state(work) == before  # nothing deleted before the new copy was complete
    monkeypatch.setattr(fetch, "copy_limited", copy)
    fetch.main()  # completed, the new copy replaces the old
    assert raw_files(work) == source_files(other)
    assert (work / "data/raw/train/cats/cat.0.jpg").read_bytes() == (
        other / "train/cats/cat.0.jpg").read_bytes()
    assert sorted(p.name for p in (work / "data").iterdir()) == ["raw"]
    assert_accounted(work, source_files(other))


# ---------------------------------------------------------------------------------------
# 5. Two runs at once: the second stops at once, naming the lock; the first completes.

PAUSED_FETCH = """
import pathlib, time
from stages import fetch
copy = fetch.copy_limited
def paused(stream, dest, max_bytes):  # holds the run mid-copy until the test says go
    pathlib.Path("paused").touch()
    while not pathlib.Path("go").exists():
        time.sleep(0.05)
    return copy(stream, dest, max_bytes)
fetch.copy_limited = paused
fetch.main()
"""


def test_a_second_run_stops_at_once_and_the_first_completes(work, tiny_dataset, write_params,
                                                            monkeypatch):
    write_params(work, tiny_dataset)
    first = subprocess.Popen([sys.executable, "-c", PAUSED_FETCH], cwd=work, env=env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (work / "paused").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        partial = list((work / "data").glob(fetch.PARTIAL_PREFIX + "*"))
        assert len(partial) == 1
        lock = f"another run (pid {first.pid}) holds .backups/data.lock"
        started = time.monotonic()
        second = subprocess.run([sys.executable, "-m", "stages.fetch"], cwd=work, env=env(),
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and time.monotonic() - started < 30
        assert second.stderr.strip() == (f"fetch: {lock}; wait for it to end or stop it, "
                                         f"then run again")
        with pytest.raises(SystemExit, match=re.escape(f"validate: {lock}")):
            validate.main()
        assert partial[0].is_dir()  # the first run's folder was left alone
    finally:
        (work / "go").touch()
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert raw_files(work) == source_files(tiny_dataset)
    assert sorted(p.name for p in (work / "data").iterdir()) == ["raw"]
    assert_accounted(work, source_files(tiny_dataset))
    # validate switches Pillow's bomb guard off for its process: keep it for the other tests.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    validate.main()  # the lock is free again; copied = accepted + quarantined
    judged = json.loads((work / "reports/validate/metrics.json").read_text())
    assert judged["images"] == judged["accepted"] + judged["quarantined"] == len(
        raw_files(work))


# ---------------------------------------------------------------------------------------
# 6. Unreadable files and folders are left out with a reason, never lost or a traceback.

def without_root_override():
    """preexec_fn for a child process that permission bits bind even as root: it drops
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its capability bounding set (Linux
    prctl PR_CAPBSET_DROP), so after exec the kernel checks chmod 000 for it as for any user.
    None when not root: chmod binds already."""
    if os.geteuid() != 0:
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def drop():
        for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
    return drop


def run_bound_by_permissions(command, cwd, unreadable):
    """Run command where chmod binds; skip if this machine cannot make unreadable unreadable."""
    preexec = without_root_override()
    try:
        probe = subprocess.run([sys.executable, "-c", f"open({str(unreadable)!r}).close()"],
                               preexec_fn=preexec, capture_output=True)
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"cannot drop root's permission override here ({error})")
    if probe.returncode == 0:
        pytest.skip("running as root and unable to drop CAP_DAC_OVERRIDE: chmod 000 "
                    "does not block reads, so nothing here would be unreadable")
    return subprocess.run(command, cwd=cwd, env=env(), preexec_fn=preexec,
                          capture_output=True, text=True, timeout=300)


def test_unreadable_files_and_folders_are_left_out_with_a_reason(work, tiny_dataset,
                                                                 write_params):
    locked = tiny_dataset / "train/cats/locked.jpg"
    locked.write_bytes(b"no one may read this")
    sealed = tiny_dataset / "train/dogs/sealed"
    sealed.mkdir()
    (sealed / "inside.jpg").write_bytes(b"in a folder no one may list")
    listed_only = tiny_dataset / "validation/cats"  # names readable, files not reachable
    real = source_files(tiny_dataset)
    modes = {locked: 0o000, sealed: 0o000, tiny_dataset / "validation/dogs": 0o000,
             listed_only: 0o444}
    for path, mode in modes.items():
        path.chmod(mode)
    try:
        write_params(work, tiny_dataset)
        result = run_bound_by_permissions([sys.executable, "-m", "stages.fetch"], work, locked)
        archive = shutil.make_archive(str(work.parent / "dataset"), "zip", tiny_dataset / "train")
        Path(archive).chmod(0o000)
        write_params(work, archive)
        zip_result = run_bound_by_permissions([sys.executable, "-m", "stages.fetch"], work,
                                              archive)
    finally:
        for path in modes:
            path.chmod(0o755)
    assert result.returncode == 0, result.stderr
    denied = "not readable (Permission denied)"
    folder_denied = "folder not readable (Permission denied), nothing in it copied"
    assert left_out(work) == {
        "train/cats/locked.jpg": denied,
        "train/dogs/sealed/": folder_denied,
        "validation/dogs/": folder_denied,
        **{name: denied for name in real if name.startswith("validation/cats/")},
    }
    assert not (work / "data/raw/validation/dogs").exists()  # not an "empty" class folder
    assert_accounted(work, real)
    # An unreadable zip: a one-line error naming it, and the last data/raw kept.
    assert zip_result.returncode == 1
    assert zip_result.stderr.strip() == f"fetch: cannot read {archive} (Permission denied)"
    assert_accounted(work, real)


# ---------------------------------------------------------------------------------------
# 10 and 14. Zip edge cases: refused whole with the member named; odd but honest zips work.

def dataset_zip(path, *extra, images=True):
    """pack/<split>/<class>/0.jpg (or, with images=False, the folders alone), then extra
    (name, bytes) members: name ending in / is a folder."""
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names: that is the point
        for folder in ("train/cats", "train/dogs", "validation/cats", "validation/dogs"):
            if images:
                archive.writestr(f"pack/{folder}/0.jpg", f"image in {folder}")
            else:
                archive.writestr(f"pack/{folder}/", b"")
        for name, data in extra:
            archive.writestr(name, data)
    return path


def patch_header(path, name, local_at, central_at, value):
    """Overwrite a 2-byte field of one member in its local and its central header."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        local = archive.getinfo(name).header_offset
    central = next(m.start() for m in re.finditer(b"PK\x01\x02", data)
                   if data[m.start() + 46:].startswith(name.encode()))
    data[local + local_at:local + local_at + 2] = struct.pack("<H", value)
    data[central + central_at:central + central_at + 2] = struct.pack("<H", value)
    path.write_bytes(bytes(data))
    return path


def encrypted(path):
    dataset_zip(path, ("pack/train/cats/secret.jpg", b"x"))
    return patch_header(path, "pack/train/cats/secret.jpg", 6, 8, 0x1)  # general purpose bit 0


def deflate64(path):
    dataset_zip(path, ("pack/train/cats/d64.jpg", b"x" * 100))
    return patch_header(path, "pack/train/cats/d64.jpg", 8, 10, 9)  # method 9: Deflate64


def many_members(path):
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(50_000):
            archive.writestr(f"pack/train/cats/{i}.jpg", b"")
    return path


def zip_in_zip(path):
    inner = dataset_zip(path.with_name("inner.zip"))
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(inner, "dataset.zip")
    return path


LONG = "x" * 300 + ".jpg"
DEEP = "/".join(["d" * 250] * 20) + "/deep.jpg"
ZIP_REFUSALS = {
    "duplicate names": (
        lambda p: dataset_zip(p, ("pack/train/cats/0.jpg", b"a second one")),
        "member pack/train/cats/0.jpg has the same name as member pack/train/cats/0.jpg, "
        "which it would overwrite"),
    "duplicate once normalised": (
        lambda p: dataset_zip(p, ("pack\\train\\dogs\\0.jpg", b"again")),
        "member pack\\train\\dogs\\0.jpg has the same name as member pack/train/dogs/0.jpg"),
    "encrypted": (encrypted, "member pack/train/cats/secret.jpg is encrypted"),
    "deflate64": (deflate64, "member pack/train/cats/d64.jpg is compressed with deflate64 "
                             "(method 9), which Python's zipfile cannot unpack"),
    "file where a folder is needed": (
        lambda p: dataset_zip(p, ("pack/train", b"a file named like the folder")),
        "member pack/train is a file, but member pack/train/cats/0.jpg needs a folder"),
    "folder entry and file of one name": (
        lambda p: dataset_zip(p, ("pack/extra/", b""), ("pack/extra", b"x")),
        "member pack/extra is a file, but member pack/extra/ needs a folder"),
    "name too long": (
        lambda p: dataset_zip(p, (f"pack/train/cats/{LONG}", b"x")),
        f"member pack/train/cats/{LONG} has a name too long to unpack (a part of 304 bytes"),
    "path too long": (
        lambda p: dataset_zip(p, (f"pack/train/cats/{DEEP}", b"x")),
        f"member pack/train/cats/{DEEP} has a path too long to unpack"),
    "too many members": (
        many_members,
        "member pack/train/cats/30000.jpg is past the 30,000 members fetch unpacks "
        "(50,000 in all"),
    "only empty folders": (
        lambda p: dataset_zip(p, images=False),
        "nothing to fetch: no file of {archive} could be copied from train or validation/"),
    "zip inside the zip": (
        zip_in_zip,
        "no folder with train and validation/ inside {archive}; it holds dataset.zip: "
        "unpack that and point fetch.path at it"),
}


@pytest.mark.parametrize("case", ZIP_REFUSALS, ids=list(ZIP_REFUSALS))
def test_a_zip_edge_case_is_refused_naming_the_member(tmp_path, work, tiny_dataset,
                                                      write_params, case):
    write_params(work, tiny_dataset)
    fetch.main()  # a good earlier run, whose results must survive the refusal
    before = state(work)
    make, message = ZIP_REFUSALS[case]
    archive = make(tmp_path / "archive.zip")
    write_params(work, archive)
    with pytest.raises(SystemExit) as failure:
        fetch.main()
    text = str(failure.value)
    assert str(archive) in text and message.format(archive=archive) in text, text
    assert "damaged" not in text and "does not exist" not in text
    assert_one_line(text)
    assert state(work) == before
    assert_accounted(work, source_files(tiny_dataset))


def test_backslash_separators_are_understood(tmp_path, work, write_params):
    # Windows tools write backslashes: they are folder separators, as the zip-slip check
    # already treats them.
    archive = tmp_path / "my data" / "windows.zip"
    archive.parent.mkdir()
    names = [f"pack\\{folder}\\{i}.jpg" for folder in ("train\\cats", "train\\dogs",
             "validation\\cats", "validation\\dogs") for i in range(2)]
    with zipfile.ZipFile(archive, "w") as z:
        for name in names:
            z.writestr(name, name)
        z.writestr("pack\\notes.txt", "next to the splits, still in the dataset folder")
    write_params(work, archive)
    fetch.main()
    expected = sorted(n.removeprefix("pack\\").replace("\\", "/") for n in names) + ["notes.txt"]
    assert raw_files(work) == sorted(expected)
    assert (work / "data/raw/train/cats/0.jpg").read_bytes() == b"pack\\train\\cats\\0.jpg"
    assert_accounted(work, expected)


@pytest.mark.parametrize("source", ["ftp://example.com/cats.zip", "s3://bucket/cats.zip",
                                    "file:///data/cats.zip", "www.example.com/cats.zip",
                                    "FTP://example.com/cats.zip"])
def test_a_url_that_is_no_http_url_is_refused_before_anything_happens(
        work, tiny_dataset, write_params, source):
    write_params(work, tiny_dataset)
    fetch.main()
    before = state(work)
    write_params(work, tiny_dataset, fetch__url=source)
    with pytest.raises(SystemExit) as failure:
        fetch.main()
    text = str(failure.value)
    assert f"'fetch.url' = {source!r}: must be an http(s):// URL" in text
    assert "fetch.path" in text and "does not exist" not in text
    assert_one_line(text)
    assert state(work) == before
    assert_accounted(work, source_files(tiny_dataset))


@pytest.mark.slow
def test_url_schemes_are_case_insensitive_and_the_query_is_no_part_of_the_name(
        tmp_path, work, tiny_dataset, write_params):
    # RFC 3986: HTTPS:// is https://. The cache holds the zip under the last segment of the
    # URL's path (not "pets.zip?token=..."): nothing is downloaded.
    cache = tmp_path / "keras_home"
    (cache / "datasets").mkdir(parents=True)
    shutil.make_archive(str(cache / "datasets/pets"), "zip", tiny_dataset)
    write_params(work, "HTTPS://127.0.0.1:9/files/pets.zip?token=s3cr3t#top")
    result = subprocess.run([sys.executable, "-m", "stages.fetch"], cwd=work,
                            env={**env(), "KERAS_HOME": str(cache)}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert raw_files(work) == source_files(tiny_dataset)
    assert_accounted(work, source_files(tiny_dataset))


# ---------------------------------------------------------------------------------------
# A file where fetch needs a folder: one line naming it, before anything changes.

def files_under(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("path", ["data", "reports", "reports/fetch",
                                  f"data/{fetch.PARTIAL_PREFIX}left"])
def test_a_file_where_fetch_needs_a_folder_is_named(work, tiny_dataset, write_params, path):
    write_params(work, tiny_dataset)
    if path != "data":
        fetch.main()  # a good earlier run, whose data/raw must survive
        if (work / path).is_dir():
            shutil.rmtree(work / path)
    (work / path).write_text("a file, not a folder")
    before = files_under(work)
    with pytest.raises(SystemExit) as failure:
        fetch.main()
    text = str(failure.value)
    assert text == f"fetch: {path} exists but is not a folder: move it away, then run again"
    assert files_under(work) == before
    if path == "data":  # validate takes the same lock on data/
        with pytest.raises(SystemExit, match="^validate: data exists but is not a folder"):
            validate.main()


# ---------------------------------------------------------------------------------------
# 13. A read-only Keras cache: Keras would quietly switch to /tmp/.keras; fetch says so, and
# reads a zip the cache already holds as it is (checked against fetch.sha256 when pinned).

def fetch_with_read_only_cache(work, cache):
    """python -m stages.fetch with KERAS_HOME=cache made read-only (binding even for root)."""
    cache.chmod(0o555)
    (cache / "datasets").chmod(0o555)
    preexec = without_root_override()
    probe = subprocess.run([sys.executable, "-c", f"open({str(cache / 'probe')!r}, 'w')"],
                           preexec_fn=preexec, capture_output=True)
    if probe.returncode == 0:
        pytest.skip("running as root and unable to drop CAP_DAC_OVERRIDE: a read-only folder "
                    "stays writable")
    try:
        return subprocess.run([sys.executable, "-m", "stages.fetch"], cwd=work,
                              env={**env(), "KERAS_HOME": str(cache)}, preexec_fn=preexec,
                              capture_output=True, text=True, timeout=300)
    finally:
        cache.chmod(0o755)
        (cache / "datasets").chmod(0o755)


def test_a_read_only_keras_cache_is_used_as_it_is_or_named(tmp_path, work, tiny_dataset,
                                                           write_params):
    cache = tmp_path / "keras_home"
    (cache / "datasets").mkdir(parents=True)
    archive = shutil.make_archive(str(cache / "datasets/pets"), "zip", tiny_dataset)
    digest = hashlib.sha256(Path(archive).read_bytes()).hexdigest()
    url = "http://127.0.0.1:9/pets.zip"  # never reached

    write_params(work, url, fetch__sha256=digest)
    result = fetch_with_read_only_cache(work, cache)
    assert result.returncode == 0, result.stderr
    assert f"the Keras cache {cache} is read-only: reading" in result.stdout
    assert raw_files(work) == source_files(tiny_dataset)
    assert_accounted(work, source_files(tiny_dataset))

    write_params(work, url, fetch__sha256="2" * 64)  # the pin is checked all the same
    before = state(work)
    result = fetch_with_read_only_cache(work, cache)
    assert result.returncode != 0 and f"not the {'2' * 64} that fetch.sha256 pins" in result.stderr
    assert state(work) == before

    write_params(work, "http://127.0.0.1:9/absent.zip")
    result = fetch_with_read_only_cache(work, cache)
    message = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0
    assert f"the Keras cache {cache} is read-only and holds no datasets/absent.zip" in message
    assert "/tmp/.keras" in message and "not in the Keras cache" not in message
    assert state(work) == before
