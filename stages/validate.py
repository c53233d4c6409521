"""Stage validate: the one accept/reject step. Every file fetch landed in data/raw is
accepted into the manifest or quarantined with its reasons; nothing is changed or deleted.

One metadata row per file (where it sits, what Pillow reads from the header, size, sha256,
whether the training decoder accepts it and the sha256 of the pixels it gives at
model.image_size); Great Expectations checks that table against rules(), and each failing
row takes the rule's reason. Copies of one picture (same pixels at the training size,
whatever the bytes) are quarantined like byte-identical copies; near-duplicates (by a
difference hash) are reported, not quarantined. (fetch never lands symbolic links;
a file DVC links from its cache, as with cache.type symlink, is judged by its content.)
Only regular files are opened, and Pillow only with the plugins of validate.formats; what
cannot be read (a FIFO, a device, an unreadable file or folder, a name that is not UTF-8)
is quarantined with its reason too. One run at a time: fetch and validate hold a lock on
data/ while they run. A run removes the previous run's outputs first and writes each new
one whole (a temporary file, then a rename); a run that fails writes no manifest or metrics.

Beside the manifest, manifest.images.npy holds each accepted image as the training decoder
gave it here (uint8, model.image_size): the decode stage orders these rows by split instead
of decoding every file a second time.
"""
import collections
import contextlib
import hashlib
import io
import json
import math
import os
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

# catsdogs first: importing it quiets TensorFlow's start-up logs before TensorFlow loads.
from catsdogs import params, paths
from catsdogs.data import image_decoder, save_decoded
from catsdogs.duplicates import copy_reasons, difference_hash, same_pictures
from catsdogs.files import discard, locked, named, replaced

import great_expectations as gx
import numpy as np
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig
from PIL import Image

REPORT_DIR = paths.VALIDATE_REPORTS
COLUMNS = ["path", "class", "split", "subfolder", "hidden", "format", "mode",
           "width", "height", "pixels", "bytes", "sha256", "decodable", "decoded_sha256"]
PROGRESS_EVERY = 500      # files between progress lines
WINDOW_PER_WORKER = 4     # files described ahead of the one written, per thread
INTERNAL = ["min_side", "dhash", "problem", "pixels_row"]  # the scan's, not the manifest's
# COMPLETE lists every failing row; naming rows by path makes gx_result.json readable too.
REPORTS = ["quarantine.csv", "near_duplicates.csv", "gx_result.json", "metrics.json"]
RESULT_FORMAT = {"result_format": "COMPLETE", "unexpected_index_column_names": ["path"]}
E = gx.expectations
NOT_REGULAR = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
               stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def rules(classes, knobs):
    """Each per-file rule once: (the expectation on the metadata table, the reason a
    failing row is quarantined under). The order is the order of a file's reasons. A check
    that was not made leaves None in its column, which GX does not judge."""
    def not_in_set(column, allowed):
        return E.ExpectColumnValuesToBeInSet(column=column, value_set=list(allowed))

    return [
        (not_in_set("hidden", [False]), lambda row: "hidden file"),
        (not_in_set("split", paths.SOURCE_SPLITS),
         lambda row: f"unknown split '{row['split']}'" if row["split"]
         else "not in a split folder"),
        (not_in_set("class", classes),
         lambda row: f"unknown class '{row['class']}'" if row["class"]
         else "not in a class folder"),
        (not_in_set("subfolder", [""]),
         lambda row: f"nested below the class folder (in {row['subfolder']}/)"),
        (E.ExpectColumnValuesToBeBetween(column="bytes", min_value=1),
         lambda row: "empty file (0 bytes)"),
        (not_in_set("format", knobs.formats),
         lambda row: (f"format {row['format']} not allowed (validate.formats is "
                      f"{', '.join(knobs.formats)})" if row["format"] else "unreadable by Pillow")),
        (E.ExpectColumnValuesToBeBetween(column="min_side", min_value=knobs.min_side_px),
         lambda row: (f"too small ({row['width']}x{row['height']} px; validate.min_side_px is "
                      f"{knobs.min_side_px})")),
        (E.ExpectColumnValuesToBeBetween(column="pixels", max_value=knobs.max_pixels),
         lambda row: (f"declares {row['width']}x{row['height']} px = {row['pixels']:,} pixels, "
                      f"over validate.max_pixels ({knobs.max_pixels:,}); not decoded "
                      f"(a decompression bomb?)")),
        (not_in_set("decodable", [True]), lambda row: "not decodable by TensorFlow"),
    ]




