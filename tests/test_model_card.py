"""MODEL_CARD.md is written from params.yaml, the committed reports and git; it must not drift,
it names every class and words two classes and more apart, and it words the same verdicts as
stage evaluate's summary (catsdogs.verdicts). Beside the committed reports, the tests build
fabricated projects: the card's sources in the shapes the stages write them, values arbitrary."""
import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from catsdogs import evaluation as E
from catsdogs import params as P
from catsdogs import paths, verdicts
from conftest import ROOT

SCRIPT = ROOT / "scripts" / "model_card.py"
PER_CLASS = paths.EVALUATE_REPORTS / "per_class.csv"
FORMAT_FILES = (paths.EXPORT_MODEL, paths.SAVED_MODEL, paths.TFLITE_FLOAT32, paths.TFLITE_INT8)
THREE = ["ants", "bees", "wasps"]


def run(folder, *options):
    return subprocess.run([sys.executable, str(SCRIPT), *options], cwd=folder,
                          capture_output=True, text=True)


def check(folder):
    return run(folder, "--check")


def write(folder, path, data):
    (folder / path).parent.mkdir(parents=True, exist_ok=True)
    (folder / path).write_text(data if isinstance(data, str) else json.dumps(data, indent=2))


def fake_split(names, rng):
    """Labels and (N, K) probabilities per split: mostly right, class k has more images."""
    splits = {}
    for split, base in {"train": 8, "val": 4, "test": 10}.items():
        labels = np.repeat(np.arange(len(names)), [base + k for k in range(len(names))])
        logits = rng.normal(size=(len(labels), len(names)))
        logits[np.arange(len(labels)), labels] += 2.0
        splits[split] = labels, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return splits


def fake_model(splits, p):
    """One model's entry of evaluate's metrics.json (stages/evaluate.py main)."""
    scores = {}
    for split in ("val", "test"):
        labels, probabilities = splits[split]
        right = E.correct(labels, probabilities, p.evaluate.threshold)
        scores[split] = {**E.classifier_metrics(labels, probabilities, p.evaluate.threshold),
                         **E.accuracy_interval(right, E.Bootstrap(200, 0, 0.95))}
    clean = float(E.correct(*splits["train"], p.evaluate.threshold).mean())
    val = scores["val"]["accuracy"]
    return {"train_accuracy": 0.95, "train_clean_accuracy": clean, "gap_train_val": 0.95 - val,
            "gap_clean_train_val": clean - val, **scores}


def fake_evaluate(folder, p, names, models):
    """evaluate's metrics.json, per_class.csv and calibration.json."""
    threshold, test = p.evaluate.threshold, {name: s["test"] for name, s in models.items()}
    metrics = {name: fake_model(s, p) for name, s in models.items()}
    paired = E.mcnemar(*(E.correct(*test[name], threshold) for name in ("final", "baseline")),
                       p.evaluate.significance)
    metrics["final_vs_baseline_test"] = {
        "only_final_right": paired["only_a_right"], "only_baseline_right": paired["only_b_right"],
        "p_value": paired["p_value"], "significant": paired["significant"]}
    metrics["targets"] = verdicts.targets(metrics["final"], p.evaluate)
    write(folder, paths.EVALUATE_REPORTS / "metrics.json", metrics)
    tables = {name: E.per_class(*test[name], threshold, names) for name in models}
    write(folder, PER_CLASS, pd.concat(tables, names=["model", None])
          .reset_index(level="model").round(5).to_csv(index=False))
    write(folder, paths.EVALUATE_REPORTS / "calibration.json",
          {"model": "final", "split": "test", **E.calibration(*test["final"], threshold)})
    return metrics


def fake_compare(folder, p, evaluated):
    """compare_report's metrics.json: a row per backbone (evaluation.comparison_row's keys)."""
    rows = {}
    for i, backbone in enumerate([p.model.backbone, *p.compare.backbones]):
        scores = {split: {key: evaluated["final"][split][key] - i / 100
                          for key in ("accuracy", "loss", "accuracy_low", "accuracy_high")}
                  for split in ("val", "test")}
        rows[backbone] = {**E.comparison_row(
            backbone, {"params_total": 1000 + i, "params_trainable": 10},
            {"accuracy": 0.9, "params_trainable": 100}, scores),
            **{f"{s}_{k}": scores[s][k] for s in scores for k in ("accuracy_low",
                                                                  "accuracy_high")}}
    write(folder, paths.COMPARE_REPORTS / "metrics.json", rows)


