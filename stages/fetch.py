"""Stage fetch: get the raw dataset into data/raw/<split>/<class>/, unchanged.

The source is a URL (downloaded through keras.utils.get_file, so a seeded $KERAS_HOME
works offline), a local .zip, or a local folder. Either way it must hold
train/<class>/ and validation/<class>/ somewhere inside.

Nothing vanishes silently: every source file is copied, or listed with its reason in
reports/fetch/left_out.csv. Nothing half-done survives either: the copy is built in a
data/raw.partial-*/ folder and renamed to data/raw only once complete. The source is only
read.
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

from catsdogs import params as P

RAW_DIR = Path("data/raw")
REPORT_DIR = Path("reports/fetch")
SOURCE_SPLITS = ("train", "validation")
PARTIAL_PREFIX = RAW_DIR.name + ".partial-"  # never mistaken for data/raw by a later run
MB = 1024 * 1024
CHUNK = MB
LISTED_MAX = 20  # left-out files printed; the CSV has them all


class TooLarge(Exception):
    """More bytes than a limit allows; the caller says whose and which limit."""


def download(url, sha256):
    import keras  # heavy import, only when a download is needed

    from catsdogs.models import keras_cache_dir

    filename = url.rstrip("/").split("/")[-1]
    cached = os.path.join(keras_cache_dir(), "datasets", filename)
    was_cached = os.path.exists(cached)
    try:
        # With file_hash, Keras re-downloads a cached file whose hash differs.
        return Path(keras.utils.get_file(filename, origin=url, file_hash=sha256))
    except Exception as error:
        where = (f"{cached} does not match fetch.sha256" if was_cached and sha256
                 else f"{filename} is not in the Keras cache ({cached})")
        raise SystemExit(
            f"fetch: {where} and downloading it from {url} failed: {error}. Put the file "
            f"there (or set KERAS_HOME to a cache that holds datasets/{filename}), or set "
            f"fetch.source to a local folder or zip.")


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def copy_limited(stream, dest, max_bytes):
    """Copy a stream to dest, counting the bytes actually written: headers can lie."""
    written = 0
    with open(dest, "wb") as out:
        for block in iter(lambda: stream.read(CHUNK), b""):
            written += len(block)
            if written > max_bytes:
                raise TooLarge(written)
            out.write(block)
    return written


def unsafe_name(name):
    """Why a zip member name could write outside the target folder, or None."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in posix.parts:
        return "climbs out of the target folder with '..'"
    return None


def unpack(archive_path, target, max_file, max_total):
    """Extract a zip into target, refusing the whole archive if any member is unsafe.

    Every member is checked before anything is written (zip slip, symlinks, declared sizes);
    while extracting, the bytes actually written are counted against the same limits.
    """
    def refuse(member, why):
        raise SystemExit(f"fetch: refusing {archive_path}: member {member.filename} {why}. "
                         f"Nothing from it was kept; check where the archive came from.")

    limits = (f"fetch.max_file_mb ({max_file / MB:g})", f"fetch.max_total_mb ({max_total / MB:g})")
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError) as error:
        raise SystemExit(f"fetch: {archive_path} is not a readable zip file ({error})")
    with archive:
        members = archive.infolist()
        for member in members:
            why = unsafe_name(member.filename)
            if why:
                refuse(member, f"{why} (zip slip)")
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


def find_root(folder):
    """The folder that holds train/ and validation/ (the zip nests it one level down)."""
    for candidate in real_dirs(folder):
        if all((candidate / split).is_dir() and not (candidate / split).is_symlink()
               for split in SOURCE_SPLITS):
            return candidate
    raise SystemExit(f"fetch: no folder with {' and '.join(SOURCE_SPLITS)}/ inside {folder}")


