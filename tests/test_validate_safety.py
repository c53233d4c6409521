"""validate under attack: special files in data/raw, unreadable files and folders, names that
are not UTF-8, Pillow plugins raising whatever they raise. (Two runs at once:
tests/test_fetch_safety.py, which holds the lock both stages share.)

Every run accounts for every entry under data/raw: accepted + quarantined (each with a
reason) = the files (and unlistable folders) there. One bad file is one quarantine line,
never a crash or a hang.
"""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
from contextlib import contextmanager

import pandas as pd
import pytest
from PIL import Image

from catsdogs.files import named
from conftest import make_dataset
from stages import fetch, validate
from test_fetch_safety import assert_accounted as assert_fetch_accounted
from test_fetch_safety import env, left_out, run_bound_by_permissions, source_files


def entries(root):
    """What validate must account for: every entry under root/data/raw but real folders, as
    the reports name it (data/raw/..., bytes that are not UTF-8 as \\xNN)."""
    found = set()
    for folder, dirnames, names in os.walk(root / "data/raw"):
        links = [d for d in dirnames if os.path.islink(os.path.join(folder, d))]
        found |= {named(os.path.relpath(os.path.join(folder, name), root))
                  for name in names + links}
    return found


def reasons(root):
    table = pd.read_csv(root / "reports/validate/quarantine.csv", keep_default_na=False)
    return dict(zip(table["path"], table["reason"]))


def assert_accounted(root, expected):
    """The invariant: accepted + quarantined = what is in data/raw, each once, every
    quarantined row with a reason."""
    metrics = json.loads((root / "reports/validate/metrics.json").read_text())
    manifest = set(pd.read_csv(root / "data/validated/manifest.csv")["path"])
    quarantined = reasons(root)
    assert all(quarantined.values())
    assert not manifest & set(quarantined)
    assert manifest | set(quarantined) == expected
    assert metrics["images"] == metrics["accepted"] + metrics["quarantined"] == len(expected)
    assert (metrics["accepted"], metrics["quarantined"]) == (len(manifest), len(quarantined))


@contextmanager
def deadline(seconds):
    """Fail instead of hanging: a FIFO read blocks forever, /dev/zero never ends."""
    def expire(*_):
        raise TimeoutError(f"validate still running after {seconds} s (blocked on a file?)")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_validate(root, monkeypatch):
    monkeypatch.chdir(root)
    # validate switches Pillow's bomb guard off for its process: keep it for the other tests.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    with deadline(120):
        validate.main()


# ---------------------------------------------------------------------------------------
# 11. Only regular files are opened: FIFOs, devices, sockets, links to them are quarantined.

