"""Write MODEL_CARD.md from params.yaml, the committed reports and git.

    python scripts/model_card.py          # rewrite MODEL_CARD.md
    python scripts/model_card.py --check  # exit 1 if MODEL_CARD.md is out of date

Every number in the card comes from a tracked file (metrics, split counts, per-class table,
calibration, weights provenance); the card only words them, so it cannot drift from the
pipeline's results (tests/test_model_card.py runs --check). Its version and date are those of
the last commit that changed dvc.lock (the results' commit), so a later commit leaves the card
up to date; "unknown" without git. The words are scripts/templates/model_card*.md
(string.Template); the verdicts are catsdogs.verdicts'. Latency is not quoted: it changes
from run to run (reports/timing/reports_export.json holds the last run's).
"""
import csv
import subprocess
import sys
from pathlib import Path
from string import Template

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from catsdogs import params, paths, verdicts  # noqa: E402
from catsdogs.reports import read_json  # noqa: E402
from readme_results import write_or_check  # noqa: E402

TEMPLATES = Path(__file__).resolve().parent / "templates"
LOCK = "dvc.lock"  # its last commit is the version of the results the card describes
TABLE_COLUMNS_MAX = 10  # classes as columns of the split table up to this many, else rows
CLOSE_TO_CALIBRATED = 0.02  # ECE at most this: "close to calibrated"
KNOWN_DATASETS = {  # fetch.url: (its classes, the template naming its origin and terms)
    "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip":
        (["cats", "dogs"], "model_card_dataset_cats_and_dogs.md")}
FORMATS = {  # stage export's names: (what it is, the file, its input)
    "keras": ("Keras 3 model", paths.EXPORT_MODEL,
              "RGB 0-255, float32 or uint8 (batch, {size}, {size}, 3); preprocessed inside"),
    "saved_model": ("TensorFlow SavedModel", paths.SAVED_MODEL,
                    "`serve`: uint8 RGB (batch, any height, any width, 3); `serve_bytes`: "
                    "encoded JPEG or PNG (batch,)"),
    "tflite_float32": ("TFLite, float32", paths.TFLITE_FLOAT32,
                       "uint8 RGB (batch, {size}, {size}, 3)"),
    "tflite_int8": ("TFLite, full-integer int8", paths.TFLITE_INT8,
                    "uint8 RGB (batch, {size}, {size}, 3)"),
}


def fill(template, values):
    return Template((TEMPLATES / template).read_text()).substitute(values)


def fragment(template, values):
    """A template filled in for a place inside the card: without its last newline."""
    return fill(template, values).rstrip("\n")


def interval(value, low, high):
    return f"{value:.3f} ({low:.3f} to {high:.3f})"


def number(value):
    return "-" if value is None else f"{value:.3f}"  # roc_auc is None with a class missing


def row(*cells):
    return "| " + " | ".join(str(cell).replace("|", r"\|") for cell in cells) + " |"


def table(header, rows):
    """A Markdown table: header names, then rows of cells (numbers right-aligned)."""
    align = ["---"] + ["---:"] * (len(header) - 1)
    return "\n".join([row(*header), "| " + " | ".join(align) + " |", *(row(*r) for r in rows)])


