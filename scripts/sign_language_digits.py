"""Issue 24's example: the recipe on ten classes (the Sign Language Digits Dataset), run as a
DVC experiment beside the baseline and set against a linear probe, written to
reports/examples/sign_language_digits/.

    python scripts/sign_language_digits.py zip --dataset CLONE/Dataset --out digits.zip
    python scripts/sign_language_digits.py run --zip digits.zip  # experiment, probe, report
    python scripts/sign_language_digits.py collect   # the probe again, from the experiment
    python scripts/sign_language_digits.py report    # the folder again, from what it holds

The dataset is not downloaded: build the zip from a clone of
https://github.com/ardamavi/Sign-Language-Digits-Dataset (Apache-2.0; 2,062 photos in
Dataset/0/ to Dataset/9/) with `zip`: per digit, the files sorted by name, the first 80% go
to train/<digit>/, the rest to validation/<digit>/ (the file numbers run per student, so the
test set is mostly other students).

run: `dvc exp run --temp` (in a scratch copy, so the workspace is left as it is; it copies
only what git tracks: `git add` new pipeline files first) with params.yaml's recipe and only
the dataset changed (fetch, classes from the zip's folders, and validate.min_images_per_class:
the test folders hold 41 or 42 photos per digit), up to stages evaluate and export (the
recipe, the baseline and the artifact; not compare), timed. `dvc exp show` lists it (`dvc exp apply
sign-language-digits` would put its results in the workspace). collect: from the
experiment's commit and DVC's cache (dvc.api.DVCFileSystem, not the workspace), its test
predictions and the linear probe: logistic regression on the frozen backbone's pooled
features of its decoded train images (the recipe's starting weights), C chosen on val,
scored on its test images. report: the folder's metrics.json, per_class.csv,
confusion_matrix.png and README.md from its predictions.csv, collected.json and
experiment.json alone: no number is typed.
"""
import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from string import Template

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from catsdogs import params, paths, plots  # noqa: E402
from catsdogs.evaluation import (Bootstrap, accuracy_interval, classifier_metrics,  # noqa: E402
                                 confusion, correct, mcnemar, per_class, predicted,
                                 read_predictions)
from catsdogs.reports import read_json, write_json, write_text  # noqa: E402

OUT = ROOT / "reports" / "examples" / "sign_language_digits"
TEMPLATE = Path(__file__).resolve().parent / "templates" / "sign_language_digits.md"
NAME = "sign-language-digits"  # the experiment's
ZIP_ROOT = "sign_language_digits"  # the zip's dataset folder
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # the repository's photos are .JPG
TRAIN_FRACTION = 0.8  # of each digit's files (sorted by name) in train/, the rest validation/
# The recipe, the baseline, their evaluation and the artifact (export); not compare (other
# backbones), which would double the time.
TARGETS = ("evaluate", "export")
# The test folders hold 41 or 42 photos per digit, under params' default of 50 (a guard
# against a broken source, not a recipe knob).
MIN_IMAGES_PER_CLASS = 30
MODELS = {"final": "recipe", "baseline": "baseline", "linear_probe": "linear probe"}
C_GRID = (0.01, 0.1, 1.0, 10.0)  # the probe's inverse L2 strengths, one picked on val
PAIRS_SHOWN = 5
DECIMALS = 5  # as stage evaluate rounds its per-image probabilities


def build_zip(dataset, out):
    """The fetch layout from the repository's Dataset/<digit>/ folders: per digit, the files
    sorted by name, the first TRAIN_FRACTION in train/<digit>/, the rest in validation/."""
    with zipfile.ZipFile(out, "w") as archive:
        for folder in sorted(path for path in Path(dataset).iterdir() if path.is_dir()):
            files = sorted(path.name for path in folder.iterdir()
                           if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)
            cut = round(TRAIN_FRACTION * len(files))
            for index, name in enumerate(files):
                split = "train" if index < cut else "validation"
                archive.write(folder / name, f"{ZIP_ROOT}/{split}/{folder.name}/{name}")