def decoded_content(data, image_size):
    """What the model sees of these bytes: whether the training decoder accepts them (Pillow
    is more lenient) and, if so, the image it gives at model.image_size (decode_image), its
    sha256 and its difference hash."""
    try:
        pixels = image_decoder(image_size)(data).numpy()
    except Exception:  # tf.errors.OpError for garbage or truncated data; one file never crashes
        return {"decodable": False}
    return {"decodable": True, "decoded_sha256": hashlib.sha256(pixels.tobytes()).hexdigest(),
            "dhash": difference_hash(pixels), "image": pixels}




def where(parts):
    """split, class, subfolder and hidden of a file, from its path's parts below data/raw."""
    split = parts[0] if len(parts) > 1 else ""
    placed = split in paths.SOURCE_SPLITS  # else class and subfolder mean nothing
    return {"split": split,
            "class": (parts[1] if len(parts) > 2 else "") if placed else None,
            "subfolder": "/".join(parts[2:-1]) if placed else None,  # between class and file
            "hidden": any(part.startswith(".") for part in parts)}  # .DS_Store, ._x.jpg, .git/


def read_regular(path):
    """(bytes, None) if path is a regular file (through a symbolic link, as DVC links files
    from its cache), else (None, why it was not read). Nothing else is opened: a FIFO or a
    device could block forever or never end."""
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
    """The format a file's first bytes claim, by Pillow's magic-number checks alone: no
    plugin parses it."""
    for name in Image.ID:
        accept = Image.OPEN[name][1]
        with contextlib.suppress(Exception):
            if accept and accept(data[:16]):
                return name
    return ""


def describe(path, knobs, image_size):
    """One metadata row. Pillow reads only the header, with the plugins of validate.formats
    alone; TensorFlow decodes the whole image if that header declares at most
    validate.max_pixels. Whatever kept the file from being read, or its name from being
    trusted, is the row's problem (an internal column, like min_side): it quarantines the row."""
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
    row["format"] = ""  # stays empty if Pillow cannot read it: quarantined as unreadable
    try:
        with Image.open(io.BytesIO(data), formats=knobs.formats) as image:
            row.update(format=image.format or "", mode=image.mode, width=image.width,
                       height=image.height, min_side=min(image.size),
                       pixels=image.width * image.height)
    except Exception:  # plugins raise many kinds on bad data; one file never crashes the stage
        claimed = claimed_format(data)  # a format not allowed is named as such; an allowed
        row["format"] = "" if claimed in knobs.formats else claimed  # one failed: unreadable
    # TensorFlow allocates what the header declares: decode only a known, bounded size.
    if row.get("pixels") is not None and row["pixels"] <= knobs.max_pixels:
        row.update(decoded_content(data, image_size))
    return row