def left_out_reason(path, root, max_file):
    """Why a source entry is not copied, or None to copy it to data/raw/<same path>."""
    if path.is_symlink():  # its target may be anywhere: never read through it
        return f"symbolic link (to {os.readlink(path)}), not followed"
    if not path.is_relative_to(root) or path.relative_to(root).parts[0] not in SOURCE_SPLITS:
        return f"outside the {' and '.join(s + '/' for s in SOURCE_SPLITS)} folders"
    if len(path.relative_to(root).parts) < 3:
        return "not in a class folder"
    if not path.is_file():
        return "not a regular file"
    if path.stat().st_size > max_file:
        return f"{path.stat().st_size / MB:.1f} MB, over fetch.max_file_mb ({max_file / MB:g})"
    return None


def gather(source, dest, max_file, max_total, move=False):
    """Copy (or move, for our own unpacked zip) root/<split>/<class>/... into dest.

    Returns (copied paths, [(path, reason)] left out), paths relative to source.
    """
    root = find_root(source)
    splits = [root / split for split in SOURCE_SPLITS]
    for split in SOURCE_SPLITS:
        (dest / split).mkdir(parents=True)
    copied, left_out, total = [], [], 0
    for folder in real_dirs(source):
        entries = sorted(folder.iterdir())
        for path in entries:
            if path.is_dir() and not path.is_symlink():
                if any(path.is_relative_to(split) for split in splits):  # empty ones too
                    (dest / path.relative_to(root)).mkdir(parents=True, exist_ok=True)
                continue
            name = path.relative_to(source).as_posix()
            reason = left_out_reason(path, root, max_file)
            if reason:
                left_out.append((name, reason))
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
                                     f"({max_total / MB:g}) at {name}; raise the limit or "
                                     f"point fetch.source at a smaller folder")
            copied.append(path.relative_to(root).as_posix())
    return copied, left_out


def resolve_source(fetch, scratch):
    """A local folder holding the dataset: the source folder itself, or the zip unpacked."""
    source = fetch.source
    is_url = source.startswith(("http://", "https://"))
    if is_url:
        path = download(source, fetch.sha256)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise SystemExit(f"fetch: fetch.source {source} does not exist")
    if path.is_dir():
        if fetch.sha256:
            raise SystemExit(f"fetch: fetch.sha256 pins a zip file, but fetch.source {path} is "
                             f"a folder; set fetch.sha256 to null")
        return path, False
    digest = sha256_of(path)
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


def write_report(copied, left_out):
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    with open(REPORT_DIR / "left_out.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "reason"])
        writer.writerows(left_out)
    metrics = {"files": len(copied) + len(left_out), "copied": len(copied),
               "left_out": len(left_out)}
    (REPORT_DIR / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def main():
    fetch = P.load().fetch
    # A failed run must not leave an older data/raw behind to be taken for this source's.
    if RAW_DIR.exists():
        shutil.rmtree(RAW_DIR)
    RAW_DIR.parent.mkdir(parents=True, exist_ok=True)
    for stale in sorted(RAW_DIR.parent.glob(PARTIAL_PREFIX + "*")):
        print(f"fetch: removing {stale}, left by an interrupted run")
        shutil.rmtree(stale)
    staging = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=RAW_DIR.parent))
    try:
        source, unpacked = resolve_source(fetch, staging / "unpacked")
        copied, left_out = gather(source, staging / "raw", fetch.max_file_mb * MB,
                                  fetch.max_total_mb * MB, move=unpacked)
        (staging / "raw").rename(RAW_DIR)  # the only step that makes data/raw appear
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_report(copied, left_out)

    for split in SOURCE_SPLITS:
        for folder in sorted(p for p in (RAW_DIR / split).iterdir() if p.is_dir()):
            count = sum(1 for p in folder.rglob("*") if p.is_file())
            print(f"fetch: {split}/{folder.name}: {count} files")
    print(f"fetch: {len(copied) + len(left_out)} files in the source: {len(copied)} copied, "
          f"{len(left_out)} left out (see {REPORT_DIR / 'left_out.csv'})")
    for name, reason in left_out[:LISTED_MAX]:
        print(f"fetch: left out {name}: {reason}")
    if len(left_out) > LISTED_MAX:
        print(f"fetch: ... and {len(left_out) - LISTED_MAX} more")


if __name__ == "__main__":
    main()
