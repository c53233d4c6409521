"""Classify photos with the artifact alone (models/export/, or what `dvc artifacts get`
fetched): from any folder, never reading params.yaml. Installed as `catsdogs-predict`. A path
that cannot be classified gets one `error:` line (the others still are) and exit status 1; a
bad model: one `error:` line, exit 2."""
import argparse
import csv
import io
import json
import os
import re
import stat
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from catsdogs import paths
from catsdogs.files import NOT_REGULAR, named, walk

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp"}  # what decode_image reads, by name
MB = 1024 * 1024
# The caps' defaults: fetch.max_file_mb and validate.max_pixels of the pipeline's params.
MAX_FILE_MB, MAX_PIXELS = 64, 40_000_000
FORMATS = ("text", "json", "csv")


def photos(given):
    """[(path, None)] for a path given; for a folder, each image file below it (sorted, hidden
    ones left out, links to folders not entered) and (folder, why) for each it cannot list."""
    try:
        if not stat.S_ISDIR(os.stat(given).st_mode):
            return [(given, None)]
    except OSError:
        return [(given, None)]  # reading it says why
    found = []

    def unreadable(error):  # os.walk cannot list a folder: say so, go on with the others
        found.append((Path(error.filename), f"folder not readable ({error.strerror}); "
                                            f"nothing in it classified"))
    for folder, names in walk(given, unreadable):
        if not any(part.startswith(".") for part in folder.relative_to(given).parts):
            found += [(folder / name, None) for name in names if not name.startswith(".")
                      and Path(name).suffix.lower() in IMAGE_SUFFIXES]
    return found or [(given, f"a folder without image files "
                             f"({', '.join(sorted(IMAGE_SUFFIXES))})")]


def read_photo(path, max_mb):
    """(bytes, None) of a regular file (links followed) of at most max_mb, else (None, why
    not): a FIFO or a device is never opened, it could block or never end."""
    max_bytes = int(max_mb * MB)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            kind = NOT_REGULAR.get(stat.S_IFMT(info.st_mode), "a special file")
            return None, f"not a regular file ({kind}), not read"
        data = b""
        if info.st_size <= max_bytes:  # O_NONBLOCK and a bounded read: safe if swapped since
            with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
                data = file.read(max_bytes + 1)
    except OSError as error:
        return None, f"not readable ({error.strerror})"
    if max(info.st_size, len(data)) > max_bytes:
        return None, (f"{max(info.st_size, len(data)) / MB:.1f} MB, over --max-file-mb "
                      f"({max_mb:g}), not read")
    return data, None


def photo_decoder(image_size, max_mb, max_pixels):
    """decode(path) -> (uint8 image_size square, None) or (None, why not), by the pipeline's
    decode_image after the byte cap and, from the header alone, the pixel cap."""
    import tensorflow as tf  # TensorFlow loads only now: --help and argument errors stay instant

    from catsdogs.data import decode_image
    Image.MAX_IMAGE_PIXELS = None  # Pillow's own bomb check would hide the header's size

    def decode(path):
        data, problem = read_photo(path, max_mb)
        if problem:
            return None, problem
        try:  # the size the header declares (Pillow reads only the header)
            with Image.open(io.BytesIO(data)) as image:
                pixels = image.width * image.height
        except Exception:  # Pillow's plugins raise many kinds: TensorFlow then says what is wrong
            pixels = None
        if pixels is not None and pixels > max_pixels:
            return None, (f"declares {pixels:,} pixels, over --max-pixels ({max_pixels:,}), "
                          f"not decoded")
        try:
            return decode_image(data, image_size).numpy(), None
        except tf.errors.OpError as error:
            # TensorFlow's message in one line, without the op and function names around it
            message = re.sub(r"\{\{function_node [^}]*\}\}|\[Op:\w+\].*", "", error.message)
            return None, " ".join(message.split()) or type(error).__name__
    return decode


