"""Stage fetch: copy the dataset folder (the one with train/ and validation/) of fetch.url (through
the Keras cache, so a seeded $KERAS_HOME works offline) or fetch.path (a local zip or folder) into
data/raw, unchanged. Unsafe files are left out and listed in reports/fetch/left_out.csv; a zip with
any unsafe member is refused whole; data/raw is replaced only once the new copy is complete."""
import contextlib
import csv
import hashlib
import io
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

from catsdogs import params, paths
from catsdogs.files import in_the_way, locked, named, walk
from catsdogs.param_values import download_name
from catsdogs.reports import write_json, write_text
from catsdogs.unzip import MB, TooLarge, copy_limited, unpack

PARTIAL_PREFIX = paths.RAW.name + ".partial-"  # never mistaken for data/raw by a later run
LISTED_MAX = 20  # left-out files printed; the CSV has them all
# What the pipeline writes (and deletes): a source inside one, or holding one, is refused.
OUTPUTS = (paths.RAW, paths.MANIFEST.parent, paths.SPLIT, paths.DECODED, paths.FINAL_MODEL.parent,
           paths.REPORTS)


def main():
    fetch = params.load().fetch
    with locked("fetch", paths.RAW.parent):  # one fetch or validate at a time in this project
        path, checked = locate(fetch)
        clear_the_way()
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
        table, report = io.StringIO(), paths.FETCH_REPORTS
        csv.writer(table).writerows([("path", "reason"), *left_out])
        write_text(report / "left_out.csv", table.getvalue())
        write_json(report / "metrics.json", {"files": len(copied) + len(left_out),
                                             "copied": len(copied), "left_out": len(left_out)})
    print(f"fetch: {len(copied) + len(left_out)} files in the source: {len(copied)} copied to "
          f"{paths.RAW}, {len(left_out)} left out (see {report / 'left_out.csv'})")
    for name, reason in left_out[:LISTED_MAX]:
        print(f"fetch: left out {name}: {reason}")
    if len(left_out) > LISTED_MAX:
        print(f"fetch: ... and {len(left_out) - LISTED_MAX} more")


def locate(fetch):
    """The source as a local path (downloaded if fetch.url), and whether Keras checked its hash."""
    if fetch.url:
        return download(fetch.url, fetch.sha256)
    path = Path(fetch.path)
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


def within(path, folder):
    """Whether path is folder or inside it, by device and inode: links and mounts hide nothing."""
    resolved = Path(path).resolve()
    for ancestor in (resolved, *resolved.parents):
        with contextlib.suppress(OSError):
            if os.path.samefile(ancestor, folder):
                return True
    return False


def download(url, sha256):
    """The zip at url in the Keras cache (downloaded if needed), and whether Keras checked it."""
    filename, cache = download_name(url), paths.keras_cache()
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


def clear_the_way():
    """Stop if anything but a folder is where fetch needs one; remove interrupted runs' folders."""
    stale = sorted(paths.RAW.parent.glob(PARTIAL_PREFIX + "*"))
    files = [path for path in (paths.REPORTS, paths.FETCH_REPORTS)
             if os.path.lexists(path) and not path.is_dir()]
    files += [path for path in stale if path.is_symlink() or not path.is_dir()]  # not ours
    if files:
        raise SystemExit(in_the_way("fetch", files[0]))
    for folder in stale:
        print(f"fetch: removing {folder}, left by an interrupted run")
        shutil.rmtree(folder)


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


def gather(source, shown, dest, max_file, max_total, move=False):
    """Copy (or move, from our own unpacked zip) the dataset folder's files into dest: (copied,
    [(path, reason)] left out). shown names the source in messages (the zip, not its unpacking)."""
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
        for path in (folder / name for name in names):
            reason = why_left_out(path, inside, root, max_file)
            try:
                stream = None if reason or move else open(path, "rb")
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


if __name__ == "__main__":
    main()