def zip_classes(path):
    """The class folders of a zip in the fetch layout (.../train/<class>/<file>, the same
    under validation/), sorted: the labels' order."""
    with zipfile.ZipFile(path) as archive:
        parts = [name.split("/") for name in archive.namelist() if not name.endswith("/")]
    found = {split: sorted({p[-2] for p in parts if len(p) >= 3 and p[-3] == split})
             for split in paths.SOURCE_SPLITS}
    if not found["train"] or found["train"] != found["validation"]:
        raise SystemExit(f"{path}: no train/<class>/ and validation/<class>/ folders with the "
                         f"same classes ({found})")
    return found["train"]


def overrides(zip_path, classes, extra=()):
    """The experiment's -S values (as DVC parses them: Hydra's syntax, strings quoted): only
    the dataset changes; `extra` (key=value) adds to or replaces them."""
    values = {"fetch.url": "null", "fetch.path": json.dumps(str(zip_path)),
              "classes": json.dumps(classes),
              "validate.min_images_per_class": str(MIN_IMAGES_PER_CLASS)}
    values.update(item.split("=", 1) for item in extra)
    return [f"{key}={value}" for key, value in values.items()]


def experiment_command(name, settings):
    # --force: every stage reruns (no run-cache restore, so the wall time is a real run's)
    # and an earlier experiment of this name is replaced.
    return ["dvc", "exp", "run", "--temp", "--force", "--name", name,
            *(arg for setting in settings for arg in ("-S", setting)), *TARGETS]