def fake_export(folder, p, test_images):
    """export's metrics.json (stages/export.py: format_metrics, and main's int8_goals)."""
    metrics = {name: {"accuracy": 0.9 - i / 50, "agreement_with_keras": 1 - i / 100,
                      "max_probability_difference": i / 10, "ece": 0.03 + i / 100,
                      "size_bytes": 8_000_000 // (1 + i)}
               for i, name in enumerate(["keras", "saved_model", "tflite_float32",
                                         "tflite_int8"])}
    metrics["int8_goals"] = {"accuracy_drop": 0.02, "accuracy_drop_max": 0.01,
                             "accuracy_met": False, "size_ratio": 1.5, "size_ratio_min": 3.0,
                             "size_met": False}
    write(folder, paths.EXPORT_REPORTS / "metrics.json", {**metrics, "test_images": test_images})


def fabricate(folder, names, seed=0):
    """A project folder with every source of the card, for these classes."""
    raw = yaml.safe_load((ROOT / paths.PARAMS).read_text())
    write(folder, paths.PARAMS, yaml.safe_dump({**raw, "classes": names}))
    p = P.load(folder / paths.PARAMS)
    rng = np.random.default_rng(seed)
    models = {name: fake_split(sorted(names), rng) for name in ("final", "baseline")}
    counts = {}
    for split, (labels, _) in models["final"].items():
        counts[f"{split}_images"] = len(labels)
        counts.update({f"{split}_{n}": int(np.sum(labels == k))
                       for k, n in enumerate(sorted(names))})
    write(folder, paths.SPLIT_METRICS, counts)
    evaluated = fake_evaluate(folder, p, sorted(names), models)
    fake_compare(folder, p, evaluated)
    fake_export(folder, p, counts["test_images"])
    write(folder, paths.pretrained_provenance(p.model.backbone, p.model.image_size),
          {"loaded_by": "a test", "file": "weights.h5", "file_sha256": "ab" * 32})
    return folder


@pytest.fixture(params=[["cats", "dogs"], THREE], ids=["K2", "K3"])
def project(request, tmp_path):
    return fabricate(tmp_path, request.param)


def card_of(folder):
    result = run(folder)
    assert result.returncode == 0, result.stderr
    return (folder / paths.MODEL_CARD).read_text()


def test_the_model_card_matches_the_committed_reports():
    result = check(ROOT)
    assert result.returncode == 0, result.stderr


def test_the_card_names_every_class_and_quotes_its_sources(project):
    card, p = card_of(project), P.load(project / paths.PARAMS)
    names = sorted(p.classes)
    with open(project / PER_CLASS, newline="") as file:
        final = [r for r in csv.DictReader(file) if r["model"] == "final"]
    for r in final:  # every class, with the final model's numbers
        assert (f"| {r['class']} | {int(r['images']):,} | {float(r['precision']):.3f} | "
                f"{float(r['recall']):.3f} | {float(r['f1']):.3f} |") in card
    assert [r["class"] for r in final] == names
    calibrated = json.loads((project / paths.EVALUATE_REPORTS / "calibration.json").read_text())
    assert f"**{calibrated['ece']:.3f}**" in card
    for section in ("## License", "## Intended use", "## Out-of-scope uses", "## Calibration"):
        assert section in card
    assert "MIT (`LICENSE`)" in card and "_Version `unknown` of unknown" in card
    assert "catsdogs-predict PATH..." in card and f"`{paths.EXPORT}/`" in card
    if len(names) == 2:
        assert f"p({names[1]})" in card and f"{names[1]} when p >= {p.evaluate.threshold:g}" \
            in card and "Kaggle" in card and "user's to check" not in card
        assert "test precision" in card and "macro F1" not in card
    else:  # the cats-and-dogs URL with other classes: no claim about the data
        assert "softmax of 3 units" in card and "arg-max" in card and "sigmoid" not in card
        assert "Kaggle" not in card and "the dataset's terms are the user's to check" in card
        assert "test macro F1" in card and "test precision" not in card


def test_the_card_quotes_each_format_and_a_changed_number_makes_it_stale(project):
    card = card_of(project)
    exported = json.loads((project / paths.EXPORT_REPORTS / "metrics.json").read_text())
    for path in FORMAT_FILES:
        assert f"`{path}`" in card
    int8_row = next(line for line in card.splitlines()
                    if line.startswith("| ") and f"`{paths.TFLITE_INT8}`" in line)
    assert f"| {exported['tflite_int8']['accuracy']:.3f} |" in int8_row
    assert check(project).returncode == 0  # the control

    per_class = pd.read_csv(project / PER_CLASS, dtype={"class": str})
    per_class.loc[(per_class["model"] == "final").idxmax(), "recall"] -= 0.1
    per_class.to_csv(project / PER_CLASS, index=False)
    result = check(project)
    assert result.returncode != 0 and "out of date" in result.stderr


def test_many_classes_get_a_row_each_in_the_split_table(tmp_path):
    names = [f"class{i:02d}" for i in range(12)]
    card = card_of(fabricate(tmp_path, names))
    split = json.loads((tmp_path / paths.SPLIT_METRICS).read_text())
    assert "| class | train | val | test |" in card
    for name in names:
        assert f"| {name} | {split[f'train_{name}']} | {split[f'val_{name}']} | " \
               f"{split[f'test_{name}']} |" in card


def git(folder, *arguments):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *arguments],
                   cwd=folder, check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_version_is_the_last_commit_of_dvc_lock_and_later_commits_keep_the_card(tmp_path):
    folder = fabricate(tmp_path, ["cats", "dogs"])
    (folder / "dvc.lock").write_text("results: 1\n")
    git(folder, "init", "-q")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "results")
    commit = subprocess.run(["git", "log", "-1", "--format=%H %cs"], cwd=folder,
                            capture_output=True, text=True, check=True).stdout.split()
    assert f"_Version `{commit[0][:10]}` of {commit[1]} (" in card_of(folder)
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "the card, then more work")
    assert check(folder).returncode == 0  # a later commit leaves the card up to date
    (folder / "dvc.lock").write_text("results: 2\n")  # new results: the card must change
    assert check(folder).returncode != 0 and f"`{commit[0][:10]}-dirty`" in card_of(folder)


