"""Stage validate: the one accept/reject step. Every file fetch landed in data/raw is
accepted into the manifest or quarantined with its reasons; nothing is changed or deleted.

One metadata row per file (where it sits, what Pillow reads from the header, size, sha256,
whether the training decoder accepts it); Great Expectations checks that table against
rules(), and each failing row takes the rule's reason. (fetch never lands symbolic links;
a file DVC links from its cache, as with cache.type symlink, is judged by its content.)
"""
import hashlib
import io
import json
import os
from pathlib import Path

# catsdogs first: importing it quiets TensorFlow's start-up logs before TensorFlow loads.
from catsdogs import params, paths
from catsdogs.data import decode_image

import great_expectations as gx
import pandas as pd
import tensorflow as tf
from great_expectations.data_context.types.base import ProgressBarsConfig
from PIL import Image

REPORT_DIR = paths.VALIDATE_REPORTS
COLUMNS = ["path", "class", "split", "subfolder", "hidden", "format", "mode",
           "width", "height", "pixels", "bytes", "sha256", "decodable"]
PROGRESS_EVERY = 500      # files between progress lines
# COMPLETE lists every failing row; naming rows by path makes gx_result.json readable too.
RESULT_FORMAT = {"result_format": "COMPLETE", "unexpected_index_column_names": ["path"]}
E = gx.expectations


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


def is_decodable(data):
    """Whether the decoder training uses accepts these bytes (Pillow is more lenient)."""
    try:
        decode_image(data)
        return True
    except tf.errors.OpError:  # InvalidArgumentError for garbage, others for truncated data
        return False


def describe(path, max_pixels):
    """One metadata row. Pillow reads only the header; TensorFlow decodes the whole image
    if that header is readable and declares at most max_pixels."""
    parts = path.relative_to(paths.RAW).parts
    split = parts[0] if len(parts) > 1 else ""
    placed = split in paths.SOURCE_SPLITS  # else class and subfolder mean nothing
    row = {"path": path.as_posix(), "split": split,
           "class": (parts[1] if len(parts) > 2 else "") if placed else None,
           "subfolder": "/".join(parts[2:-1]) if placed else None,  # between class and file
           "hidden": any(part.startswith(".") for part in parts)}  # .DS_Store, ._x.jpg, .git/
    data = path.read_bytes()
    row.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    if row["hidden"]:
        return row  # system files, not images: the name alone quarantines them
    row["format"] = ""  # stays empty if Pillow cannot read it: quarantined as unreadable
    try:
        with Image.open(io.BytesIO(data)) as image:
            row.update(format=image.format or "", mode=image.mode, width=image.width,
                       height=image.height, min_side=min(image.size),
                       pixels=image.width * image.height)
    except (OSError, SyntaxError, ValueError):
        pass
    # TensorFlow allocates what the header declares: decode only a known, bounded size.
    if row.get("pixels") is not None and row["pixels"] <= max_pixels:
        row["decodable"] = is_decodable(data)
    return row


def scan_raw(max_pixels):
    """The metadata table of every file under data/raw."""
    files = [Path(folder, name) for folder, _, names in os.walk(paths.RAW) for name in names]
    # Pillow refuses (or warns about) huge declared sizes as soon as it opens a file. Here it
    # only reads headers, and describe() checks validate.max_pixels before anything decodes.
    Image.MAX_IMAGE_PIXELS = None
    rows = []
    for count, path in enumerate(sorted(files), 1):
        rows.append(describe(path, max_pixels))
        if count % PROGRESS_EVERY == 0:
            print(f"validate: scanned {count}/{len(files)} files")
    table = pd.DataFrame(rows, columns=COLUMNS + ["min_side"])
    return table.astype({c: "Int64" for c in ("width", "height", "min_side", "pixels", "bytes")})


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


