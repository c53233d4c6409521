"""Stage fetch: get the dataset's bytes into data/raw, unchanged. Judging them is validate's job.

The source is a URL (downloaded through keras.utils.get_file, so a seeded $KERAS_HOME
works offline), a local .zip, or a local folder. Either way it holds a dataset folder, the
one with train/ and validation/, and every file in it is copied. What cannot be copied
safely (symbolic links, special files, files over fetch.max_file_mb) or lies outside that
folder is listed with its reason in reports/fetch/left_out.csv. The copy is built in a
data/raw.partial-*/ folder and renamed to data/raw only once complete. The source is only read.
"""
import csv
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from catsdogs import params, paths

PARTIAL_PREFIX = paths.RAW.name + ".partial-"  # never mistaken for data/raw by a later run
MB = 1024 * 1024
LISTED_MAX = 20  # left-out files printed; the CSV has them all


class TooLarge(Exception):
    """More bytes than a limit allows; the caller says whose and which limit."""


def copy_limited(stream, dest, max_bytes):
    """Copy a stream to dest, counting the bytes actually written: headers can lie."""
    written = 0
    with open(dest, "wb") as out:
        for block in iter(lambda: stream.read(MB), b""):
            written += len(block)
            if written > max_bytes:
                raise TooLarge(written)
            out.write(block)
    return written


def download(url, sha256):
    import keras  # heavy import, only when a download is needed

    filename = url.rstrip("/").split("/")[-1]
    cached = paths.keras_cache() / "datasets" / filename
    was_cached = cached.exists()
    try:  # with file_hash, Keras re-downloads a cached file whose hash differs
        return Path(keras.utils.get_file(filename, origin=url, file_hash=sha256))
    except Exception as error:
        where = (f"{cached} does not match fetch.sha256" if was_cached and sha256
                 else f"{filename} is not in the Keras cache ({cached})")
        raise SystemExit(
            f"fetch: {where} and downloading it from {url} failed: {error}. Put the file "
            f"there (or set KERAS_HOME to a cache that holds datasets/{filename}), or set "
            f"fetch.source to a local folder or zip.")


def unpack(archive_path, target, max_file, max_total):
    """Extract a zip into target, refusing the whole archive if any member is unsafe: every
    member is checked before anything is written (zip slip, symlinks, declared sizes), and
    the bytes actually written are counted against the same limits."""
    def refuse(member, why):
        raise SystemExit(f"fetch: refusing {archive_path}: member {member.filename} {why}. "
                         f"Nothing from it was kept; check where the archive came from.")

    limits = f"fetch.max_file_mb ({max_file / MB:g})", f"fetch.max_total_mb ({max_total / MB:g})"
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError) as error:
        raise SystemExit(f"fetch: {archive_path} is not a readable zip file ({error})")
    with archive:
        members = archive.infolist()
        for member in members:
            name = PurePosixPath(member.filename.replace("\\", "/"))
            if name.is_absolute() or re.match(r"[A-Za-z]:", member.filename):
                refuse(member, "has an absolute path (zip slip)")
            if ".." in name.parts:
                refuse(member, "climbs out of the target folder with '..' (zip slip)")
            if stat.S_ISLNK(member.external_attr >> 16):
                refuse(member, "is a symbolic link")
            if member.file_size > max_file:
                refuse(member, f"declares {member.file_size / MB:.1f} MB uncompressed, over "
                               f"{limits[0]} (a zip bomb?)")
        declared = sum(member.file_size for member in members)
        if declared > max_total:
            raise SystemExit(f"fetch: refusing {archive_path}: its members declare "
                             f"{declared / MB:.1f} MB uncompressed in total, over {limits[1]}")
        total = 0
        for member in members:
            dest = target / member.filename
            if member.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(member) as stream:
                    total += copy_limited(stream, dest, min(max_file, max_total - total))
            except TooLarge:
                refuse(member, f"expands beyond {limits[0]} or the archive beyond {limits[1]} "
                               f"(its header declares {member.file_size} bytes; a zip bomb?)")
            except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as error:
                refuse(member, f"is damaged ({error}); get a fresh copy of the archive")


def real_dirs(folder):
    """Every folder under folder, itself first, without entering symlinked folders."""
    for dirpath, dirnames, _ in os.walk(folder):  # followlinks=False is the default
        dirnames.sort()
        yield Path(dirpath)


