"""Stage validate: check every raw file, quarantine the unusable ones, write the manifest.

One metadata row per file under data/raw/<split>/<class>/ (where it sits, what Pillow reads
from the header, size, sha256, and whether the training decoder accepts it); Great
Expectations checks that table; rows breaking a per-image rule are quarantined with a
reason. Raw files are only read, never changed or deleted; symbolic links are not even read.
"""
import contextlib
import hashlib
import io
import json
import os
from pathlib import Path

# catsdogs first: importing it quiets TensorFlow's start-up logs before TensorFlow loads.
from catsdogs import params as P
from catsdogs.data import decode_image
from stages.fetch import RAW_DIR, SOURCE_SPLITS

import great_expectations as gx
import pandas as pd
import tensorflow as tf
from great_expectations.data_context.types.base import ProgressBarsConfig
from PIL import Image

MANIFEST = Path("data/validated/manifest.csv")
REPORT_DIR = Path("reports/validate")
COLUMNS = ["path", "class", "split", "subfolder", "hidden", "symlink", "format", "mode",
           "width", "height", "pixels", "bytes", "sha256", "decodable"]
PROGRESS_EVERY = 500      # images between progress lines
SUMMARY_MAX_LISTED = 20   # quarantined files named in summary.md; the CSV has them all
# COMPLETE lists every failing row; naming rows by path makes gx_result.json readable too.
RESULT_FORMAT = {"result_format": "COMPLETE", "unexpected_index_column_names": ["path"]}

# Why a row failed a per-image rule; the rule name travels in each expectation's meta, the
# limit in its kwargs. Checks that were skipped leave None, which GX does not judge.
REASONS = {
    "symlink": lambda row, kw: "symbolic link, not followed",
    "hidden": lambda row, kw: "hidden file",
    "nested": lambda row, kw: f"nested below the class folder (in {row['subfolder']}/)",
    "split": lambda row, kw: (f"unknown split '{row['split']}'" if row["split"]
                              else "not in a split folder"),
    "class": lambda row, kw: (f"unknown class '{row['class']}'" if row["class"]
                              else "not in a class folder"),
    "empty": lambda row, kw: "empty file (0 bytes)",
    "format": lambda row, kw: (f"format {row['format']} not allowed (validate.formats is "
                               f"{', '.join(kw['value_set'])})" if row["format"]
                               else "unreadable by Pillow"),
    "size": lambda row, kw: (f"too small ({row['width']}x{row['height']} px; "
                             f"validate.min_side_px is {int(kw['min_value'])})"),
    "pixels": lambda row, kw: (f"declares {row['width']}x{row['height']} px = {row['pixels']:,} "
                               f"pixels, over validate.max_pixels ({int(kw['max_value']):,}); "
                               f"not decoded (a decompression bomb?)"),
    "decodable": lambda row, kw: "not decodable by TensorFlow",
}


def is_decodable(data):
    """Whether the decoder training uses accepts these bytes (Pillow is more lenient)."""
    try:
        decode_image(data)
        return True
    except tf.errors.OpError:  # InvalidArgumentError for garbage, others for truncated data
        return False


