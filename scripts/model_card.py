"""Write MODEL_CARD.md from params.yaml and the committed reports.

    python scripts/model_card.py          # rewrite MODEL_CARD.md
    python scripts/model_card.py --check  # exit 1 if MODEL_CARD.md is out of date

Every number in the card comes from a tracked file (metrics, split counts, weights
provenance); the card only words them, so it cannot drift from the pipeline's results
(tests/test_model_card.py runs --check). The words are scripts/templates/model_card*.md
(string.Template); the verdicts are catsdogs.verdicts'. Latency is not quoted: it changes
from run to run (reports/timing/reports_export.json holds the last run's).
"""
import sys
from pathlib import Path
from string import Template

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from catsdogs import params, paths, verdicts  # noqa: E402
from catsdogs.reports import read_json, write_or_check  # noqa: E402

TEMPLATES = Path(__file__).resolve().parent / "templates"
FORMATS = {  # stage export's names: (what it is, the file, its input)
    "keras": ("Keras 3 model, the pipeline's own", paths.FINAL_MODEL,
              "float32 (batch, {size}, {size}, 3), already through preprocess_input"),
    "saved_model": ("TensorFlow SavedModel", paths.SAVED_MODEL,
                    "uint8 RGB (batch, any height, any width, 3)"),
    "tflite_float32": ("TFLite, float32", paths.TFLITE_FLOAT32,
                       "uint8 RGB (batch, {size}, {size}, 3)"),
    "tflite_int8": ("TFLite, full-integer int8", paths.TFLITE_INT8,
                    "uint8 RGB (batch, {size}, {size}, 3)"),
}


def fill(template, values):
    return Template((TEMPLATES / template).read_text()).substitute(values)


def interval(value, low, high):
    return f"{value:.3f} ({low:.3f} to {high:.3f})"


def row(*cells):
    return "| " + " | ".join(cells) + " |"


def reports(p):
    """The tracked files the card quotes, by name."""
    return {"split": read_json(paths.SPLIT_METRICS),
            "evaluated": read_json(paths.EVALUATE_REPORTS / "metrics.json"),
            "compared": read_json(paths.COMPARE_REPORTS / "metrics.json"),
            "exported": read_json(paths.EXPORT_REPORTS / "metrics.json"),
            "weights": read_json(paths.pretrained_provenance(p.model.backbone,
                                                             p.model.image_size))}


def recipe(p, split):
    """What the model is, how it was trained, and on which images."""
    negative, positive = sorted(p.classes)
    counts = {}
    for name in paths.SPLITS:  # <split>_images, <split>_negative, <split>_positive
        counts.update({f"{name}_images": f"{split[f'{name}_images']:,}",
                       f"{name}_negative": f"{split[f'{name}_{negative}']:,}",
                       f"{name}_positive": f"{split[f'{name}_{positive}']:,}"})
    return {**counts, "backbone": p.model.backbone, "size": p.model.image_size,
            "negative": negative, "positive": positive, "threshold": f"{p.evaluate.threshold:g}",
            "dropout": f"{p.train_head.dropout:g}", "head_epochs": p.train_head.epochs,
            "head_learning_rate": f"{p.train_head.learning_rate:g}",
            "unfreeze_last": p.finetune.unfreeze_last, "finetune_epochs": p.finetune.epochs,
            "finetune_learning_rate": f"{p.finetune.learning_rate:g}",
            "batch_size": p.train.batch_size, "seed": p.train.seed,
            "rotation_degrees": f"{p.augment.rotation_degrees:g}",
            "shift_fraction": f"{p.augment.shift_fraction:.0%}",
            "val_fraction": f"{p.split.val_fraction:.0%}", "split_seed": p.split.seed,
            "training_photos": f"{split['train_images'] + split['val_images']:,}"}


def model_rows(p, evaluated, compared):
    """The metrics table: this model, the baseline, then the other backbones."""
    def accuracy(split):  # evaluate's layout: {accuracy, accuracy_low, accuracy_high}
        return interval(split["accuracy"], split["accuracy_low"], split["accuracy_high"])

    def compared_accuracy(run, split):  # compare_report's layout: <split>_accuracy[_low|_high]
        return interval(*(run[f"{split}_accuracy{end}"] for end in ("", "_low", "_high")))

    rows = [row(label, accuracy(m["val"]), accuracy(m["test"]),
                *(f"{m['test'][key]:.3f}" for key in ("precision", "recall", "roc_auc")))
            for label, m in ((f"**this model** ({p.model.backbone})", evaluated["final"]),
                             ("baseline, same backbone", evaluated["baseline"]))]
    rows += [row(f"same recipe, {name}", compared_accuracy(compared[name], "val"),
                 compared_accuracy(compared[name], "test"), "-", "-", "-")
             for name in p.compare.backbones]
    return "\n".join(rows)


def metrics(p, evaluated, compared):
    """The metrics section: the table, the test errors, the recipe against the baseline."""
    paired, test = evaluated["final_vs_baseline_test"], evaluated["final"]["test"]
    return {"confidence": f"{p.evaluate.confidence:.0%}",
            "model_rows": model_rows(p, evaluated, compared),
            "false_positives": test["fp"], "false_negatives": test["fn"],
            "only_final_right": paired["only_final_right"],
            "only_baseline_right": paired["only_baseline_right"],
            "p_value": f"{paired['p_value']:.2g}",
            "versus_baseline": verdicts.recipe(evaluated)["versus_baseline"]}


def formats(p, exported):
    """The formats table and the int8 model against its goals."""
    size, goals, int8 = p.model.image_size, exported["int8_goals"], exported["tflite_int8"]
    rows = [row(what, f"`{path}`", given.format(size=size),
                f"{exported[name]['size_bytes'] / 1e6:.1f} MB",
                f"{exported[name]['accuracy']:.3f}",
                f"{exported[name]['agreement_with_keras']:.3f}",
                f"{exported[name]['max_probability_difference']:.1g}")
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


def card():
    p = params.load()
    r = reports(p)
    weights = r["weights"]
    return fill("model_card.md", {
        **recipe(p, r["split"]), **metrics(p, r["evaluated"], r["compared"]),
        **formats(p, r["exported"]), "cap_limit": cap_limit(r["evaluated"]),
        "weights_file": weights["file"], "weights_sha256": weights["file_sha256"][:16],
        "weights_loaded_by": weights["loaded_by"],
        "weights_provenance": paths.pretrained_provenance(p.model.backbone, p.model.image_size)})


def main(argv=None):
    write_or_check(paths.MODEL_CARD, card, "python scripts/model_card.py", __doc__, argv)

if __name__ == "__main__":
    main()