def printable(text):
    """A name on one line: control characters (a newline in a file name) as \\n, \\x1b..."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class Output:
    """Answers in order as they come: text lines or CSV rows on stdout, or one JSON list at
    the end; an error is also an `error:` line on stderr, whatever the format."""

    def __init__(self, form, classes):
        self.form, self.records = form, []
        self.rows = csv.DictWriter(sys.stdout, ["path", "class", "error",
                                                *(f"p_{name}" for name in classes)],
                                   restval="", lineterminator="\n") if form == "csv" else None
        if self.rows:
            self.rows.writeheader()

    def add(self, record):
        self.records.append(record)
        if "error" in record:
            print(f"error: {printable(record['path'])}: {record['error']}", file=sys.stderr,
                  flush=True)
        elif self.form == "text":
            name = record["class"]
            print(f"{printable(record['path'])}: {name} (p_{name} = {record[f'p_{name}']:.3f})")
        if self.rows:
            self.rows.writerow(record)
        sys.stdout.flush()  # in order with the error lines

    def close(self):
        if self.form == "json":
            print(json.dumps(self.records, indent=2))


def classify(entries, classifier, decode, batch_size, output):
    """Each (path, problem) of entries answered in order, batch_size photos per model call."""
    pending, images = [], []

    def flush():
        if images:
            probabilities = classifier(np.stack(images))
            answers = iter(zip(classifier.classes_of(probabilities), probabilities))
            for record in (r for r in pending if "error" not in r):
                name, row = next(answers)
                record.update({"class": name, **{f"p_{c}": float(p)
                                                 for c, p in zip(classifier.classes, row)}})
        for record in pending:
            output.add(record)
        pending.clear()
        images.clear()

    for path, problem in entries:
        image, problem = (None, problem) if problem else decode(path)
        pending.append({"path": named(path)} | ({"error": problem} if problem else {}))
        if image is not None:
            images.append(image)
            if len(images) == batch_size:
                flush()
    flush()


def at_least(minimum, kind):
    """An argparse type: a number of kind (int, float), minimum or more."""
    def parse(text):
        value = kind(text)
        if not value >= minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse's "invalid int value: 'x'"
    return parse


def arguments(argv):
    parser = argparse.ArgumentParser(prog="catsdogs-predict", description=__doc__.split(": from")[0] + ".")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    parser.add_argument("--model", default=str(paths.EXPORT),
                        help=f"the artifact folder (default: {paths.EXPORT}, the project's), "
                             f"or a model in it: model.keras, saved_model, "
                             f"model_float32.tflite (the folder's default), model_int8.tflite")
    parser.add_argument("--format", choices=FORMATS, default="text",
                        help="text: `path: class (p_class = ...)` lines; json: one list; "
                             "csv: path,class,error,p_<class>... (default: text)")
    parser.add_argument("--batch-size", type=at_least(1, int), default=32,
                        help="photos per model call (default: 32)")
    parser.add_argument("--max-file-mb", type=at_least(0, float), default=MAX_FILE_MB,
                        help=f"larger files are not read (default: {MAX_FILE_MB})")
    parser.add_argument("--max-pixels", type=at_least(1, int), default=MAX_PIXELS,
                        help=f"images declaring more are not decoded (default: {MAX_PIXELS:,})")
    parser.add_argument("--threads", type=at_least(1, int), default=None,
                        help="TFLite threads (default: one per CPU core)")
    return parser.parse_args(argv)


def main(argv=None):
    started = time.perf_counter()
    args = arguments(argv)
    from catsdogs import serving  # TensorFlow: after the arguments are checked

    try:
        classifier = serving.load(args.model, args.threads)
    except serving.BadModel as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    start_up = time.perf_counter() - started
    decode = photo_decoder(classifier.image_size, args.max_file_mb, args.max_pixels)
    output = Output(args.format, classifier.classes)
    start = time.perf_counter()
    entries = (entry for given in args.paths for entry in photos(Path(given)))
    classify(entries, classifier, decode, args.batch_size, output)
    output.close()
    seconds, errors = time.perf_counter() - start, sum("error" in r for r in output.records)
    answered = len(output.records) - errors
    per_photo = f", {1000 * seconds / answered:.1f} ms per photo" if answered else ""
    print(f"predict: {answered} photos classified, {errors} not; start-up {start_up:.1f} s "
          f"(TensorFlow and the model){per_photo} (batches of {args.batch_size})",
          file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
