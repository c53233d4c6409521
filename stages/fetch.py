"""Stage fetch: get the dataset's bytes into data/raw, unchanged. Judging them is validate's job.

The source is fetch.url (through keras.utils.get_file, so a seeded $KERAS_HOME works offline)
or, when that is null, fetch.path: a local .zip or folder, never one inside what the pipeline
writes. dvc.yaml lists fetch.path as a dependency, so DVC sees a local dataset change. Either
way the source holds a dataset folder, the one with train/ and validation/, and every file in
it is copied. What cannot be copied safely (symbolic links, special files,
unreadable files and folders, files over fetch.max_file_mb) or lies outside that folder is
listed with its reason in reports/fetch/left_out.csv; a zip with any unsafe member is
refused whole. The copy is built in a data/raw.partial-*/ folder and replaces data/raw only
once complete: nothing is deleted before. The source is only read. One run at a time: fetch
and validate hold a lock on data/ while they run, however they were started.
"""
import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from catsdogs import params, paths
from catsdogs.files import locked, named

PARTIAL_PREFIX = paths.RAW.name + ".partial-"  # never mistaken for data/raw by a later run
MB = 1024 * 1024
LISTED_MAX = 20  # left-out files printed; the CSV has them all
# What the pipeline writes (and deletes): a source inside one, or holding one, is refused.
OUTPUTS = (paths.RAW, paths.MANIFEST.parent, paths.SPLIT, paths.DECODED, paths.FINAL_MODEL.parent,
           paths.REPORTS)
# Safety limits on a zip besides fetch.max_file_mb and max_total_mb: members (empty ones cost
# no bytes but a file each; the dataset has about 3,000, the full Kaggle one 25,000), and the
# bytes Linux allows a file name and a whole path.
MAX_MEMBERS = 30_000
NAME_MAX, PATH_MAX = 255, 4096
UNPACKABLE = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


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
    """The zip at url, from the Keras cache or downloaded into it; and whether Keras checked
    it against sha256 (not when it was read from a read-only cache as is)."""
    filename = url.rstrip("/").split("/")[-1]
    cache = paths.keras_cache()
    cached = cache / "datasets" / filename
    if cache.is_dir() and not os.access(cache, os.W_OK):
        # keras.utils.get_file would quietly switch to /tmp/.keras and miss this cache.
        if cached.is_file():
            print(f"fetch: the Keras cache {cache} is read-only: reading {cached} as it is")
            return cached, False
        raise SystemExit(f"fetch: the Keras cache {cache} is read-only and holds no "
                         f"datasets/{filename}, so Keras would download to /tmp/.keras instead; "
                         f"make it writable or set KERAS_HOME to a writable folder")
    import keras  # heavy import, only when a download is needed

    was_cached = cached.exists()
    try:  # with file_hash, Keras re-downloads a cached file whose hash differs
        return Path(keras.utils.get_file(filename, origin=url, file_hash=sha256)), True
    except Exception as error:
        where = (f"{cached} does not match fetch.sha256" if was_cached and sha256
                 else f"{filename} is not in the Keras cache ({cached})")
        raise SystemExit(
            f"fetch: {where} and downloading it from {url} failed: {error}. Put the file "
            f"there (or set KERAS_HOME to a cache that holds datasets/{filename}), or set "
            f"fetch.url to null and fetch.path to a local folder or zip.")