def git(*arguments):
    """git's output in the working folder, or None (no git, not a repository, an error)."""
    try:
        done = subprocess.run(["git", *arguments], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def version():
    """The last commit that changed dvc.lock (10 hex digits, "-dirty" if dvc.lock has changed
    since) and its date; "unknown" outside git."""
    last = git("log", "-1", "--format=%H %cs", "--", LOCK)
    if not last:
        return {"version": "unknown", "date": "unknown"}
    commit, date = last.split()
    dirty = "-dirty" if git("status", "--porcelain", "--", LOCK) else ""
    return {"version": commit[:10] + dirty, "date": date}


def read_per_class(path, model="final"):
    """stage evaluate's per_class.csv rows of one model (class names stay text)."""
    with open(path, newline="", encoding="utf-8") as file:
        return [r for r in csv.DictReader(file) if r["model"] == model]


def reports(p):
    """The tracked files the card quotes, by name."""
    out = paths.EVALUATE_REPORTS
    try:
        return read_reports(p, out)
    except FileNotFoundError as error:
        raise SystemExit(f"model_card: {error.filename} is missing: run the pipeline "
                         f"(make pipeline), then this script") from None


def read_reports(p, out):
    return {"split": read_json(paths.SPLIT_METRICS), "evaluated": read_json(out / "metrics.json"),
            "per_class": read_per_class(out / "per_class.csv"),
            "calibrated": read_json(out / "calibration.json"),
            "compared": read_json(paths.COMPARE_REPORTS / "metrics.json"),
            "exported": read_json(paths.EXPORT_REPORTS / "metrics.json"),
            "weights": read_json(paths.pretrained_provenance(p.model.backbone,
                                                             p.model.image_size))}


def kind(class_count):
    """The templates' suffix: one sigmoid unit (two classes) or a softmax (more)."""
    return "two_classes" if class_count == 2 else "classes"


def classes(p):
    """The class names, the output's wording (sigmoid or softmax) and the dataset's."""
    names = sorted(p.classes)
    negative, positive = names[0], names[-1]  # two classes: p(positive) is the sigmoid's
    values = {"class_count": len(names), "class_names": ", ".join(names),
              "class_choice": ", ".join(names[:-1]) + " or " + positive,
              "negative": negative, "positive": positive, "threshold": f"{p.evaluate.threshold:g}",
              "title": " vs ".join(names) if len(names) == 2 else f"{len(names)}-class image"}
    values["output"] = fragment(f"model_card_output_{kind(len(names))}.md", values)
    return {**values, **dataset(p, names)}


def dataset(p, names):
    """Where the images come from and their terms: a known dataset's words only if both the
    URL and the classes are its own."""
    source = p.fetch.url or p.fetch.path
    known = KNOWN_DATASETS.get(p.fetch.url)
    template = known[1] if known and known[0] == names else "model_card_dataset.md"
    return {"source": source, "dataset_terms": fragment(template, {"source": source})}


def recipe(p, split):
    """How it was trained, and on which images."""
    return {**{f"{name}_images": f"{split[f'{name}_images']:,}" for name in paths.SPLITS},
            "backbone": p.model.backbone, "size": p.model.image_size,
            "dropout": f"{p.train_head.dropout:g}", "head_epochs": p.train_head.epochs,
            "head_learning_rate": f"{p.train_head.learning_rate:g}",
            "unfreeze_last": p.finetune.unfreeze_last, "finetune_epochs": p.finetune.epochs,
            "finetune_learning_rate": f"{p.finetune.learning_rate:g}",
            "batch_size": p.train.batch_size, "seed": p.train.seed,
            "rotation_degrees": f"{p.augment.rotation_degrees:g}",
            "shift_fraction": f"{p.augment.shift_fraction:.0%}",
            "val_fraction": f"{p.split.val_fraction:.0%}", "split_seed": p.split.seed,
            "training_photos": f"{split['train_images'] + split['val_images']:,}",
            "split_table": split_table(sorted(p.classes), split)}


def split_table(names, split):
    """Images per class and split (stage split's <split>_<class>): a column per class, or a
    row per class when there are many."""
    count = {(s, name): f"{split.get(f'{s}_{name}', 0):,}" for s in paths.SPLITS for name in names}
    if len(names) <= TABLE_COLUMNS_MAX:
        return table(["split", *names], [[s, *(count[s, name] for name in names)]
                                         for s in paths.SPLITS])
    return table(["class", *paths.SPLITS], [[name, *(count[s, name] for s in paths.SPLITS)]
                                            for name in names])


def model_rows(p, evaluated, compared, scores):
    """The metrics table: this model, the baseline, then the other backbones."""
    def accuracy(split):  # evaluate's layout: {accuracy, accuracy_low, accuracy_high}
        return interval(split["accuracy"], split["accuracy_low"], split["accuracy_high"])

    def compared_accuracy(run, split):  # compare_report's layout: <split>_accuracy[_low|_high]
        return interval(*(run[f"{split}_accuracy{end}"] for end in ("", "_low", "_high")))

    rows = [row(label, accuracy(m["val"]), accuracy(m["test"]),
                *(number(m["test"][key]) for key in scores))
            for label, m in ((f"**this model** ({p.model.backbone})", evaluated["final"]),
                             ("baseline, same backbone", evaluated["baseline"]))]
    rows += [row(f"same recipe, {name}", compared_accuracy(compared[name], "val"),
                 compared_accuracy(compared[name], "test"), *("-" for _ in scores))
             for name in p.compare.backbones]
    return "\n".join(rows)


def metrics(p, r, words):
    """The metrics section (two classes: precision, recall, ROC AUC and the two kinds of
    error; more: macro F1 and ROC AUC) with the recipe against the baseline."""
    evaluated = r["evaluated"]
    paired, test = evaluated["final_vs_baseline_test"], evaluated["final"]["test"]
    scores = {"two_classes": ("precision", "recall", "roc_auc"),
              "classes": ("macro_f1", "roc_auc")}[kind(words["class_count"])]
    errors = round((1 - test["accuracy"]) * r["split"]["test_images"])
    values = {**words, "confidence": f"{p.evaluate.confidence:.0%}",
              "model_rows": model_rows(p, evaluated, r["compared"], scores),
              "false_positives": test.get("fp"), "false_negatives": test.get("fn"),
              "test_errors": f"{errors:,}", "only_final_right": paired["only_final_right"],
              "only_baseline_right": paired["only_baseline_right"],
              "p_value": f"{paired['p_value']:.2g}",
              "versus_baseline": verdicts.recipe(evaluated)["versus_baseline"]}
    return fragment(f"model_card_metrics_{kind(words['class_count'])}.md", values)


def per_class_rows(per_class):
    return "\n".join(row(r["class"], f"{int(r['images']):,}",
                         *(f"{float(r[key]):.3f}" for key in ("precision", "recall", "f1")))
                     for r in per_class)


def calibration(calibrated):
    """The final model's ECE on test, worded by a fixed rule: close to calibrated, else over-
    or under-confident by the sign of mean confidence - accuracy (over the bins' images)."""
    bins = [b for b in calibrated["bins"] if b["images"]]
    images = sum(b["images"] for b in bins)
    gap = sum(b["images"] * (b["confidence"] - b["accuracy"]) for b in bins) / images
    verdict = ("close to calibrated" if calibrated["ece"] <= CLOSE_TO_CALIBRATED
               else "over-confident" if gap > 0 else "under-confident")
    return {"ece": f"{calibrated['ece']:.3f}", "calibration_verdict": verdict,
            "confidence_gap": f"{gap:+.3f}", "calibration_images": f"{images:,}",
            "calibration_bins": len(calibrated["bins"]),
            "close_to_calibrated": f"{CLOSE_TO_CALIBRATED:g}"}


def formats(p, exported):
    """The formats table and the int8 model against its goals."""
    size, goals, int8 = p.model.image_size, exported["int8_goals"], exported["tflite_int8"]
    rows = [row(what, f"`{path}`", given.format(size=size),
                f"{exported[name]['size_bytes'] / 1e6:.1f} MB",
                f"{exported[name]['accuracy']:.3f}",
                f"{exported[name]['agreement_with_keras']:.3f}",
                f"{exported[name]['max_probability_difference']:.1g}",
                f"{exported[name]['ece']:.3f}")
            for name, (what, path, given) in FORMATS.items()]
    return {"format_rows": "\n".join(rows),
            "representative_images": p.export.representative_images,
            "representative_seed": p.export.representative_seed,
            "accuracy_drop": f"{goals['accuracy_drop']:.3f}",
            "accuracy_drop_max": f"{goals['accuracy_drop_max']:g}",
            "accuracy_goal": verdicts.met(goals["accuracy_met"]),
            "size_ratio": f"{goals['size_ratio']:.1f}",
            "size_ratio_min": f"{goals['size_ratio_min']:g}",
            "size_goal": verdicts.met(goals["size_met"]),
            "int8_agreement": f"{int8['agreement_with_keras']:.1%}",
            "int8_difference": f"{int8['max_probability_difference']:.2f}"}


def cap_limit(evaluated):
    """The known limit the training-accuracy cap makes, if it is missed: a bullet with its
    newline, or nothing."""
    said, final = verdicts.recipe(evaluated), evaluated["final"]
    if not said["cap_missed"]:
        return ""
    return fill("model_card_cap_overfits.md" if said["overfits_old_sense"]
                else "model_card_cap_missed.md",
                {"train_accuracy": f"{final['train_accuracy']:.3f}",
                 "train_accuracy_max": evaluated["targets"]["train_accuracy_max"],
                 "val_accuracy_min": evaluated["targets"]["val_accuracy_min"],
                 "train_clean_accuracy": f"{final['train_clean_accuracy']:.3f}",
                 "gap_clean_train_val": f"{final['gap_clean_train_val']:+.3f}",
                 "val_accuracy": f"{final['val']['accuracy']:.3f}"})


def artifact(p, weights):
    """The artifact folder's files and the starting weights' provenance."""
    provenance = paths.pretrained_provenance(p.model.backbone, p.model.image_size)
    files = {"export_model": paths.EXPORT_MODEL, "description": paths.DESCRIPTION,
             "labels": paths.LABELS, "saved_model": paths.SAVED_MODEL,
             "tflite_float32": paths.TFLITE_FLOAT32, "tflite_int8": paths.TFLITE_INT8}
    return {"export": f"{paths.EXPORT}/", **{key: path.name for key, path in files.items()},
            "weights_file": weights["file"],
            "weights_sha256": weights["file_sha256"][:16],
            "weights_loaded_by": weights["loaded_by"], "weights_provenance": provenance}


def card():
    p = params.load()
    r = reports(p)
    words = {**version(), **classes(p), **recipe(p, r["split"])}
    return fill("model_card.md", {
        **words, "metrics": metrics(p, r, words), "per_class_rows": per_class_rows(r["per_class"]),
        **calibration(r["calibrated"]), **formats(p, r["exported"]),
        "cap_limit": cap_limit(r["evaluated"]), **artifact(p, r["weights"])})


def main(argv=None):
    write_or_check({paths.MODEL_CARD: card}, "python scripts/model_card.py", __doc__, argv)


if __name__ == "__main__":
    main()
