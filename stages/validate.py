"""Stage validate: each file in data/raw is accepted into the manifest (with its decoded image,
for decode) or quarantined with its reasons: the rules() it fails, or copying a picture."""
import json
import os
import tempfile

# catsdogs first: importing it quiets TensorFlow's start-up logs before TensorFlow loads.
from catsdogs import params, paths
from catsdogs.decoded import save_decoded
from catsdogs.duplicates import copy_reasons, same_pictures
from catsdogs.files import discard, locked, replaced
from catsdogs.reports import write_json, write_text
from catsdogs.scan import INTERNAL, read_row, scan_raw

import great_expectations as gx
from great_expectations.data_context.types.base import ProgressBarsConfig

REPORT_DIR = paths.VALIDATE_REPORTS
REPORTS = ["quarantine.csv", "near_duplicates.csv", "gx_result.json", "metrics.json"]
# COMPLETE lists every failing row; naming rows by path makes gx_result.json readable too.
RESULT_FORMAT = {"result_format": "COMPLETE", "unexpected_index_column_names": ["path"]}
E = gx.expectations


def main():
    p = params.load()
    classes, knobs, size = p.classes, p.validate_, p.model.image_size
    with locked("validate", paths.RAW.parent):  # one fetch or validate at a time in this project
        # A failed run must leave no stale manifest or metrics for split to take as its own.
        discard(paths.MANIFEST.parent, *(REPORT_DIR / name for name in REPORTS))
        # Decoded images wait on disk, not in memory, until the accepted ones are known.
        with tempfile.TemporaryFile(dir=paths.RAW.parent) as pixels_file:
            table = scan_raw(knobs, size, pixels_file)
            pixels_row = table["pixels_row"]
            image_of = lambda index: read_row(pixels_file, pixels_row[index], size)  # noqa: E731
            table, result, near = quarantine_reasons(table, classes, knobs, size, image_of)
            accepted = table[table["reason"] == ""].drop(columns="reason")
            # Reports first, so a failing run can still be read; manifest and metrics after.
            metrics = write_reports(table, accepted, result, near, classes)
            if problems := too_few_accepted(table, metrics, classes, knobs):
                raise SystemExit("validate: " + "; ".join(problems))
            if accepted["pixels_row"].isna().any():  # the rules quarantine every file not decoded
                raise RuntimeError("validate: accepted but not decoded: "
                                   f"{list(accepted['path'][accepted['pixels_row'].isna()])}")
            with replaced(paths.MANIFEST.parent) as folder:  # whole or not at all
                folder.mkdir()
                accepted.drop(columns=INTERNAL).to_csv(folder / paths.MANIFEST.name, index=False)
                labels = accepted["class"].map({c: i for i, c in enumerate(sorted(classes))})
                rows = (read_row(pixels_file, row, size) for row in accepted["pixels_row"])
                save_decoded(paths.MANIFEST.stem, rows, labels, folder=folder)
        write_json(REPORT_DIR / "metrics.json", metrics)


def quarantine_reasons(table, classes, knobs, image_size, image_of):
    """(the table with a `reason` per row, "" if accepted; the GX result; near pairs)."""
    per_file = rules(classes, knobs)
    for index, (expectation, _) in enumerate(per_file):
        expectation.meta = {"rule": index}
    # Table-wide: GX flags every copy, copy_reasons() decides which go; too few rows never pass.
    table_wide = [E.ExpectColumnValuesToBeUnique(column=column)
                  for column in ("sha256", "decoded_sha256", "path")]
    min_rows = len(classes) * len(paths.SOURCE_SPLITS) * knobs.min_images_per_class
    table_wide.append(E.ExpectTableRowCountToBeBetween(min_value=min_rows))
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # keep the log readable
    batch = (context.data_sources.add_pandas("raw_images").add_dataframe_asset("metadata")
             .add_batch_definition_whole_dataframe("all_images"))
    suite = context.suites.add(gx.ExpectationSuite(name="raw_images"))
    for expectation in [e for e, _ in per_file] + table_wide:
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="raw_images", data=batch, suite=suite))
    result = definition.run(batch_parameters={"dataframe": table}, result_format=RESULT_FORMAT)
    # A row's reasons: what stopped it being read, then the rules it fails, in rules() order.
    reasons = {path: [problem] if problem else [] for path, problem in
               zip(table["path"], table["problem"])}
    rows = table.set_index("path", drop=False)
    for outcome in result.results:
        rule = (outcome.expectation_config.meta or {}).get("rule")  # None: a table-wide one
        if rule is None:
            continue
        for hit in outcome.result.get("unexpected_index_list") or []:
            reasons[hit["path"]].append(per_file[rule][1](rows.loc[hit["path"]]))
    table = table.assign(reason=["; ".join(reasons[p]) for p in table["path"]])
    near, same = same_pictures(table[table["reason"] == ""], knobs, image_of)
    for index, reason in copy_reasons(table, same, image_size, image_of).items():
        table.loc[index, "reason"] = reason
    return table, result, near