def quarantine(table, result, reasons_by_rule):
    """A `reason` column: the rules each row fails, then copies of one image."""
    reasons = {path: [] for path in table["path"]}
    rows = table.set_index("path", drop=False)
    for outcome in result.results:
        rule = (outcome.expectation_config.meta or {}).get("rule")
        if rule is None:
            continue  # a table-wide expectation
        for hit in outcome.result.get("unexpected_index_list") or []:
            reasons[hit["path"]].append(reasons_by_rule[rule](rows.loc[hit["path"]]))
    table = table.assign(reason=["; ".join(reasons[p]) for p in table["path"]])
    # Copies of one image among otherwise good files (sorted by path, so the outcome does
    # not depend on the order files were found). Under two classes no copy's label can be
    # trusted: all go. Within one class the first copy stays, wherever the others are.
    clean = table[table["reason"] == ""]
    for _, group in clean[clean["sha256"].duplicated(keep=False)].groupby("sha256", sort=False):
        classes = sorted(set(group["class"]))
        if len(classes) > 1:
            for index, path in group["path"].items():
                others = ", ".join(p for p in group["path"] if p != path)
                table.loc[index, "reason"] = (f"label conflict: the same image is under "
                                              f"{' and '.join(classes)} (also {others})")
        else:
            table.loc[group.index[1:], "reason"] = f"duplicate of {group['path'].iloc[0]}"
    return table


def main():
    p = params.load()
    classes, knobs = p.classes, p.validate_

    table = scan_raw(knobs.max_pixels)
    per_file = rules(classes, knobs)
    for index, (expectation, _) in enumerate(per_file):
        expectation.meta = {"rule": index}
    # Table-wide: GX flags every copy of a duplicate, quarantine() decides which go; fewer
    # rows than the accepted minimum could never pass.
    min_rows = len(classes) * len(paths.SOURCE_SPLITS) * knobs.min_images_per_class
    result = run_great_expectations(table, [e for e, _ in per_file] + [
        E.ExpectColumnValuesToBeUnique(column="sha256"),
        E.ExpectColumnValuesToBeUnique(column="path"),
        E.ExpectTableRowCountToBeBetween(min_value=min_rows)])
    table = quarantine(table, result, [reason for _, reason in per_file])
    accepted = table[table["reason"] == ""].drop(columns=["reason", "min_side"])
    quarantined = table[table["reason"] != ""].drop(columns="min_side")

    # Reports first, so a failing run can still be read.
    paths.MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    accepted.to_csv(paths.MANIFEST, index=False)
    quarantined.to_csv(REPORT_DIR / "quarantine.csv", index=False)
    (REPORT_DIR / "gx_result.json").write_text(json.dumps(result.describe_dict(), indent=2))
    metrics = {"images": len(table), "accepted": len(accepted), "quarantined": len(quarantined),
               "expectations_failed": result.statistics["unsuccessful_expectations"]}
    problems = []
    for split in paths.SOURCE_SPLITS:
        for name in classes:
            folder = paths.RAW / split / name
            found = ((table["split"] == split) & (table["class"] == name)).sum()
            kept = metrics[f"accepted_{split}_{name}"] = int(
                ((accepted["split"] == split) & (accepted["class"] == name)).sum())
            if not folder.is_dir():
                problems.append(f"class '{name}' missing in {paths.RAW}/{split}/ (no folder "
                                f"{folder}/): add it to the source or fix classes")
            elif found == 0:
                problems.append(f"{folder}/ is empty: put the '{name}' images of {split} "
                                f"there (in the source) or fix classes")
            elif kept < knobs.min_images_per_class:
                problems.append(f"only {kept} accepted '{name}' images in {split} "
                                f"(validate.min_images_per_class is {knobs.min_images_per_class}; "
                                f"see {REPORT_DIR / 'quarantine.csv'} for the rest)")
    (REPORT_DIR / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"validate: {len(table)} files, {len(accepted)} accepted, {len(quarantined)} "
          f"quarantined (see {REPORT_DIR / 'quarantine.csv'}); "
          f"{result.statistics['successful_expectations']}/"
          f"{result.statistics['evaluated_expectations']} expectations passed")
    if problems:
        raise SystemExit("validate: " + "; ".join(problems))


if __name__ == "__main__":
    main()