def unpack(archive_path, target, max_file, max_total):
    """Extract a zip into target, refusing the whole archive if any member is unsafe: every
    member is checked before anything is written (zip slip, symlinks, encryption, compression,
    names, declared sizes, count), and the bytes actually written are counted against the
    same limits. Backslashes in names are folder separators, as Windows tools write them."""
    def refuse(member, why):
        raise SystemExit(f"fetch: refusing {archive_path}: member {member.filename} {why}. "
                         f"Nothing from it was kept; check where the archive came from.")

    limits = f"fetch.max_file_mb ({max_file / MB:g})", f"fetch.max_total_mb ({max_total / MB:g})"
    try:
        archive = zipfile.ZipFile(archive_path)
    except Exception as error:  # BadZipFile, OSError, and whatever odd headers raise
        raise SystemExit(f"fetch: {archive_path} is not a readable zip file ({error})")
    with archive:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            refuse(members[MAX_MEMBERS], f"is past the {MAX_MEMBERS:,} members fetch unpacks "
                                         f"({len(members):,} in all; MAX_MEMBERS in "
                                         f"stages/fetch.py, a safety limit)")
        named_members = [(member, PurePosixPath(member.filename.replace("\\", "/")),
                          member.filename.endswith(("/", "\\"))) for member in members]
        files, folders = {}, {}  # name -> its member; folder -> the first member needing it
        for member, name, is_dir in named_members:
            if name.is_absolute() or re.match(r"[A-Za-z]:", member.filename):
                refuse(member, "has an absolute path (zip slip)")
            if ".." in name.parts:
                refuse(member, "climbs out of the target folder with '..' (zip slip)")
            if stat.S_ISLNK(member.external_attr >> 16):
                refuse(member, "is a symbolic link")
            if member.flag_bits & 0x1:
                refuse(member, "is encrypted (fetch has no password for it)")
            if member.compress_type not in UNPACKABLE:
                method = zipfile.compressor_names.get(member.compress_type, "an unknown method")
                refuse(member, f"is compressed with {method} (method {member.compress_type}), "
                               f"which Python's zipfile cannot unpack; repack it with deflate")
            longest = max((len(part.encode()) for part in name.parts), default=0)
            if longest > NAME_MAX:
                refuse(member, f"has a name too long to unpack (a part of {longest} bytes; "
                               f"file systems allow {NAME_MAX})")
            if len(os.fsencode(target / name)) >= PATH_MAX:
                refuse(member, f"has a path too long to unpack (Linux allows {PATH_MAX} bytes)")
            if member.file_size > max_file:
                refuse(member, f"declares {member.file_size / MB:.1f} MB uncompressed, over "
                               f"{limits[0]} (a zip bomb?)")
            for folder in [*name.parents, *([name] if is_dir else [])]:
                if folder.parts:
                    folders.setdefault(folder, member)
            if is_dir:
                continue
            if not name.parts:
                refuse(member, "has no file name")
            if name in files:
                refuse(member, f"has the same name as member {files[name].filename}, "
                               f"which it would overwrite")
            files[name] = member
        for name, member in files.items():
            if name in folders:
                refuse(member, f"is a file, but member {folders[name].filename} needs a "
                               f"folder of that name")
        declared = sum(member.file_size for member in members)
        if declared > max_total:
            raise SystemExit(f"fetch: refusing {archive_path}: its members declare "
                             f"{declared / MB:.1f} MB uncompressed in total, over {limits[1]}")
        total = 0
        for member, name, is_dir in named_members:
            dest = target.joinpath(*name.parts)
            try:
                (dest if is_dir else dest.parent).mkdir(parents=True, exist_ok=True)
                if not is_dir:
                    with archive.open(member) as stream:
                        total += copy_limited(stream, dest, min(max_file, max_total - total))
            except TooLarge:
                refuse(member, f"expands beyond {limits[0]} or the archive beyond {limits[1]} "
                               f"(its header declares {member.file_size} bytes; a zip bomb?)")
            except Exception as error:  # what zipfile and the decompressors raise for bad data
                if isinstance(error, OSError) and error.errno:  # our side: disk full, ...
                    raise SystemExit(f"fetch: unpacking {archive_path} failed at member "
                                     f"{member.filename}: {error.strerror}")
                refuse(member, f"is damaged ({error}); get a fresh copy of the archive")


def walk(folder, onerror=None):
    """(folder, sorted names of what it holds but real folders) for every real folder under
    folder, itself first. Symbolic links to folders are listed, never entered; a folder that
    cannot be listed goes to onerror."""
    for dirpath, dirnames, filenames in os.walk(folder, onerror=onerror):
        dirnames.sort()
        links = [name for name in dirnames if os.path.islink(os.path.join(dirpath, name))]
        yield Path(dirpath), sorted(filenames + links)


def why_left_out(path, inside, root, max_file):
    """Why a file cannot be copied safely, or None. Nothing is opened to find out."""
    try:
        info = path.lstat()
    except OSError as error:
        return f"not readable ({error.strerror})"
    if stat.S_ISLNK(info.st_mode):  # its target may be anywhere: never read through it
        return f"symbolic link (to {named(os.readlink(path))}), not followed"
    if not inside:
        return f"outside the dataset folder {root.name}/ (the one with train/ and validation/)"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_size > max_file:
        return f"{info.st_size / MB:.1f} MB, over fetch.max_file_mb ({max_file / MB:g})"
    return None


def gather(source, shown, dest, max_file, max_total, move=False):
    """Copy (or move, for our own unpacked zip) every file of the dataset folder into dest.
    Returns (copied paths, [(path, reason)] left out), paths relative to source; shown is
    the source as messages name it (the zip, not the folder it was unpacked into)."""
    root = next((folder for folder, _ in walk(source)
                 if all(os.path.isdir(folder / split) and not os.path.islink(folder / split)
                        for split in paths.SOURCE_SPLITS)), None)
    if root is None:
        archives = [named((folder / name).relative_to(source)) for folder, names in walk(source)
                    for name in names if name.lower().endswith(".zip")]
        raise SystemExit(f"fetch: no folder with {' and '.join(paths.SOURCE_SPLITS)}/ inside "
                         f"{shown}" + (f"; it holds {', '.join(archives[:3])}: unpack that and "
                                       f"point fetch.path at it" if archives else ""))
    copied, left_out, total = [], [], 0

    def unreadable_folder(error):  # os.walk cannot list it: what it holds is unknown
        left_out.append((named(Path(error.filename).relative_to(source)) + "/",
                         f"folder not readable ({error.strerror}), nothing in it copied"))

    for folder, names in walk(source, unreadable_folder):
        inside = folder.is_relative_to(root)
        if inside:  # empty ones too: validate names them
            (dest / folder.relative_to(root)).mkdir(parents=True, exist_ok=True)
        for name in names:
            path = folder / name
            reason = why_left_out(path, inside, root, max_file)
            if reason is None and not move:
                try:
                    stream = open(path, "rb")
                except OSError as error:
                    reason = f"not readable ({error.strerror})"
            if reason:
                left_out.append((named(path.relative_to(source)), reason))
                continue
            target = dest / path.relative_to(root)
            if move:
                os.replace(path, target)
            else:
                with stream:
                    try:
                        total += copy_limited(stream, target, max_total - total)
                    except TooLarge:
                        raise SystemExit(f"fetch: {shown} holds more than fetch.max_total_mb "
                                         f"({max_total / MB:g}) at {named(path)}; raise the "
                                         f"limit or point fetch.path at a smaller folder")
            copied.append(path.relative_to(root).as_posix())
    if not any(name.split("/")[0] in paths.SOURCE_SPLITS for name in copied):
        raise SystemExit(f"fetch: nothing to fetch: no file of {shown} could be copied from "
                         f"{' or '.join(paths.SOURCE_SPLITS)}/ of its dataset folder"
                         + (f" ({len(left_out)} left out, e.g. {left_out[0][0]}: "
                            f"{left_out[0][1]})" if left_out else ""))
    return copied, left_out