@contextlib.contextmanager
def header_only():
    """Pillow refuses (or warns about) huge declared sizes as soon as it opens a file. Here
    it only reads headers, and the size check against validate.max_pixels is ours, made
    before anything decodes, so Pillow's own check is off while scanning."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def describe(path, max_pixels):
    """One metadata row. Pillow reads only the header; TensorFlow decodes the whole image
    if that header is readable and declares at most max_pixels."""
    parts = path.relative_to(RAW_DIR).parts
    row = {"path": path.as_posix(),  # <split>/<class>/<file>; shallower files get blanks
           "split": parts[0] if len(parts) > 1 else "",
           "class": parts[1] if len(parts) > 2 else "",
           "subfolder": "/".join(parts[2:-1]),  # anything between the class folder and the file
           "hidden": any(part.startswith(".") for part in parts),  # .DS_Store, ._x.jpg, .git/
           "symlink": path.is_symlink(),
           "format": None, "mode": None, "width": None, "height": None, "pixels": None,
           "bytes": None, "sha256": None, "decodable": None}
    if row["symlink"]:
        return row  # its target may be anywhere: never read through it
    data = path.read_bytes()
    row.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    if row["hidden"]:
        return row  # system files, not images: the name alone quarantines them
    row.update(format="", mode="")  # stays empty if Pillow cannot read it: quarantined as unreadable
    try:
        with Image.open(io.BytesIO(data)) as image:
            row.update(format=image.format or "", mode=image.mode, width=image.width,
                       height=image.height, pixels=image.width * image.height)
    except (OSError, SyntaxError, ValueError):
        pass
    # TensorFlow allocates what the header declares: decode only a known, bounded size.
    if row["pixels"] is not None and row["pixels"] <= max_pixels:
        row["decodable"] = is_decodable(data)
    return row


def raw_files():
    """Every file and symbolic link under RAW_DIR, without entering symlinked folders."""
    found = []
    for dirpath, dirnames, filenames in os.walk(RAW_DIR):
        folder = Path(dirpath)
        found += [folder / name for name in filenames]
        found += [folder / name for name in dirnames if (folder / name).is_symlink()]
    return sorted(found)


def scan_raw(max_pixels):
    files = raw_files()
    if not files:
        raise SystemExit(f"validate: no files under {RAW_DIR}/; run the fetch stage first")
    rows = []
    with header_only():
        for count, path in enumerate(files, 1):
            rows.append(describe(path, max_pixels))
            if count % PROGRESS_EVERY == 0:
                print(f"validate: scanned {count}/{len(files)} files")
    table = pd.DataFrame(rows, columns=COLUMNS).astype(
        {"width": "Int64", "height": "Int64", "pixels": "Int64", "bytes": "Int64"})
    return table.sort_values("path", ignore_index=True)


def expectations(rules, min_rows):
    """Per-image rules carry in meta the REASONS entry their failing rows are quarantined under.

    The order here is the order of the reasons a file gets.
    """
    E = gx.expectations
    return [
        E.ExpectColumnValuesToBeInSet(column="symlink", value_set=[False], meta={"rule": "symlink"}),
        E.ExpectColumnValuesToBeInSet(column="hidden", value_set=[False], meta={"rule": "hidden"}),
        E.ExpectColumnValuesToBeInSet(column="subfolder", value_set=[""], meta={"rule": "nested"}),
        E.ExpectColumnValuesToBeInSet(column="split", value_set=list(SOURCE_SPLITS),
                                      meta={"rule": "split"}),
        E.ExpectColumnValuesToBeInSet(column="class", value_set=rules.classes,
                                      meta={"rule": "class"}),
        E.ExpectColumnValuesToBeBetween(column="bytes", min_value=1, meta={"rule": "empty"}),
        E.ExpectColumnValuesToBeInSet(column="format", value_set=rules.formats,
                                      meta={"rule": "format"}),
        E.ExpectColumnValuesToBeBetween(column="width", min_value=rules.min_side_px,
                                        meta={"rule": "size"}),
        E.ExpectColumnValuesToBeBetween(column="height", min_value=rules.min_side_px,
                                        meta={"rule": "size"}),
        E.ExpectColumnValuesToBeBetween(column="pixels", max_value=rules.max_pixels,
                                        meta={"rule": "pixels"}),
        E.ExpectColumnValuesToBeInSet(column="decodable", value_set=[True],
                                      meta={"rule": "decodable"}),
        # Table-wide checks: GX flags every copy of a duplicate; quarantine() decides which go.
        E.ExpectColumnValuesToBeUnique(column="sha256"),
        E.ExpectColumnValuesToBeUnique(column="path"),
        E.ExpectTableRowCountToBeBetween(min_value=min_rows),
    ]


def run_great_expectations(table, suite_expectations):
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # keep the log readable
    batch = (context.data_sources.add_pandas("raw_images")
             .add_dataframe_asset("metadata")
             .add_batch_definition_whole_dataframe("all_images"))
    suite = context.suites.add(gx.ExpectationSuite(name="raw_images"))
    for expectation in suite_expectations:
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="raw_images", data=batch, suite=suite))
    return definition.run(batch_parameters={"dataframe": table}, result_format=RESULT_FORMAT)


def quarantine(table, result):
    """Add a `reason` column: per-image rule failures from GX, then copies of one image."""
    reasons = {path: [] for path in table["path"]}
    rows = table.set_index("path", drop=False)
    for outcome in result.results:
        config = outcome.expectation_config
        rule = (config.meta or {}).get("rule")
        if rule is None:
            continue
        for hit in outcome.result.get("unexpected_index_list") or []:
            reason = REASONS[rule](rows.loc[hit["path"]], config.kwargs)
            if reason not in reasons[hit["path"]]:  # width and height share the size rule
                reasons[hit["path"]].append(reason)
    table = table.assign(reason=["; ".join(reasons[p]) for p in table["path"]])
    # Copies of one image among otherwise good files (sorted by path, so the outcome does
    # not depend on the order files were found). Under two classes no copy's label can be
    # trusted: all go. Within one class the first copy stays, wherever the others are.
    clean = table[table["reason"] == ""]
    copies = clean[clean["sha256"].duplicated(keep=False)]
    for _, group in copies.groupby("sha256", sort=False):
        classes = sorted(set(group["class"]))
        if len(classes) > 1:
            for index, path in group["path"].items():
                others = ", ".join(p for p in group["path"] if p != path)
                table.loc[index, "reason"] = (f"label conflict: the same image is under "
                                              f"{' and '.join(classes)} (also {others})")
        else:
            table.loc[group.index[1:], "reason"] = f"duplicate of {group['path'].iloc[0]}"
    return table


def fatal_problems(table, accepted, classes, min_images):
    problems = []
    for split in SOURCE_SPLITS:
        for name in classes:
            folder = RAW_DIR / split / name
            found = ((table["split"] == split) & (table["class"] == name)).sum()
            kept = ((accepted["split"] == split) & (accepted["class"] == name)).sum()
            if not folder.is_dir():
                problems.append(f"class '{name}' missing in {RAW_DIR}/{split}/ (no folder "
                                f"{folder}/): add it to the source or fix validate.classes")
            elif found == 0:
                problems.append(f"{folder}/ is empty: put the '{name}' images of {split} "
                                f"there (in the source) or fix validate.classes")
            elif kept < min_images:
                problems.append(f"only {kept} accepted '{name}' images in {split} "
                                f"(validate.min_images_per_class is {min_images}; see "
                                f"{REPORT_DIR / 'quarantine.csv'} for the rest)")
    return problems


def summary_markdown(table, accepted, quarantined, result):
    counts = pd.DataFrame({"images": table.groupby(["split", "class"]).size(),
                           "accepted": accepted.groupby(["split", "class"]).size()})
    counts = counts.fillna(0).astype(int)
    lines = [f"# Validation of {RAW_DIR}", "",
             f"{len(table)} files scanned: {len(accepted)} accepted, "
             f"{len(quarantined)} quarantined.", "",
             "| split | class | files | accepted |", "|---|---|---|---|"]
    lines += [f"| {split} | {name} | {row.images} | {row.accepted} |"
              for (split, name), row in counts.iterrows()]
    stats = result.statistics
    lines += ["", f"## Great Expectations: {stats['successful_expectations']} of "
                  f"{stats['evaluated_expectations']} expectations passed", ""]
    for outcome in result.results:
        config = outcome.expectation_config
        detail = (f"{outcome.result.get('unexpected_count')} unexpected"
                  if "unexpected_count" in outcome.result
                  else f"observed {outcome.result.get('observed_value')}")
        lines.append(f"- {'passed' if outcome.success else 'FAILED'}: {config.type} "
                     f"({config.kwargs.get('column', 'table')}): {detail}")
    lines += ["", f"## Quarantined ({len(quarantined)})", ""]
    listed = quarantined.head(SUMMARY_MAX_LISTED)
    lines += [f"- `{row.path}`: {row.reason}" for row in listed.itertuples()]
    if quarantined.empty:
        lines.append("- none")
    if len(quarantined) > SUMMARY_MAX_LISTED:
        lines.append(f"- ... and {len(quarantined) - SUMMARY_MAX_LISTED} more "
                     f"(see {REPORT_DIR / 'quarantine.csv'})")
    return "\n".join(lines) + "\n"


def main():
    rules = P.load().validate_
    classes, min_images = rules.classes, rules.min_images_per_class

    table = scan_raw(rules.max_pixels)
    # Fewer raw rows than the minimum accepted ones could never pass.
    min_rows = len(classes) * len(SOURCE_SPLITS) * min_images
    result = run_great_expectations(table, expectations(rules, min_rows))
    table = quarantine(table, result)
    accepted = table[table["reason"] == ""].drop(columns="reason")
    quarantined = table[table["reason"] != ""]

    # Reports first, so a failing run can still be read.
    MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    accepted.to_csv(MANIFEST, index=False)
    quarantined.to_csv(REPORT_DIR / "quarantine.csv", index=False)
    (REPORT_DIR / "gx_result.json").write_text(json.dumps(result.describe_dict(), indent=2))
    (REPORT_DIR / "summary.md").write_text(summary_markdown(table, accepted, quarantined, result))
    metrics = {"images": len(table), "accepted": len(accepted), "quarantined": len(quarantined),
               "expectations_failed": result.statistics["unsuccessful_expectations"]}
    for split in SOURCE_SPLITS:
        for name in classes:
            metrics[f"accepted_{split}_{name}"] = int(
                ((accepted["split"] == split) & (accepted["class"] == name)).sum())
    (REPORT_DIR / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")

    print(f"validate: {len(table)} files, {len(accepted)} accepted, "
          f"{len(quarantined)} quarantined; {result.statistics['successful_expectations']}/"
          f"{result.statistics['evaluated_expectations']} expectations passed")
    problems = fatal_problems(table, accepted, classes, min_images)
    if problems:
        raise SystemExit("validate: " + "; ".join(problems))


if __name__ == "__main__":
    main()