def test_help_prints_usage_and_writes_nothing(tmp_path):
    stale = "a stale card\n"
    (tmp_path / paths.MODEL_CARD).write_text(stale)
    result = run(tmp_path, "--help")
    assert result.returncode == 0 and "--check" in result.stdout, result.stderr
    assert (tmp_path / paths.MODEL_CARD).read_text() == stale


CAP = "The training-accuracy cap is"


@pytest.mark.parametrize("train_met, val_met, card_says, summary_says", [
    (True, True, None, None),
    (False, True, "The model does not overfit in the old sense",
     "The model is not overfitting in the old sense"),
    (False, False, "the model overfits in the old sense",
     "The model is overfitting in the old sense"),
])
def test_the_card_and_evaluates_summary_word_the_same_verdicts(tmp_path, train_met, val_met,
                                                               card_says, summary_says):
    from stages.evaluate import summary_table  # TensorFlow: only for this test

    fabricate(tmp_path, ["cats", "dogs"])
    metrics_file = tmp_path / paths.EVALUATE_REPORTS / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    metrics["targets"].update(train_accuracy_met=train_met, val_accuracy_met=val_met,
                              all_met=train_met and val_met)
    metrics["final_vs_baseline_test"]["significant"] = True
    metrics_file.write_text(json.dumps(metrics))
    card, summary = card_of(tmp_path), summary_table(metrics, 0.95)

    if card_says is None:
        assert CAP not in card and CAP not in summary
    else:
        assert card_says in card and summary_says in summary
    denied = not train_met and val_met  # "not overfitting in the old sense": only then
    assert ("not overfit" in card) == ("not overfit" in summary) == denied
    for text in (card, summary):
        assert "a real difference" in text and "within noise" not in text
    assert f"val accuracy > {metrics['targets']['val_accuracy_min']}: " + (
        "met" if val_met else "NOT met") in summary