def gather(source, dest, max_file, max_total, move=False):
    """Copy (or move, for our own unpacked zip) every file of the dataset folder into dest.
    Returns (copied paths, [(path, reason)] left out), paths relative to source."""
    root = next((folder for folder in real_dirs(source)
                 if all((folder / split).is_dir() and not (folder / split).is_symlink()
                        for split in paths.SOURCE_SPLITS)), None)
    if root is None:
        raise SystemExit(f"fetch: no folder with {' and '.join(paths.SOURCE_SPLITS)}/ "
                         f"inside {source}")
    dest.mkdir(parents=True)
    copied, left_out, total = [], [], 0
    for folder in real_dirs(source):
        for path in sorted(folder.iterdir()):
            inside = path.is_relative_to(root)
            if path.is_dir() and not path.is_symlink():
                if inside:  # empty ones too: validate names them
                    (dest / path.relative_to(root)).mkdir(parents=True, exist_ok=True)
                continue
            if path.is_symlink():  # its target may be anywhere: never read through it
                reason = f"symbolic link (to {os.readlink(path)}), not followed"
            elif not inside:
                reason = (f"outside the dataset folder {root.name}/ (the one with train/ "
                          f"and validation/)")
            elif not path.is_file():
                reason = "not a regular file"
            elif path.stat().st_size > max_file:
                reason = (f"{path.stat().st_size / MB:.1f} MB, over fetch.max_file_mb "
                          f"({max_file / MB:g})")
            else:
                reason = None
            if reason:
                left_out.append((path.relative_to(source).as_posix(), reason))
                continue
            target = dest / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            if move:
                os.replace(path, target)
            else:
                try:
                    with open(path, "rb") as stream:
                        total += copy_limited(stream, target, max_total - total)
                except TooLarge:
                    raise SystemExit(f"fetch: {source} holds more than fetch.max_total_mb "
                                     f"({max_total / MB:g}) at {path}; raise the limit or "
                                     f"point fetch.source at a smaller folder")
            copied.append(path.relative_to(root).as_posix())
    return copied, left_out


def resolve_source(fetch, scratch):
    """A local folder holding the dataset: the source folder itself, or the zip unpacked."""
    is_url = fetch.source.startswith(("http://", "https://"))
    path = download(fetch.source, fetch.sha256) if is_url else Path(fetch.source).expanduser()
    if not path.exists():
        raise SystemExit(f"fetch: fetch.source {fetch.source} does not exist")
    if path.is_dir():
        if fetch.sha256:
            raise SystemExit(f"fetch: fetch.sha256 pins a zip file, but fetch.source {path} is "
                             f"a folder; set fetch.sha256 to null")
        return path, False
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    print(f"fetch: {path} has sha256 {digest} (set fetch.sha256 to it to pin this file)")
    if fetch.sha256 and digest != fetch.sha256 and not is_url:  # get_file checked a download
        raise SystemExit(f"fetch: {path} has sha256 {digest}, not the {fetch.sha256} that "
                         f"fetch.sha256 pins; use the pinned file or update fetch.sha256")
    if not zipfile.is_zipfile(path):
        if is_url:  # the usual cause: an interrupted download left in the Keras cache
            raise SystemExit(f"fetch: the cached download {path} is not a complete zip file "
                             f"(truncated?); delete it and run again to download it afresh")
        raise SystemExit(f"fetch: {path} is neither a folder nor a complete zip file")
    unpack(path, scratch, fetch.max_file_mb * MB, fetch.max_total_mb * MB)
    return scratch, True


def main():
    fetch = params.load().fetch
    # A failed run must not leave an older data/raw behind to be taken for this source's.
    shutil.rmtree(paths.RAW, ignore_errors=True)
    paths.RAW.parent.mkdir(parents=True, exist_ok=True)
    for stale in sorted(paths.RAW.parent.glob(PARTIAL_PREFIX + "*")):
        print(f"fetch: removing {stale}, left by an interrupted run")
        shutil.rmtree(stale)
    staging = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=paths.RAW.parent))
    try:
        source, unpacked = resolve_source(fetch, staging / "unpacked")
        copied, left_out = gather(source, staging / "raw", fetch.max_file_mb * MB,
                                  fetch.max_total_mb * MB, move=unpacked)
        (staging / "raw").rename(paths.RAW)  # the only step that makes data/raw appear
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    report = paths.FETCH_REPORTS
    report.mkdir(parents=True, exist_ok=True)
    with open(report / "left_out.csv", "w", newline="") as f:
        csv.writer(f).writerows([("path", "reason"), *left_out])
    counts = {"files": len(copied) + len(left_out), "copied": len(copied),
              "left_out": len(left_out)}
    (report / "metrics.json").write_text(json.dumps(counts, indent=2) + "\n")
    print(f"fetch: {counts['files']} files in the source: {len(copied)} copied to "
          f"{paths.RAW}, {len(left_out)} left out (see {report / 'left_out.csv'})")
    for name, reason in left_out[:LISTED_MAX]:
        print(f"fetch: left out {name}: {reason}")
    if len(left_out) > LISTED_MAX:
        print(f"fetch: ... and {len(left_out) - LISTED_MAX} more")


if __name__ == "__main__":
    main()