def scan_raw(knobs, image_size, pixels_file, workers=None):
    """The metadata table of every file under data/raw (and of each folder that cannot be
    listed: nothing in it can be judged), in path order. Files are described by `workers`
    threads at once (None: one per CPU core). Each decoded image is appended to pixels_file
    (a binary file) in path order: at most a few per thread wait in memory. Its column
    pixels_row counts the images before it there."""
    files, folders = [], []

    def unreadable(error):  # os.walk cannot list it; a data/raw that vanished is not judged
        if not isinstance(error, FileNotFoundError):
            shown = named(error.filename)
            folders.append({"path": shown + "/", "problem": f"folder not readable "
                            f"({error.strerror}); nothing in it judged",
                            **where(PurePosixPath(shown).relative_to(paths.RAW).parts + ("",))})

    for folder, dirnames, names in os.walk(paths.RAW, onerror=unreadable):
        links = [name for name in dirnames if os.path.islink(os.path.join(folder, name))]
        files += [Path(folder, name) for name in names + links]  # links are judged, not entered
    # Pillow refuses (or warns about) huge declared sizes as soon as it opens a file. Here it
    # only reads headers, and describe() checks validate.max_pixels before anything decodes.
    Image.MAX_IMAGE_PIXELS = None
    Image.init()  # every plugin's magic-number check, for claimed_format()
    rows, pixel_rows = [], 0
    # Threads, not processes: reading, hashing and TensorFlow's decoding (most of the time)
    # release the GIL, so threads use every core without a fork after TensorFlow loaded
    # (which can deadlock) or a spawned worker's start-up.
    workers = workers or os.cpu_count()
    with ThreadPoolExecutor(workers) as pool:
        described = in_order(pool, lambda path: describe(path, knobs, image_size),
                             sorted(files), window=WINDOW_PER_WORKER * workers)
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


def in_order(pool, function, items, window):
    """function(item) for each item, run by the pool, yielded in the items' order; at most
    `window` are submitted and not yet taken (Executor.map submits them all at once: its
    futures, and results waiting behind a slow one, would grow with the number of items,
    and an error here would wait for every one of them)."""
    pending = collections.deque()
    try:
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def run_great_expectations(table, expectations):
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # keep the log readable
    batch = (context.data_sources.add_pandas("raw_images").add_dataframe_asset("metadata")
             .add_batch_definition_whole_dataframe("all_images"))
    suite = context.suites.add(gx.ExpectationSuite(name="raw_images"))
    for expectation in expectations:
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="raw_images", data=batch, suite=suite))
    return definition.run(batch_parameters={"dataframe": table}, result_format=RESULT_FORMAT)


def quarantine(table, result, reasons_by_rule, knobs, image_size):
    """A `reason` column: the rules each row fails, then copies of one picture; and the
    near-duplicate pairs (see same_pictures)."""
    # What stopped a file being read comes first, then the rules it fails.
    reasons = {path: [problem] if problem else [] for path, problem in
               zip(table["path"], table["problem"])}
    rows = table.set_index("path", drop=False)
    for outcome in result.results:
        rule = (outcome.expectation_config.meta or {}).get("rule")
        if rule is None:
            continue  # a table-wide expectation
        for hit in outcome.result.get("unexpected_index_list") or []:
            reasons[hit["path"]].append(reasons_by_rule[rule](rows.loc[hit["path"]]))
    table = table.assign(reason=["; ".join(reasons[p]) for p in table["path"]])
    near, same_as = same_pictures(table[table["reason"] == ""], knobs, image_size)
    for index, reason in copy_reasons(table, same_as, image_size).items():
        table.loc[index, "reason"] = reason
    return table, near


def main():
    p = params.load()
    with locked(paths.RAW.parent, "validate"):  # one fetch or validate at a time in this project
        judge(p.classes, p.validate_, p.model.image_size)


def judge(classes, knobs, image_size):
    # A previous run's outputs go first: a run that fails (an exception, too few images)
    # leaves no manifest or metrics to be taken for its own, and split then stops.
    discard(paths.MANIFEST.parent, *(REPORT_DIR / name for name in REPORTS))
    # The decoded images wait in an unnamed file in data/ (on disk, not in memory) until the
    # accepted ones are known.
    with tempfile.TemporaryFile(dir=paths.RAW.parent) as pixels_file:
        table = scan_raw(knobs, image_size, pixels_file)
        accepted, metrics = judged(table, classes, knobs, image_size)
        undecoded = accepted["path"][accepted["pixels_row"].isna()]
        if len(undecoded):  # the rules quarantine every file not decoded: never expected
            raise RuntimeError(f"validate: accepted but not decoded: {list(undecoded)}")
        with replaced(paths.MANIFEST.parent) as folder:
            folder.mkdir()
            accepted.drop(columns=INTERNAL).to_csv(folder / paths.MANIFEST.name, index=False)
            labels = accepted["class"].map({name: i for i, name in enumerate(sorted(classes))})
            rows = (read_row(pixels_file, row, image_size) for row in accepted["pixels_row"])
            save_decoded(paths.MANIFEST.stem, rows, labels, folder=folder)
    write(REPORT_DIR / "metrics.json", json.dumps(metrics, indent=2) + "\n")


