"""Write MODEL_CARD.md from params.yaml and the committed reports.

    python scripts/model_card.py          # rewrite MODEL_CARD.md
    python scripts/model_card.py --check  # exit 1 if MODEL_CARD.md is out of date

Every number in the card comes from a tracked file (metrics, split counts, weights
provenance); the card only words them, so it cannot drift from the pipeline's results
(tests/test_model_card.py runs --check). Latency is not quoted: it changes from run to run
(reports/timing/reports_export.json holds the last run's).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from catsdogs import params, paths  # noqa: E402
from catsdogs.evaluation import read_json  # noqa: E402

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


def interval(value, low, high):
    return f"{value:.3f} ({low:.3f} to {high:.3f})"


def card():
    p = params.load()
    backbone, size = p.model.backbone, p.model.image_size
    class_names = sorted(p.classes)
    split = read_json(paths.SPLIT_METRICS)
    evaluated = read_json(paths.EVALUATE_REPORTS / "metrics.json")
    compared = read_json(paths.COMPARE_REPORTS / "metrics.json")
    exported = read_json(paths.EXPORT_REPORTS / "metrics.json")
    weights = read_json(paths.pretrained_provenance(backbone, size))
    final, baseline, targets = evaluated["final"], evaluated["baseline"], evaluated["targets"]
    confidence = f"{p.evaluate.confidence:.0%}"
    goals, int8 = exported["int8_goals"], exported["tflite_int8"]

    lines = [
        "# Model card: cats vs dogs classifier",
        "",
        "_Written by `python scripts/model_card.py` from `params.yaml` and the committed "
        "reports; `tests/test_model_card.py` fails when it is out of date._",
        "",
        "## What it is",
        "",
        f"- **{backbone}** (keras.applications, ImageNet weights, {size}x{size} px input), "
        f"headless, with a new head: global average pooling, dropout {p.train_head.dropout:g}, "
        f"one sigmoid unit.",
        f"- Trained in two phases on {split['train_images']:,} images: the head alone on the "
        f"frozen base for {p.train_head.epochs} epochs (Adam {p.train_head.learning_rate:g}), "
        f"then the last {p.finetune.unfreeze_last} layers of the base as well for "
        f"{p.finetune.epochs} epochs (Adam {p.finetune.learning_rate:g}, every BatchNorm in "
        f"inference mode); batches of {p.train.batch_size}, randomly flipped, rotated up to "
        f"{p.augment.rotation_degrees:g} degrees and shifted up to "
        f"{p.augment.shift_fraction:.0%}; seed {p.train.seed}.",
        f"- Output: p({class_names[1]}), the probability that the photo shows "
        f"{class_names[1]} rather than {class_names[0]}; {class_names[1]} when p >= "
        f"{p.evaluate.threshold:g}.",
        "",
        "## Intended use",
        "",
        f"Telling {class_names[0]} from {class_names[1]} in ordinary photos with one of the "
        "two animals as the subject, as in the training data: a teaching and demonstration "
        "model for transfer learning, and a baseline for better ones. It is not meant for "
        "decisions about animals or people, and it has no notion of \"neither\": every image, "
        f"whatever it shows, gets {class_names[0]} or {class_names[1]}.",
        "",
        "Classify photos with `python -m catsdogs.predict PATH...` (README: "
        "[Classify a photo](README.md#classify-a-photo)).",
        "",
        "## Data and splits",
        "",
        "The `cats_and_dogs_filtered` dataset (a 3,000-image subset of the Kaggle / Asirra "
        "Dogs vs. Cats photos), after the pipeline's validation (see `reports/validate/`):",
        "",
        "| split | images | " + " | ".join(class_names) + " | what it is |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    roles = {"train": "the dataset's train folder, less val; trains the model and calibrates "
                      "the int8 model",
             "val": f"{p.split.val_fraction:.0%} of the train folder, stratified (seed "
                    f"{p.split.seed}); watched during training",
             "test": "the dataset's own validation folder; used once, at the end"}
    for name, role in roles.items():
        counts = " | ".join(f"{split[f'{name}_{c}']:,}" for c in class_names)
        lines.append(f"| {name} | {split[f'{name}_images']:,} | {counts} | {role} |")

    lines += [
        "",
        "## Metrics",
        "",
        f"On val and test, in inference mode ({confidence} bootstrap intervals). The baseline "
        "is the old setup made sound (every layer but BatchNorm trainable, no augmentation, "
        "no dropout); see the README for the study of the original setup.",
        "",
        "| model | val accuracy | test accuracy | test precision | test recall | test ROC AUC |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    def accuracy(split):  # evaluate's layout: {accuracy, accuracy_low, accuracy_high}
        return interval(split["accuracy"], split["accuracy_low"], split["accuracy_high"])

    def compared_accuracy(run, split):  # compare_report's layout: <split>_accuracy[_low|_high]
        return interval(*(run[f"{split}_accuracy{end}"] for end in ("", "_low", "_high")))

    for label, m in ((f"**this model** ({backbone})", final),
                     ("baseline, same backbone", baseline)):
        lines.append(f"| {label} | {accuracy(m['val'])} | {accuracy(m['test'])} "
                     f"| {m['test']['precision']:.3f} | {m['test']['recall']:.3f} "
                     f"| {m['test']['roc_auc']:.3f} |")
    for name in p.compare.backbones:
        lines.append(f"| same recipe, {name} | {compared_accuracy(compared[name], 'val')} "
                     f"| {compared_accuracy(compared[name], 'test')} | - | - | - |")
    paired = evaluated["final_vs_baseline_test"]
    test = final["test"]
    lines += [
        "",
        f"Of the {split['test_images']:,} test photos, it takes {test['fp']} "
        f"{class_names[0]} for {class_names[1]} and {test['fn']} {class_names[1]} for "
        f"{class_names[0]}. Against the baseline on the same photos: only this model is right "
        f"on {paired['only_final_right']}, only the baseline on "
        f"{paired['only_baseline_right']} (McNemar p = {paired['p_value']:.2g}: "
        f"{'a difference' if paired['significant'] else 'within noise'}).",
        "",
        "## Formats",
        "",
        "Stage `export` writes the model with its preprocessing inside, so a consumer hands "
        "over pixels. Scored on the pipeline's own decoded test images (agreement: the "
        "share of test photos given the Keras model's class; difference: the largest "
        "|p - p(Keras)|):",
        "",
        "| format | file | input | size | test accuracy | agreement | difference |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, (what, path, given) in FORMATS.items():
        m = exported[name]
        lines.append(f"| {what} | `{path}` | {given.format(size=size)} "
                     f"| {m['size_bytes'] / 1e6:.1f} MB | {m['accuracy']:.3f} "
                     f"| {m['agreement_with_keras']:.3f} | {m['max_probability_difference']:.1g} |")
    lines += [
        "",
        "- Every format returns p(" + class_names[1] + ") per image. The SavedModel "
        f"(signature `serving_default`) resizes in its graph exactly as the pipeline does; "
        f"its signature `resized` and the TFLite files take images already decoded and "
        f"resized to {size}x{size} by `catsdogs.data.decode_image` (the predict command does "
        "that).",
        f"- int8: weights and activations int8, calibrated on "
        f"{p.export.representative_images} train images (seed "
        f"{p.export.representative_seed}); output uint8, p in steps of 1/256. Against "
        f"float32: accuracy {goals['accuracy_drop']:.3f} lower (goal: at most "
        f"{goals['accuracy_drop_max']:g}: {'met' if goals['accuracy_met'] else 'NOT met'}), "
        f"{goals['size_ratio']:.1f}x smaller (goal: at least {goals['size_ratio_min']:g}x: "
        f"{'met' if goals['size_met'] else 'NOT met'}).",
        "- Latency and throughput on the machine that ran the stage: "
        "`reports/timing/reports_export.json` (not quoted here: timings change from run to "
        "run).",
        "",
        "## Known limits",
        "",
    ]
    if not targets["train_accuracy_met"]:
        lines.append(
            f"- **The training-accuracy cap is not met**: the last training epoch reports "
            f"{final['train_accuracy']:.3f} (augmented batches, dropout active), above the "
            f"target {targets['train_accuracy_max']}. The model does not overfit in the old "
            f"sense: clean train accuracy {final['train_clean_accuracy']:.3f} is "
            f"{final['gap_clean_train_val']:+.3f} from val {final['val']['accuracy']:.3f}.")
    lines += [
        f"- **Weights provenance**: the base started from `{weights['file']}` "
        f"(sha256 `{weights['file_sha256'][:16]}...`), loaded by {weights['loaded_by']} "
        f"(`{paths.pretrained_provenance(backbone, size)}`). Google's official files and "
        "the converted ones of the project's offline cache (README, Offline weights, says "
        "which the committed results used) give slightly different models; `dvc.lock` "
        "records which file by hash.",
        "- **Across machines**: the numbers are exact on one machine (a rerun gives the same "
        "metrics), but another CPU, thread count or TensorFlow build (oneDNN, XNNPACK "
        "kernels) adds differences in the last float digits, which can flip an image at "
        "p close to the threshold; timings depend on the machine entirely.",
        f"- **Data**: {split['train_images'] + split['val_images']:,} training photos from "
        "one public dataset of pet photos; drawings, several animals in one photo, other "
        "species and photos unlike the dataset's are outside what it has seen, yet each "
        f"still gets {class_names[0]} or {class_names[1]}.",
        f"- **int8** agrees with the Keras model on {int8['agreement_with_keras']:.1%} of test "
        f"photos; its p({class_names[1]}) can differ by up to "
        f"{int8['max_probability_difference']:.2f}, so use float32 where "
        "calibrated probabilities matter.",
        "",
        "## Reproduce",
        "",
        "```bash",
        "make pipeline                      # dvc repro: data, training, evaluation, export",
        "python scripts/model_card.py       # this card, from the reports",
        "```",
        "",
        "Knobs: `params.yaml` (`model`, `train`, `augment`, `train_head`, `finetune`, "
        "`export`); the weights' source: README, Offline weights.",
    ]
    return "\n".join(lines) + "\n"


def main():
    text = card()
    if "--check" in sys.argv:
        if not paths.MODEL_CARD.is_file() or paths.MODEL_CARD.read_text() != text:
            raise SystemExit(f"{paths.MODEL_CARD} is out of date: "
                             f"run python scripts/model_card.py")
        return
    paths.MODEL_CARD.write_text(text)


if __name__ == "__main__":
    main()
