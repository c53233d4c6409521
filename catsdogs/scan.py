"""Stage validate's metadata table of data/raw: one row per file, unread ones with a problem."""
import collections
import contextlib
import hashlib
import io
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image

from catsdogs import paths
from catsdogs.data import image_decoder
from catsdogs.decoded import PROGRESS_EVERY
from catsdogs.duplicates import difference_hash
from catsdogs.files import NOT_REGULAR, named, walk

COLUMNS = ["path", "class", "split", "subfolder", "hidden", "format", "mode",
           "width", "height", "pixels", "bytes", "sha256", "decodable", "decoded_sha256"]
INTERNAL = ["min_side", "aspect_ratio", "dhash", "problem", "pixels_row"]  # not the manifest's
AHEAD_PER_WORKER = 4  # files described ahead of the one written, per thread


def scan_raw(knobs, image_size, pixels_file, workers=None):
    """The table (COLUMNS + INTERNAL), in path order; images go to pixels_file (read_row)."""
    folders = []

    def unreadable(error):  # os.walk cannot list it; a data/raw that vanished is not judged
        if not isinstance(error, FileNotFoundError):
            shown = named(error.filename)
            folders.append({"path": shown + "/", "problem": f"folder not readable "
                            f"({error.strerror}); nothing in it judged",
                            **where(PurePosixPath(shown).relative_to(paths.RAW).parts + ("",))})

    # Symbolic links to folders are judged (as files: no image), never entered.
    files = sorted(folder / name for folder, names in walk(paths.RAW, unreadable)
                   for name in names)
    # Pillow refuses huge declared sizes on open; describe() checks max_pixels before decoding.
    Image.MAX_IMAGE_PIXELS = None
    Image.init()  # every plugin's magic-number check, for claimed_format()
    rows, pixel_rows = [], 0
    described = in_threads(lambda path: describe(path, knobs, image_size), files, workers)
    for count, row in enumerate(described, 1):
        image = row.pop("image", None)
        if image is not None:
            pixels_file.write(image.data)
            row["pixels_row"], pixel_rows = pixel_rows, pixel_rows + 1
        rows.append(row)
        if count % PROGRESS_EVERY == 0:
            print(f"validate: scanned {count}/{len(files)} files")
    pixels_file.flush()  # for readers of its descriptor (os.pread)
    table = pd.DataFrame(rows + folders, columns=COLUMNS + INTERNAL)
    return table.astype({c: "Int64" for c in ("width", "height", "min_side", "pixels", "bytes",
                                              "pixels_row")})


def read_row(pixels_file, row, image_size):
    """Image number `row` of the pixels file scan_raw wrote."""
    length = image_size * image_size * 3
    data = os.pread(pixels_file.fileno(), length, row * length)
    if len(data) != length:
        raise RuntimeError(f"validate: image {row} of the scan's pixels file is cut short")
    return np.frombuffer(data, np.uint8).reshape(image_size, image_size, 3)


def in_threads(function, items, workers=None):
    """function(item) for each item, in order, by threads (decoding releases the GIL; a fork
    after TensorFlow loaded can deadlock); at most AHEAD_PER_WORKER per thread queued."""
    workers = workers or os.cpu_count()
    pending = collections.deque()
    with ThreadPoolExecutor(workers) as pool:
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) >= AHEAD_PER_WORKER * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # an error or an early stop: the files queued are not described
            pool.shutdown(cancel_futures=True)


def describe(path, knobs, image_size):
    """One row: Pillow reads the header; TensorFlow decodes if it declares <= max_pixels."""
    shown = named(path)
    row = {"path": shown, **where(PurePosixPath(shown).relative_to(paths.RAW).parts)}
    data, problem = read_regular(path)
    if shown != path.as_posix():
        problem = "; ".join(filter(None, ["file name not valid UTF-8 (shown with \\x escapes)",
                                          problem]))
    row["problem"] = problem or ""
    if data is None:
        return row
    row.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    if row["hidden"]:
        return row  # system files, not images: the name alone quarantines them
    try:
        with Image.open(io.BytesIO(data), formats=knobs.formats) as image:
            row.update(format=image.format or "", mode=image.mode, width=image.width,
                       height=image.height, min_side=min(image.size),
                       aspect_ratio=max(image.size) / max(min(image.size), 1),
                       pixels=image.width * image.height)
    except Exception:  # plugins raise many kinds on bad data; one file never crashes the stage
        claimed = claimed_format(data)  # "": unreadable (an allowed format that failed, too)
        row["format"] = "" if claimed in knobs.formats else claimed
    # TensorFlow allocates what the header declares: decode only a known, bounded size.
    if row.get("pixels") is not None and row["pixels"] <= knobs.max_pixels:
        try:  # the training decoder is stricter than Pillow
            pixels = image_decoder(image_size)(data).numpy()
        except Exception:  # tf.errors.OpError for garbage or truncated data
            row["decodable"] = False
            return row
        row.update(decodable=True, decoded_sha256=hashlib.sha256(pixels.tobytes()).hexdigest(),
                   dhash=difference_hash(pixels), image=pixels)
    return row


def where(parts):
    """split, class, subfolder and hidden, from a path's parts below data/raw."""
    split = parts[0] if len(parts) > 1 else ""
    placed = split in paths.SOURCE_SPLITS  # else class and subfolder mean nothing
    return {"split": split,
            "class": (parts[1] if len(parts) > 2 else "") if placed else None,
            "subfolder": "/".join(parts[2:-1]) if placed else None,  # between class and file
            "hidden": any(part.startswith(".") for part in parts)}  # .DS_Store, ._x.jpg, .git/


def read_regular(path):
    """(bytes, None) for a regular file (links followed: DVC links from its cache), else
    (None, why not read): a FIFO or a device could block forever."""
    try:
        kind = stat.S_IFMT(os.stat(path).st_mode)
        if kind == stat.S_IFREG:  # O_NONBLOCK: a FIFO swapped in since cannot block the open
            with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
                kind = stat.S_IFMT(os.fstat(f.fileno()).st_mode)
                if kind == stat.S_IFREG:
                    return f.read(), None
        return None, f"not a regular file ({NOT_REGULAR.get(kind, 'a special file')}), not read"
    except OSError as error:
        return None, f"not readable ({error.strerror})"


def claimed_format(data):
    """The format the first bytes claim, by Pillow's magic-number checks alone."""
    for name in Image.ID:
        accept = Image.OPEN[name][1]
        with contextlib.suppress(Exception):
            if accept and accept(data[:16]):
                return name
    return ""