def within(path, folder):
    """Whether path is folder or inside it, compared by device and inode: symbolic links and
    bind mounts do not hide it."""
    resolved = Path(path).resolve()
    for ancestor in (resolved, *resolved.parents):
        with contextlib.suppress(OSError):
            if os.path.samefile(ancestor, folder):
                return True
    return False


def locate(fetch):
    """The source as a local path (downloaded first if fetch.url) and whether Keras checked
    it against fetch.sha256; checked before anything is written or deleted."""
    if fetch.url:
        return download(fetch.url, fetch.sha256)
    path = Path(fetch.path).expanduser()
    try:
        kind = stat.S_IFMT(path.stat().st_mode)
    except FileNotFoundError:
        raise SystemExit(f"fetch: fetch.path {fetch.path} does not exist")
    except OSError as error:
        raise SystemExit(f"fetch: cannot read fetch.path {fetch.path} ({error.strerror})")
    if kind not in (stat.S_IFDIR, stat.S_IFREG):
        raise SystemExit(f"fetch: fetch.path {path} is neither a folder nor a regular file")
    for output in (*OUTPUTS, *paths.RAW.parent.glob(PARTIAL_PREFIX + "*")):
        if within(path, output):
            raise SystemExit(f"fetch: fetch.path {path} is inside {output}, which the "
                             f"pipeline writes and deletes; keep the source elsewhere")
        if kind == stat.S_IFDIR and within(output, path):
            raise SystemExit(f"fetch: fetch.path {path} holds {output}, which the pipeline "
                             f"writes; point fetch.path at the dataset itself")
    return path, False


def resolve_source(fetch, path, checked, scratch):
    """A local folder holding the dataset: the source folder itself, or the zip unpacked."""
    if path.is_dir():
        if fetch.sha256:
            raise SystemExit(f"fetch: fetch.sha256 pins a zip file, but fetch.path {path} is "
                             f"a folder; set fetch.sha256 to null")
        try:
            os.listdir(path)
        except OSError as error:
            raise SystemExit(f"fetch: cannot read the folder {path} ({error.strerror})")
        return path, False
    try:
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as error:
        raise SystemExit(f"fetch: cannot read {path} ({error.strerror})")
    print(f"fetch: {path} has sha256 {digest} (set fetch.sha256 to it to pin this file)")
    if fetch.sha256 and digest != fetch.sha256 and not checked:
        raise SystemExit(f"fetch: {path} has sha256 {digest}, not the {fetch.sha256} that "
                         f"fetch.sha256 pins; use the pinned file or update fetch.sha256")
    if not zipfile.is_zipfile(path):
        if fetch.url:  # the usual cause: an interrupted download left in the Keras cache
            raise SystemExit(f"fetch: the cached download {path} is not a complete zip file "
                             f"(truncated?); delete it and run again to download it afresh")
        raise SystemExit(f"fetch: {path} is neither a folder nor a complete zip file")
    unpack(path, scratch, fetch.max_file_mb * MB, fetch.max_total_mb * MB)
    return scratch, True


def main():
    fetch = params.load().fetch
    with locked(paths.RAW.parent, "fetch"):  # one fetch or validate at a time in this project
        path, checked = locate(fetch)
        for stale in sorted(paths.RAW.parent.glob(PARTIAL_PREFIX + "*")):  # no run is live
            print(f"fetch: removing {stale}, left by an interrupted run")
            shutil.rmtree(stale)
        staging = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=paths.RAW.parent))
        try:
            source, unpacked = resolve_source(fetch, path, checked, staging / "unpacked")
            copied, left_out = gather(source, path, staging / "raw", fetch.max_file_mb * MB,
                                      fetch.max_total_mb * MB, move=unpacked)
            # The new copy is complete: only now does the old data/raw go.
            if os.path.lexists(paths.RAW):
                paths.RAW.rename(staging / "old")
            (staging / "raw").rename(paths.RAW)
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
