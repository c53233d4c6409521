"""Stage validate: check every raw image, quarantine the unusable ones, write the manifest.

One metadata row per file under data/raw/<split>/<class>/ (what Pillow reads from the
header, size, sha256, and whether the training decoder accepts it); Great Expectations
checks that table; rows breaking a per-image rule are quarantined with a reason. Raw files
are only read, never changed or deleted.
"""
import hashlib
import io
import json
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
COLUMNS = ["path", "class", "split", "format", "mode", "width", "height", "bytes", "sha256",
           "decodable"]
PROGRESS_EVERY = 500      # images between progress lines
SUMMARY_MAX_LISTED = 20   # quarantined files named in summary.md; the CSV has them all
# COMPLETE lists every failing row; naming rows by path makes gx_result.json readable too.
RESULT_FORMAT = {"result_format": "COMPLETE", "unexpected_index_column_names": ["path"]}

# Why a row failed a per-image rule; the rule name travels in each expectation's meta.
REASONS = {
    "split": lambda row: (f"unknown split '{row['split']}'" if row["split"]
                          else "not in a split folder"),
    "class": lambda row: (f"unknown class '{row['class']}'" if row["class"]
                          else "not in a class folder"),
    "format": lambda row: (f"format {row['format']} not allowed" if row["format"]
                           else "unreadable by Pillow"),
    "size": lambda row: f"too small ({row['width']}x{row['height']} px)",
    "decodable": lambda row: "not decodable by TensorFlow",
}


def is_decodable(data):
    """Whether the decoder training uses accepts these bytes (Pillow is more lenient)."""
    try:
        decode_image(data)
        return True
    except tf.errors.OpError:  # InvalidArgumentError for garbage, others for truncated data
        return False


def describe(path):
    """One metadata row. Pillow reads only the header; TensorFlow decodes the whole image."""
    data = path.read_bytes()
    parts = path.relative_to(RAW_DIR).parts
    row = {"path": path.as_posix(),  # <split>/<class>/<file>; shallower files get blanks
           "split": parts[0] if len(parts) > 1 else "",
           "class": parts[1] if len(parts) > 2 else "",
           "format": "", "mode": "", "width": None, "height": None,
           "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    try:
        with Image.open(io.BytesIO(data)) as image:
            row.update(format=image.format or "", mode=image.mode,
                       width=image.width, height=image.height)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        pass  # left empty: the format rule quarantines it as unreadable
    row["decodable"] = is_decodable(data)
    return row


def scan_raw():
    files = [p for p in RAW_DIR.rglob("*") if p.is_file()] if RAW_DIR.is_dir() else []
    if not files:
        raise SystemExit(f"validate: no files under {RAW_DIR}/; run the fetch stage first")
    rows = []
    for count, path in enumerate(files, 1):
        rows.append(describe(path))
        if count % PROGRESS_EVERY == 0:
            print(f"validate: scanned {count}/{len(files)} images")
    table = pd.DataFrame(rows, columns=COLUMNS).astype({"width": "Int64", "height": "Int64"})
    return table.sort_values("path", ignore_index=True)


def expectations(classes, formats, min_side, min_rows):
    """Per-image rules carry in meta the REASONS entry their failing rows are quarantined under."""
    E = gx.expectations
    return [
        E.ExpectColumnValuesToBeInSet(column="split", value_set=list(SOURCE_SPLITS),
                                      meta={"rule": "split"}),
        E.ExpectColumnValuesToBeInSet(column="class", value_set=classes, meta={"rule": "class"}),
        E.ExpectColumnValuesToBeInSet(column="format", value_set=formats, meta={"rule": "format"}),
        E.ExpectColumnValuesToBeBetween(column="width", min_value=min_side, meta={"rule": "size"}),
        E.ExpectColumnValuesToBeBetween(column="height", min_value=min_side, meta={"rule": "size"}),
        E.ExpectColumnValuesToBeInSet(column="decodable", value_set=[True],
                                      meta={"rule": "decodable"}),
        # Table-wide checks: GX flags every copy of a duplicate, so quarantine() keeps the first.
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
    """Add a `reason` column: per-image rule failures from GX, then later duplicate copies."""
    reasons = {path: [] for path in table["path"]}
    rows = table.set_index("path", drop=False)
    for outcome in result.results:
        rule = (outcome.expectation_config.meta or {}).get("rule")
        if rule is None:
            continue
        for hit in outcome.result.get("unexpected_index_list") or []:
            reason = REASONS[rule](rows.loc[hit["path"]])
            if reason not in reasons[hit["path"]]:  # width and height share the size rule
                reasons[hit["path"]].append(reason)
    table = table.assign(reason=["; ".join(reasons[p]) for p in table["path"]])
    # Among otherwise good images (sorted by path) the first copy stays, later ones go.
    clean = table[table["reason"] == ""]
    first_copy = clean.groupby("sha256")["path"].transform("first")
    later_copies = clean.index[clean["path"] != first_copy]
    table.loc[later_copies, "reason"] = "duplicate of " + first_copy[later_copies]
    return table


def fatal_problems(table, accepted, classes, min_images):
    problems = []
    for split in SOURCE_SPLITS:
        for name in classes:
            found = ((table["split"] == split) & (table["class"] == name)).sum()
            kept = ((accepted["split"] == split) & (accepted["class"] == name)).sum()
            if found == 0:
                problems.append(f"class '{name}' missing in {RAW_DIR}/{split}/")
            elif kept < min_images:
                problems.append(f"only {kept} accepted '{name}' images in {split} "
                                f"(validate.min_images_per_class is {min_images})")
    return problems


def summary_markdown(table, accepted, quarantined, result):
    counts = pd.DataFrame({"images": table.groupby(["split", "class"]).size(),
                           "accepted": accepted.groupby(["split", "class"]).size()})
    counts = counts.fillna(0).astype(int)
    lines = [f"# Validation of {RAW_DIR}", "",
             f"{len(table)} images scanned: {len(accepted)} accepted, "
             f"{len(quarantined)} quarantined.", "",
             "| split | class | images | accepted |", "|---|---|---|---|"]
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
    params = P.load()
    classes = P.get(params, "validate.classes", list)
    formats = P.get(params, "validate.formats", list)
    min_side = P.get(params, "validate.min_side_px", int, low=1)
    min_images = P.get(params, "validate.min_images_per_class", int, low=1)

    table = scan_raw()
    # Fewer raw rows than the minimum accepted ones could never pass.
    min_rows = len(classes) * len(SOURCE_SPLITS) * min_images
    result = run_great_expectations(table, expectations(classes, formats, min_side, min_rows))
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

    print(f"validate: {len(table)} images, {len(accepted)} accepted, "
          f"{len(quarantined)} quarantined; {result.statistics['successful_expectations']}/"
          f"{result.statistics['evaluated_expectations']} expectations passed")
    problems = fatal_problems(table, accepted, classes, min_images)
    if problems:
        raise SystemExit("validate: " + "; ".join(problems))


if __name__ == "__main__":
    main()
