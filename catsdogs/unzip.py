"""A zip unpacked for stage fetch once every member passed the checks, else refused whole."""
import os
import re
import stat
import zipfile
from pathlib import PurePosixPath

MB = 1024 * 1024
# Limits besides fetch.max_*_mb: members (an empty one costs a file; the dataset has about 3,000,
# the full Kaggle one 25,000), and the bytes Linux allows a file name and a whole path.
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


def unpack(archive_path, target, max_file, max_total):
    """Extract a zip into target (limits in bytes), or stop naming the first unsafe member."""
    try:
        archive = zipfile.ZipFile(archive_path)
    except Exception as error:  # BadZipFile, OSError, and whatever odd headers raise
        raise SystemExit(f"fetch: {archive_path} is not a readable zip file ({error})")
    with archive:
        total = 0
        for member, name, is_dir in safe_members(archive, archive_path, target, max_file,
                                                 max_total):
            dest = target.joinpath(*name.parts)
            try:
                (dest if is_dir else dest.parent).mkdir(parents=True, exist_ok=True)
                if not is_dir:
                    with archive.open(member) as stream:
                        total += copy_limited(stream, dest, min(max_file, max_total - total))
            except TooLarge:
                refuse(archive_path, member, f"expands beyond {limit('file', max_file)} or the "
                       f"archive beyond {limit('total', max_total)} (its header declares "
                       f"{member.file_size} bytes; a zip bomb?)")
            except Exception as error:  # what zipfile and the decompressors raise for bad data
                if isinstance(error, OSError) and error.errno:  # our side: disk full, ...
                    raise SystemExit(f"fetch: unpacking {archive_path} failed at member "
                                     f"{member.filename}: {error.strerror}")
                refuse(archive_path, member, f"is damaged ({error}); get a fresh copy of the "
                                             f"archive")


def safe_members(archive, archive_path, target, max_file, max_total):
    """[(member, its name as a path, whether a folder)], once all are safe and none overwrites."""
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        refuse(archive_path, members[MAX_MEMBERS], f"is past the {MAX_MEMBERS:,} members fetch "
               f"unpacks ({len(members):,} in all; MAX_MEMBERS in catsdogs/unzip.py, a safety "
               f"limit)")
    # Backslashes are folder separators, as Windows tools write them.
    named = [(member, PurePosixPath(member.filename.replace("\\", "/")),
              member.filename.endswith(("/", "\\"))) for member in members]
    files, folders = {}, {}  # name -> its member; folder -> the first member needing it
    for member, name, is_dir in named:
        if why := unsafe(member, name, is_dir, target, max_file):
            refuse(archive_path, member, why)
        for folder in [*name.parents, *([name] if is_dir else [])]:
            if folder.parts:
                folders.setdefault(folder, member)
        if is_dir:
            continue
        if name in files:
            refuse(archive_path, member, f"has the same name as member "
                                         f"{files[name].filename}, which it would overwrite")
        files[name] = member
    for name, member in files.items():
        if name in folders:
            refuse(archive_path, member, f"is a file, but member {folders[name].filename} "
                                         f"needs a folder of that name")
    declared = sum(member.file_size for member in members)
    if declared > max_total:
        raise SystemExit(f"fetch: refusing {archive_path}: its members declare "
                         f"{declared / MB:.1f} MB uncompressed in total, over "
                         f"{limit('total', max_total)}")
    return named


def unsafe(member, name, is_dir, target, max_file):
    """Why one member cannot be unpacked safely into target, or None."""
    longest = max((len(part.encode()) for part in name.parts), default=0)
    method = zipfile.compressor_names.get(member.compress_type, "an unknown method")
    checks = [
        (name.is_absolute() or re.match(r"[A-Za-z]:", member.filename),
         "has an absolute path (zip slip)"),
        (".." in name.parts, "climbs out of the target folder with '..' (zip slip)"),
        (stat.S_ISLNK(member.external_attr >> 16), "is a symbolic link"),
        (member.flag_bits & 0x1, "is encrypted (fetch has no password for it)"),
        (member.compress_type not in UNPACKABLE,
         f"is compressed with {method} (method {member.compress_type}), which Python's "
         f"zipfile cannot unpack; repack it with deflate"),
        (longest > NAME_MAX, f"has a name too long to unpack (a part of {longest} bytes; "
                             f"file systems allow {NAME_MAX})"),
        (len(os.fsencode(target / name)) >= PATH_MAX,
         f"has a path too long to unpack (Linux allows {PATH_MAX} bytes)"),
        (member.file_size > max_file, f"declares {member.file_size / MB:.1f} MB uncompressed, "
                                      f"over {limit('file', max_file)} (a zip bomb?)"),
        (not (is_dir or name.parts), "has no file name"),
    ]
    return next((why for failed, why in checks if failed), None)


def limit(which, value):
    return f"fetch.max_{which}_mb ({value / MB:g})"


def refuse(archive_path, member, why):
    raise SystemExit(f"fetch: refusing {archive_path}: member {member.filename} {why}. "
                     f"Nothing from it was kept; check where the archive came from.")