def test_special_files_in_data_raw_are_quarantined_unopened(tmp_path, write_params,
                                                            monkeypatch):
    raw = make_dataset(tmp_path / "data/raw", per_class={"train": 2, "validation": 2})
    cats, dogs = raw / "train/cats", raw / "train/dogs"
    os.mkfifo(cats / "pipe.jpg")  # reading it would block forever
    (dogs / "to_pipe.jpg").symlink_to("../cats/pipe.jpg")  # as DVC links from its cache
    (dogs / "to_folder").symlink_to(raw / "validation")
    (dogs / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    monkeypatch.chdir(tmp_path)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind("data/raw/train/cats/socket.jpg")  # relative: socket paths are short
    expected_reasons = {
        "data/raw/train/cats/pipe.jpg": "not a regular file (a FIFO), not read",
        "data/raw/train/cats/socket.jpg": "not a regular file (a socket), not read",
        "data/raw/train/dogs/to_pipe.jpg": "not a regular file (a FIFO), not read",
        "data/raw/train/dogs/to_folder": "not a regular file (a folder), not read",
        "data/raw/train/dogs/dangling.jpg": "not readable (No such file or directory)",
    }
    try:  # a device that never ends; making one needs CAP_MKNOD
        os.mknod(cats / "zero.jpg", 0o600 | 0o020000, os.makedev(1, 5))  # S_IFCHR: /dev/zero
        expected_reasons["data/raw/train/cats/zero.jpg"] = ("not a regular file (a character "
                                                            "device), not read")
    except PermissionError:
        pass
    write_params(tmp_path, validate__min_images_per_class=2)
    try:
        run_validate(tmp_path, monkeypatch)
    finally:
        listener.close()
    assert reasons(tmp_path) == expected_reasons
    assert_accounted(tmp_path, entries(tmp_path))


# ---------------------------------------------------------------------------------------
# 7. Whatever a Pillow plugin raises, and whatever bytes a name holds: one quarantine line.

PLUGIN_ERRORS = {error.__name__: error for error in (
    RuntimeError, NotImplementedError, AttributeError, struct.error, KeyError, IndexError,
    ZeroDivisionError, RecursionError, MemoryError)}


class LateFailure:
    """An image whose plugin fails only when it is looked at (size aside)."""
    size = (48, 40)

    def __init__(self, error):
        self.error = error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @property
    def format(self):
        raise self.error


def failing_plugin(fp, filename):
    """A format plugin as the fuzzed ones behave: 'FAILING <when> <error>' raises that error
    while opening (when=open) or once the image is used (when=late)."""
    _, when, name = fp.read(64).decode().split()
    error = PLUGIN_ERRORS[name](f"raised by a format plugin ({when})")
    if when == "open":
        raise error
    return LateFailure(error)


def test_one_bad_file_is_one_quarantine_line_whatever_pillow_raises(tmp_path, write_params,
                                                                    monkeypatch):
    source = make_dataset(tmp_path / "source", per_class={"train": 2, "validation": 2})
    # A format the test allows, whose plugin raises each kind of error.
    Image.init()
    monkeypatch.setattr(Image, "ID", [*Image.ID, "FAILING"])
    monkeypatch.setitem(Image.OPEN, "FAILING",
                        (failing_plugin, lambda prefix: prefix.startswith(b"FAILING")))
    failing = {f"train/cats/{when}_{name}.img": f"FAILING {when} {name}".encode()
               for name in PLUGIN_ERRORS for when in ("open", "late")}
    for name, data in failing.items():
        (source / name).write_bytes(data)
    # A format not allowed is named from its first bytes; its plugin never runs.
    gif_open, gif_accept = Image.OPEN["GIF"]
    gif_opened = []
    monkeypatch.setitem(Image.OPEN, "GIF", (lambda fp, name: gif_opened.append(name)
                                            or gif_open(fp, name), gif_accept))
    Image.new("P", (48, 40)).save(source / "train/dogs/still.gif")
    # Names that are not UTF-8 (valid on Linux): copied by fetch, quarantined by validate.
    as_bytes = os.fsencode(source)
    good = (source / "train/cats/cat.0.jpg").read_bytes()
    with open(as_bytes + b"/train/cats/\xff\xfe.jpg", "wb") as f:
        f.write(good[:-2] + b"\x00\xff\xd9")  # another image's bytes, not a duplicate
    os.mkdir(as_bytes + b"/train/\xe9t\xe9")
    with open(as_bytes + b"/train/\xe9t\xe9/x.jpg", "wb") as f:
        f.write(good[:-2] + b"\x01\xff\xd9")
    os.symlink("cat.0.jpg", as_bytes + b"/train/cats/\xfflink.jpg")
    write_params(tmp_path, source, validate__min_images_per_class=2,
                 validate__formats=["JPEG", "PNG", "FAILING"])
    monkeypatch.chdir(tmp_path)
    fetch.main()
    assert left_out(tmp_path) == {"train/cats/\\xfflink.jpg":
                                  "symbolic link (to cat.0.jpg), not followed"}
    assert_fetch_accounted(tmp_path, source_files(source))
    run_validate(tmp_path, monkeypatch)
    not_utf8 = "file name not valid UTF-8 (shown with \\x escapes)"
    assert reasons(tmp_path) == {
        **{f"data/raw/{name}": "unreadable by Pillow" for name in failing},
        "data/raw/train/dogs/still.gif":
            "format GIF not allowed (validate.formats is JPEG, PNG, FAILING)",
        "data/raw/train/cats/\\xff\\xfe.jpg": not_utf8,
        "data/raw/train/\\xe9t\\xe9/x.jpg": f"{not_utf8}; unknown class '\\xe9t\\xe9'",
    }
    assert gif_opened == []
    assert_accounted(tmp_path, entries(tmp_path))


# ---------------------------------------------------------------------------------------
# 6. Unreadable files and folders in data/raw: quarantined with a reason, never "empty".

@pytest.mark.slow
def test_unreadable_files_and_folders_are_quarantined_with_a_reason(tmp_path, write_params):
    raw = make_dataset(tmp_path / "data/raw", per_class={"train": 2, "validation": 2})
    locked = raw / "train/cats/locked.jpg"
    locked.write_bytes((raw / "train/cats/cat.0.jpg").read_bytes()[:-1])
    sealed = raw / "train/dogs/sealed"
    sealed.mkdir()
    (sealed / "inside.jpg").write_bytes(b"in a folder no one may list")
    class_folder = raw / "validation/dogs"
    write_params(tmp_path, validate__min_images_per_class=2)
    modes = {locked: 0o000, sealed: 0o000, class_folder: 0o000}
    for path, mode in modes.items():
        path.chmod(mode)
    try:
        result = run_bound_by_permissions([sys.executable, "-m", "stages.validate"], tmp_path,
                                          locked)
    finally:
        for path in modes:
            path.chmod(0o755)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "validate: only 0 accepted 'dogs' images in validation (validate.min_images_per_class "
        "is 2; see reports/validate/quarantine.csv for the rest)")
    assert "Traceback" not in result.stderr
    folder_denied = "folder not readable (Permission denied); nothing in it judged"
    assert reasons(tmp_path) == {
        "data/raw/train/cats/locked.jpg": "not readable (Permission denied)",
        "data/raw/train/dogs/sealed/": f"{folder_denied}; nested below the class folder "
                                       f"(in sealed/)",
        "data/raw/validation/dogs/": folder_denied,
    }
    # A fatal run leaves its reports but no manifest or metrics: nothing split could take for
    # its result (tests/test_stale_outputs.py). Readable again, every entry is accounted for.
    assert not (tmp_path / "data/validated").exists()
    assert not (tmp_path / "reports/validate/metrics.json").exists()
    result = subprocess.run([sys.executable, "-m", "stages.validate"], cwd=tmp_path, env=env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert_accounted(tmp_path, entries(tmp_path))