def rules(classes, knobs):
    """Per-file (expectation, reason for a failing row). GX leaves None (not checked) alone."""
    def in_set(column, allowed):
        return E.ExpectColumnValuesToBeInSet(column=column, value_set=list(allowed))

    return [
        (in_set("hidden", [False]), lambda row: "hidden file"),
        (in_set("split", paths.SOURCE_SPLITS),
         lambda row: f"unknown split '{row['split']}'" if row["split"]
         else "not in a split folder"),
        (in_set("class", classes),
         lambda row: f"unknown class '{row['class']}'" if row["class"]
         else "not in a class folder"),
        (in_set("subfolder", [""]),
         lambda row: f"nested below the class folder (in {row['subfolder']}/)"),
        (E.ExpectColumnValuesToBeBetween(column="bytes", min_value=1),
         lambda row: "empty file (0 bytes)"),
        # A phone's MPO (a JPEG followed by more frames) is read as its first frame, a JPEG.
        (in_set("format", knobs.formats + ["MPO"] * ("JPEG" in knobs.formats)),
         lambda row: (f"format {row['format']} not allowed (validate.formats is "
                      f"{', '.join(knobs.formats)})" if row["format"] else "unreadable by Pillow")),
        (E.ExpectColumnValuesToBeBetween(column="min_side", min_value=knobs.min_side_px),
         lambda row: (f"too small ({row['width']}x{row['height']} px; validate.min_side_px is "
                      f"{knobs.min_side_px})")),
        (E.ExpectColumnValuesToBeBetween(column="aspect_ratio", max_value=knobs.max_aspect_ratio),
         lambda row: (f"too elongated ({row['width']}x{row['height']} px, aspect ratio "
                      f"{row['aspect_ratio']:.4g}; validate.max_aspect_ratio is "
                      f"{knobs.max_aspect_ratio:g})")),
        (E.ExpectColumnValuesToBeBetween(column="pixels", max_value=knobs.max_pixels),
         lambda row: (f"declares {row['width']}x{row['height']} px = {row['pixels']:,} pixels, "
                      f"over validate.max_pixels ({knobs.max_pixels:,}); not decoded "
                      f"(a decompression bomb?)")),
        # None (never decoded) only for files quarantined already: not read, hidden, format, pixels.
        (in_set("decodable", [True]), lambda row: "not decodable by TensorFlow"),
    ]


def write_reports(table, accepted, result, near, classes):
    """The three reports, pass or fail; returns the metrics (written only on a pass)."""
    quarantined = table[table["reason"] != ""].drop(columns=INTERNAL)
    write_text(REPORT_DIR / "quarantine.csv", quarantined.to_csv(index=False))
    write_text(REPORT_DIR / "near_duplicates.csv", near.to_csv(index=False))
    write_text(REPORT_DIR / "gx_result.json", json.dumps(result.describe_dict(), indent=2))
    stats = result.statistics
    metrics = {"images": len(table), "accepted": len(accepted), "quarantined": len(quarantined),
               "expectations_failed": stats["unsuccessful_expectations"],
               "near_duplicate_pairs": len(near),
               "near_duplicate_pairs_kept": int((~near["same_picture"]).sum())}
    counts = accepted.groupby(["split", "class"]).size()
    metrics |= {f"accepted_{split}_{name}": int(counts.get((split, name), 0))
                for split in paths.SOURCE_SPLITS for name in classes}
    print(f"validate: {len(table)} files, {len(accepted)} accepted, {len(quarantined)} "
          f"quarantined (see {REPORT_DIR / 'quarantine.csv'}); {len(near)} near-duplicate "
          f"pairs (see {REPORT_DIR / 'near_duplicates.csv'}); "
          f"{stats['successful_expectations']}/{stats['evaluated_expectations']} "
          f"expectations passed")
    return metrics


def too_few_accepted(table, metrics, classes, knobs):
    """Why the run fails: a class folder missing or empty, or too few accepted images."""
    problems = []
    for split in paths.SOURCE_SPLITS:
        for name in classes:
            folder, kept = paths.RAW / split / name, metrics[f"accepted_{split}_{name}"]
            if not os.path.isdir(folder):
                problems.append(f"class '{name}' missing in {paths.RAW}/{split}/ (no folder "
                                f"{folder}/): add it to the source or fix classes")
            elif not ((table["split"] == split) & (table["class"] == name)).any():
                problems.append(f"{folder}/ is empty: put the '{name}' images of {split} "
                                f"there (in the source) or fix classes")
            elif kept < knobs.min_images_per_class:
                problems.append(f"only {kept} accepted '{name}' images in {split} "
                                f"(validate.min_images_per_class is {knobs.min_images_per_class}; "
                                f"see {REPORT_DIR / 'quarantine.csv'} for the rest)")
    return problems


if __name__ == "__main__":
    main()