def git(*arguments):
    return subprocess.run(["git", *arguments], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout


def experiment_rev(name):
    """The newest experiment commit named `name` (refs/exps/<baseline>/<name>)."""
    for line in git("for-each-ref", "--sort=-committerdate",
                    "--format=%(objectname) %(refname)", "refs/exps/").splitlines():
        rev, ref = line.split(" ", 1)
        if ref.count("/") == 4 and ref.rsplit("/", 1)[1] == name:
            return rev
    raise SystemExit(f"no experiment named {name} (dvc exp list): run `run --zip PATH` first")


def run(zip_path, name, extra, out):
    zip_path = Path(zip_path).expanduser().resolve()
    classes = zip_classes(zip_path)
    untracked = git("ls-files", "--others", "--exclude-standard", "--", "catsdogs", "stages",
                    "dvc.yaml", "params.yaml").split()
    if untracked:
        raise SystemExit(f"dvc exp run --temp copies only what git tracks; `git add` these "
                         f"first: {', '.join(untracked)}")
    command = experiment_command(name, overrides(zip_path, classes, extra))
    print("sign_language_digits:", shlex.join(command), flush=True)
    environment = {**os.environ, "DVC_NO_ANALYTICS": "1",  # `python` in the stages: this one
                   "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", *command], cwd=ROOT, env=environment, check=True)
    wall = time.monotonic() - start
    rev = experiment_rev(name)
    with open(zip_path, "rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    shown = experiment_command(name, overrides("<the zip>", classes, extra))  # not our path
    write_json(out / "experiment.json", {
        "name": name, "rev": rev, "command": shlex.join(shown), "extra": extra,
        "zip_sha256": digest, "wall_seconds": round(wall), "cpu_cores": os.cpu_count(),
        "load_average_at_end": round(os.getloadavg()[0], 1)})
    collect(rev, out)


def feature_extractor(backbone, image_size, weights):
    """uint8 images (N, s, s, 3) -> the frozen backbone's global-average-pooled features: the
    pixels through the backbone's own preprocessing layer, as in every model the recipe builds."""
    import keras
    from catsdogs.models import BACKBONES, build_base
    base = build_base(backbone, image_size, weights)
    inputs = keras.Input((image_size, image_size, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(
        base(BACKBONES[backbone].preprocess_layer()(inputs), training=False))
    return keras.Model(inputs, pooled)


def features(extractor, images, batch_size=32):
    return np.concatenate([extractor.predict_on_batch(np.asarray(images[i:i + batch_size],
                                                                 "float32"))
                           for i in range(0, len(images), batch_size)])


def linear_probe(train, val, test, count):
    """Logistic regression on (features, labels) of train, its C picked by val accuracy (the
    smallest C of a tie): (test probabilities (N, count), {C: val accuracy}, C)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fitted = {c: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
              .fit(*train) for c in C_GRID}
    on_val = {c: float(model.score(*val)) for c, model in fitted.items()}
    best = max(C_GRID, key=on_val.get)
    model = fitted[best]
    if list(model.classes_) != list(range(count)):  # predict_proba's columns: these labels
        raise SystemExit(f"linear probe: train labels {list(model.classes_)}, not 0 to "
                         f"{count - 1}")
    return model.predict_proba(test[0]), on_val, best


def rounded(probabilities):
    """Probabilities to DECIMALS places, as predictions.csv keeps them; refused if that changes
    a prediction (the report's numbers are computed from the file)."""
    kept = np.round(probabilities, DECIMALS)
    if not np.array_equal(kept.argmax(axis=1), np.asarray(probabilities).argmax(axis=1)):
        raise SystemExit(f"rounding to {DECIMALS} places changes a prediction")
    return kept


def collect(rev, out):
    """predictions.csv (the experiment's test predictions and the probe's) and collected.json
    (what they came from), read from commit `rev` and DVC's cache, not the workspace."""
    from dvc.api import DVCFileSystem
    from ruamel.yaml import YAML
    from catsdogs.decoded import DecodedImages
    from catsdogs.models import seed_everything
    fs = DVCFileSystem(str(ROOT), rev=rev)
    p = params.parse(YAML(typ="safe", pure=True).load(fs.read_text(str(paths.PARAMS))))
    classes, model = sorted(p.classes), p.model
    weights = paths.pretrained_weights(model.backbone, model.image_size)
    with tempfile.TemporaryDirectory() as scratch:
        local = lambda path: Path(scratch, path)  # noqa: E731
        for path in [paths.EVALUATE_REPORTS / "test_predictions.csv", weights, *(
                paths.DECODED / f"{split}.{kind}.npy" for split in paths.SPLITS
                for kind in ("images", "labels"))]:
            local(path).parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(str(path), str(local(path)))
        tested = read_predictions(local(paths.EVALUATE_REPORTS / "test_predictions.csv"))
        seed_everything(p.train.seed)
        start = time.monotonic()
        extractor = feature_extractor(model.backbone, model.image_size, str(local(weights)))
        splits = {split: (features(extractor, DecodedImages(local(paths.DECODED /
                                                                  f"{split}.images.npy"))),
                          np.load(local(paths.DECODED / f"{split}.labels.npy"),
                                  allow_pickle=False).astype(int))
                  for split in paths.SPLITS}
        probe, on_val, c = linear_probe(splits["train"], splits["val"], splits["test"],
                                        len(classes))
        seconds = time.monotonic() - start
    if not np.array_equal(splits["test"][1], tested["label"]):
        raise SystemExit("the decoded test labels and test_predictions.csv disagree")
    frame = tested[["path", "class", "label"]].copy()
    for name in ("final", "baseline"):
        columns = [f"{name}_p_{k}" for k in classes]
        if [classes[k] for k in predicted(tested[columns].to_numpy(), p.evaluate.threshold)] != \
                list(tested[f"{name}_predicted"]):
            raise SystemExit(f"{name}: test_predictions.csv's probabilities and predictions "
                             f"disagree")
        frame[columns] = tested[columns]
    frame[[f"linear_probe_p_{k}" for k in classes]] = rounded(probe)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "predictions.csv", index=False)
    split_counts = json.loads(fs.read_text(str(paths.SPLIT_METRICS)))
    validated = json.loads(fs.read_text(str(paths.VALIDATE_REPORTS / "metrics.json")))
    exported = json.loads(fs.read_text(str(paths.EXPORT_REPORTS / "metrics.json")))
    write_json(out / "collected.json", {
        "rev": rev, "classes": classes, "params": p.model_dump(
            include={"model", "train", "augment", "baseline", "train_head", "finetune",
                     "evaluate"}),
        "validate": {key: validated[key] for key in ("images", "accepted", "quarantined")},
        "split": {f"{s}_images": split_counts[f"{s}_images"] for s in paths.SPLITS},
        "export": {name: exported[name]["accuracy"] for name in exported
                   if isinstance(exported[name], dict) and "accuracy" in exported[name]},
        "pretrained": json.loads(fs.read_text(str(paths.pretrained_provenance(
            model.backbone, model.image_size)))),
        "probe": {"features": int(splits["train"][0].shape[1]), "c": c,
                  "val_accuracy_by_c": {f"{k:g}": v for k, v in on_val.items()},
                  "seconds": round(seconds)}})
    report(out)


def confused_pairs(matrix, classes, shown=PAIRS_SHOWN):
    """The largest off-diagonal counts: (actual, predicted, images, share of actual's images)."""
    pairs = [(matrix[a, b], classes[a], classes[b], matrix[a, b] / matrix[a].sum())
             for a in range(len(classes)) for b in range(len(classes)) if a != b and matrix[a, b]]
    pairs.sort(key=lambda pair: -pair[0])  # stable: ties stay in (actual, predicted) order
    return [(actual, said, int(n), share) for n, actual, said, share in pairs[:shown]]


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def report(out):
    """metrics.json, per_class.csv, confusion_matrix.png and README.md from predictions.csv,
    collected.json and experiment.json (no training, no DVC)."""
    frame = read_predictions(out / "predictions.csv")
    collected, experiment = read_json(out / "collected.json"), read_json(out / "experiment.json")
    if experiment["rev"] != collected["rev"]:
        raise SystemExit(f"experiment.json times {experiment['rev']}, collected.json holds "
                         f"{collected['rev']}: run `run` again")
    classes, labels, knobs = collected["classes"], frame["label"].to_numpy(), \
        collected["params"]["evaluate"]
    bootstrap = Bootstrap(knobs["bootstrap_resamples"], knobs["bootstrap_seed"],
                          knobs["confidence"])
    probabilities = {name: frame[[f"{name}_p_{k}" for k in classes]].to_numpy()
                     for name in MODELS}
    right = {name: correct(labels, p, knobs["threshold"]) for name, p in probabilities.items()}
    metrics = {"test_images": len(frame)}  # the wall time: experiment.json (not a metric)
    for name, p in probabilities.items():
        metrics[name] = {**classifier_metrics(labels, p, knobs["threshold"]),
                         **accuracy_interval(right[name], bootstrap)}
    for other in ("linear_probe", "baseline"):
        paired = mcnemar(right["final"], right[other], knobs["significance"])
        metrics[f"final_vs_{other}"] = {"only_final_right": paired["only_a_right"],
                                        f"only_{other}_right": paired["only_b_right"],
                                        "p_value": paired["p_value"],
                                        "significant": paired["significant"]}
    write_json(out / "metrics.json", metrics)

    tables = {name: per_class(labels, p, knobs["threshold"], classes)
              for name, p in probabilities.items()}
    wide = tables["final"][["class", "images"]].copy()
    for name, scores in tables.items():
        for column in ("precision", "recall", "f1"):
            wide[f"{name}_{column}"] = scores[column].round(5)
    wide.to_csv(out / "per_class.csv", index=False)
    matrices = {name: confusion(labels, probabilities[name], knobs["threshold"])
                for name in ("final", "linear_probe")}
    plots.confusion(out / "confusion_matrix.png", {f"the {MODELS[name]}, test": m
                                                   for name, m in matrices.items()}, classes)
    write_text(out / "README.md", readme(metrics, wide, matrices["final"], classes, collected,
                                         experiment))


def readme(metrics, wide, matrix, classes, collected, experiment):
    p, probe, weights = collected["params"], collected["probe"], collected["pretrained"]
    model, knobs, extra = p["model"], p["evaluate"], experiment["extra"]
    named = {"final": f"**the recipe**: {model['backbone']}, frozen head "
                      f"{p['train_head']['epochs']} epochs, then top "
                      f"{p['finetune']['unfreeze_last']} layers fine-tuned "
                      f"{p['finetune']['epochs']} epochs",
             "baseline": f"the baseline: every layer but BatchNorm trainable, no "
                         f"augmentation, {p['baseline']['epochs']} epochs",
             "linear_probe": f"the linear probe: logistic regression (C = {probe['c']:g}) on "
                             f"the frozen {model['backbone']}'s features"}
    models = table(
        ["model", f"test accuracy ({knobs['confidence']:.0%} interval)", "macro F1", "log loss"],
        [[named[name], f"{m['accuracy']:.3f} ({m['accuracy_low']:.3f} to "
                       f"{m['accuracy_high']:.3f})", f"{m['macro_f1']:.3f}", f"{m['loss']:.3f}"]
         for name, m in ((name, metrics[name]) for name in MODELS)])
    columns = ("final_precision", "final_recall", "final_f1", "baseline_f1", "linear_probe_f1")
    per_class_table = table(
        ["class", "test images", "precision", "recall", "F1", "baseline F1", "probe F1"],
        [[row["class"], row["images"], *(f"{row[c]:.3f}" for c in columns)]
         for _, row in wide.iterrows()])
    pairs = confused_pairs(matrix, classes)
    pairs = table(["actual", "called", "test images", "share of the actual class"],
                  [[a, b, n, f"{share:.1%}"] for a, b, n, share in pairs]) if pairs else \
        "None: the recipe classifies every test image right."
    minutes, seconds = divmod(experiment["wall_seconds"], 60)
    return Template(TEMPLATE.read_text()).substitute(
        **collected["validate"], **collected["split"],
        **{key: experiment[key] for key in ("name", "command", "zip_sha256", "cpu_cores",
                                            "load_average_at_end")},
        classes=", ".join(f'"{k}"' for k in classes), class_count=len(classes),
        rev=collected["rev"][:10], wall=f"{minutes} min {seconds:02d} s",
        recipe="with " + ", ".join(f"`{setting}`" for setting in extra) if extra
        else "unchanged",
        size=model["image_size"], backbone=model["backbone"],
        weights=f"ImageNet weights (`{weights['file']}`, {weights['loaded_by']})"
        if model["weights"] == "imagenet" else "random initial weights (model.weights: null)",
        models=models, verdicts="\n".join(f"- {paired(metrics, other)}"
                                          for other in ("linear_probe", "baseline")),
        per_class=per_class_table, pairs=pairs, features=probe["features"],
        grid=", ".join(probe["val_accuracy_by_c"]),
        val_by_c=", ".join(f"C = {c}: {a:.3f}" for c, a in probe["val_accuracy_by_c"].items()),
        probe_seconds=probe["seconds"],
        formats=", ".join(f"{name} {accuracy:.3f}" for name, accuracy in
                          collected["export"].items()))


def paired(metrics, other):
    """One sentence: the recipe against `other` on the same test images (McNemar)."""
    final, them, test = metrics["final"], metrics[other], metrics[f"final_vs_{other}"]
    ahead = final["accuracy"] - them["accuracy"]
    said = ("a real difference" if test["significant"] else "within noise") + \
        f" (McNemar's exact test p = {test['p_value']:.2g})"
    return (f"The recipe against the {MODELS[other]}: {final['accuracy']:.3f} vs "
            f"{them['accuracy']:.3f} ({ahead:+.3f}); on the same {metrics['test_images']} test "
            f"images only the recipe is right on {test['only_final_right']}, only the "
            f"{MODELS[other]} on {test[f'only_{other}_right']}: {said}.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    zipping = commands.add_parser("zip", help="the dataset zip, from a clone of "
                                  "github.com/ardamavi/Sign-Language-Digits-Dataset")
    zipping.add_argument("--dataset", required=True, help="the clone's Dataset/ folder")
    zipping.add_argument("--out", required=True, help="the zip to write")
    running = commands.add_parser("run", help="the experiment, then collect and report")
    running.add_argument("--zip", required=True, help="the dataset zip (see zip): the "
                         "experiment's fetch.path, which DVC hashes as a dependency")
    running.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                         help="one more `dvc exp run -S` (for trials: the committed report "
                              "is params.yaml's recipe)")
    collecting = commands.add_parser("collect", help="the linear probe and predictions.csv "
                                     "again, from the experiment; then report")
    for command in (running, collecting):
        command.add_argument("--name", default=NAME, help=f"the experiment's (default {NAME})")
    commands.add_parser("report", help="the folder again from its predictions.csv, "
                        "collected.json and experiment.json")
    args = parser.parse_args(argv)
    if args.command == "zip":
        build_zip(args.dataset, args.out)
    elif args.command == "run":
        run(args.zip, args.name, args.set, OUT)
    elif args.command == "collect":
        collect(experiment_rev(args.name), OUT)
    else:
        report(OUT)


if __name__ == "__main__":
    main()