def read_row(file, row, image_size):
    """Image number `row` of the scan's pixels file."""
    shape = (image_size, image_size, 3)
    data = os.pread(file.fileno(), math.prod(shape), row * math.prod(shape))
    if len(data) != math.prod(shape):
        raise RuntimeError(f"validate: image {row} of the scan's pixels file is cut short")
    return np.frombuffer(data, np.uint8).reshape(shape)


def judged(table, classes, knobs, image_size):
    """(the accepted rows of the table, the metrics), once the reports are written; stops
    the run if too few are accepted."""
    per_file = rules(classes, knobs)
    for index, (expectation, _) in enumerate(per_file):
        expectation.meta = {"rule": index}
    # Table-wide: GX flags every copy of a duplicate, quarantine() decides which go; fewer
    # rows than the accepted minimum could never pass.
    min_rows = len(classes) * len(paths.SOURCE_SPLITS) * knobs.min_images_per_class
    result = run_great_expectations(table, [e for e, _ in per_file] + [
        E.ExpectColumnValuesToBeUnique(column="sha256"),
        E.ExpectColumnValuesToBeUnique(column="decoded_sha256"),
        E.ExpectColumnValuesToBeUnique(column="path"),
        E.ExpectTableRowCountToBeBetween(min_value=min_rows)])
    table, near = quarantine(table, result, [reason for _, reason in per_file], knobs,
                             image_size)
    accepted = table[table["reason"] == ""].drop(columns="reason")
    quarantined = table[table["reason"] != ""].drop(columns=INTERNAL)

    # The reports of this run first, so a failing run can still be read; the manifest and
    # metrics only once it has passed.
    write(REPORT_DIR / "quarantine.csv", quarantined.to_csv(index=False))
    write(REPORT_DIR / "near_duplicates.csv", near.to_csv(index=False))
    write(REPORT_DIR / "gx_result.json", json.dumps(result.describe_dict(), indent=2))
    metrics = {"images": len(table), "accepted": len(accepted), "quarantined": len(quarantined),
               "expectations_failed": result.statistics["unsuccessful_expectations"],
               "near_duplicate_pairs": len(near),
               "near_duplicate_pairs_kept": int((~near["same_picture"]).sum())}
    problems = []
    for split in paths.SOURCE_SPLITS:
        for name in classes:
            folder = paths.RAW / split / name
            found = ((table["split"] == split) & (table["class"] == name)).sum()
            kept = metrics[f"accepted_{split}_{name}"] = int(
                ((accepted["split"] == split) & (accepted["class"] == name)).sum())
            if not os.path.isdir(folder):
                problems.append(f"class '{name}' missing in {paths.RAW}/{split}/ (no folder "
                                f"{folder}/): add it to the source or fix classes")
            elif found == 0:
                problems.append(f"{folder}/ is empty: put the '{name}' images of {split} "
                                f"there (in the source) or fix classes")
            elif kept < knobs.min_images_per_class:
                problems.append(f"only {kept} accepted '{name}' images in {split} "
                                f"(validate.min_images_per_class is {knobs.min_images_per_class}; "
                                f"see {REPORT_DIR / 'quarantine.csv'} for the rest)")
    print(f"validate: {len(table)} files, {len(accepted)} accepted, {len(quarantined)} "
          f"quarantined (see {REPORT_DIR / 'quarantine.csv'}); {len(near)} near-duplicate "
          f"pairs (see {REPORT_DIR / 'near_duplicates.csv'}); "
          f"{result.statistics['successful_expectations']}/"
          f"{result.statistics['evaluated_expectations']} expectations passed")
    if problems:
        raise SystemExit("validate: " + "; ".join(problems))
    return accepted, metrics


def write(path, text):
    """A report, whole or not at all."""
    with replaced(path) as partial:
        partial.write_text(text)


if __name__ == "__main__":
    main()
