"""End to end: `dvc repro` on tiny data in a temporary copy of the project."""
import io
import json
import shlex
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from conftest import ROOT, class_tints, dvc, make_dataset, make_project, project_env, run

pytestmark = pytest.mark.slow

STAGES = ["fetch", "validate", "split", "decode", "pretrained",
          "pretrained_compare@efficientnet_b0", "baseline", "train_head", "finetune",
          "evaluate", "compare@efficientnet_b0", "compare_report"]
OUTPUTS = ["data/raw/train/cats", "data/validated/manifest.csv", "data/split/test.csv",
           "models/pretrained/mobilenet_v2_32.weights.h5",
           "models/pretrained/efficientnet_b0_32.weights.h5",
           "reports/pretrained/efficientnet_b0_32.json",
           "models/baseline.keras", "models/head.keras", "models/final.keras",
           "reports/validate/gx_result.json", "reports/evaluate/metrics.json",
           "reports/evaluate/learning_curves.png", "reports/evaluate/roc.png",
           "reports/evaluate/confusion_matrix.png", "reports/evaluate/misclassified.png",
           "reports/evaluate/per_class.csv", "reports/evaluate/calibration.json",
           "reports/evaluate/calibration.png", "models/export/labels.txt",
           "reports/compare/compare.md", "reports/compare/runs/efficientnet_b0/metrics.json"]


def ran(output, stage):
    return f"Running stage '{stage}'" in output


def test_repro_runs_every_stage_then_only_what_a_param_change_touches(reproduced_project,
                                                                     reproduced_copy,
                                                                     write_params):
    # The first `dvc repro` (every stage from scratch, compare with efficientnet_b0) is the
    # session's reproduced_project: its output, and its results in this test's copy.
    first, project = reproduced_project.output, reproduced_copy
    dataset = reproduced_project.dataset
    assert [s for s in STAGES if not ran(first, s)] == []
    assert [p for p in OUTPUTS if not (project / p).exists()] == []
    metrics = json.loads((project / "reports/evaluate/metrics.json").read_text())
    # The per-image predictions must tell the same story as the metrics (row alignment).
    predictions = pd.read_csv(project / "reports/evaluate/test_predictions.csv")
    for model in ("final", "baseline"):
        correct = predictions[f"{model}_predicted"] == predictions["class"]
        assert metrics[model]["test"]["accuracy"] == pytest.approx(correct.mean())
        dogs_called_cats = ((predictions["class"] == "dogs") & ~correct).sum()
        assert metrics[model]["test"]["fn"] == dogs_called_cats
    assert set(metrics["targets"]) >= {"val_accuracy_met", "train_accuracy_met", "all_met"}
    assert "efficientnet_b0" in (project / "reports/compare/compare.md").read_text()
    assert "reports/evaluate/metrics.json" in dvc(project, "metrics", "show", "--json")
    # dvc.lock records, by content, the weights every training stage started from.
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    written = {o["path"]: o["md5"] for stage in lock if stage.startswith("pretrained")
               for o in lock[stage]["outs"]}
    for stage, weights in (("train_head", "models/pretrained/mobilenet_v2_32.weights.h5"),
                           ("baseline", "models/pretrained/mobilenet_v2_32.weights.h5"),
                           ("compare@efficientnet_b0",
                            "models/pretrained/efficientnet_b0_32.weights.h5")):
        used = {d["path"]: d["md5"] for d in lock[stage]["deps"]}
        assert used[weights] == written[weights], stage

    write_params(project, dataset, compare__backbones=["efficientnet_b0"],
                 finetune__learning_rate=0.0001)
    second = dvc(project, "repro")
    rerun = [s for s in STAGES if ran(second, s)]
    assert rerun == ["finetune", "evaluate", "compare@efficientnet_b0", "compare_report"], second
    assert "up to date" in dvc(project, "status", "dvc.yaml")

    # The intervals' params retrain nothing: only the stages that report reruns.
    write_params(project, dataset, compare__backbones=["efficientnet_b0"],
                 finetune__learning_rate=0.0001, evaluate__bootstrap_resamples=500)
    status = dvc(project, "status", "dvc.yaml")
    assert [s for s in STAGES if f"{s}:" in status] == ["evaluate", "compare_report"], status
    write_params(project, dataset, compare__backbones=["efficientnet_b0"],
                 finetune__learning_rate=0.0001)

    # A forced rerun of everything changes nothing that is tracked: metrics hold what the
    # models do (wall times live in reports/timing/), and the README quotes only those.
    for name in ("README.md", "docs", "scripts/readme_results.py", "scripts/templates",
                 "benchmarks/results"):
        source, target = ROOT / name, project / name
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    run([sys.executable, "scripts/readme_results.py"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "results"], project)
    dvc(project, "repro", "--force")
    changed = run(["git", "status", "--porcelain", "--", "dvc.lock", "reports",
                   ":!reports/timing"], project).stdout
    assert changed == ""
    assert dvc(project, "metrics", "diff").strip() == ""
    run([sys.executable, "scripts/readme_results.py", "--check"], project)


def test_more_classes_run_end_to_end_through_dvc_repro_and_predict(tmp_path, write_params):
    """5 classes: fetch to export through `dvc repro`, then the installed command's code
    classifies the test folder from another directory with the artifact alone. (3 classes go
    through train_head, export and predict in their own tests.)"""
    tints = class_tints(5)
    dataset, classes = make_dataset(tmp_path / "five_classes", tints=tints), sorted(tints)
    project = make_project(tmp_path / "project", dataset, write_params)
    write_params(project, dataset, classes=classes, compare__backbones=["mobilenet"])
    dvc(project, "repro")
    assert "up to date" in dvc(project, "status", "dvc.yaml")

    metrics = json.loads((project / "reports/evaluate/metrics.json").read_text())
    assert {"accuracy", "macro_f1", "roc_auc", "ece"} <= set(metrics["final"]["test"])
    assert "precision" not in metrics["final"]["test"]  # per class, in per_class.csv
    per_class = pd.read_csv(project / "reports/evaluate/per_class.csv", dtype={"class": str})
    assert sorted(per_class[per_class["model"] == "final"]["class"]) == classes
    test = pd.read_csv(project / "reports/evaluate/test_predictions.csv", dtype=str)
    assert set(test["final_predicted"]) <= set(classes) and set(test["class"]) == set(classes)
    compared = json.loads((project / "reports/compare/metrics.json").read_text())
    assert "mobilenet" in compared
    artifact = project / "models/export"
    assert (artifact / "labels.txt").read_text().splitlines() == classes
    assert json.loads((artifact / "classifier.json").read_text())["classes"] == classes

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, "-m", "catsdogs.predict", "--model", str(artifact),
                             "--format", "csv", str(dataset / "validation")], cwd=elsewhere,
                            env=project_env(project), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith("error:")]
    predicted = pd.read_csv(io.StringIO(result.stdout), dtype={"class": str})
    assert len(predicted) == len(test) and set(predicted["class"]) <= set(classes)
    assert [f"p_{name}" for name in classes] == [c for c in predicted if c.startswith("p_")]


def test_the_readme_headline_metrics_command_shows_the_headline_metrics(reproduced_copy):
    """README's short `dvc exp show` (the full metrics table has hundreds of columns)."""
    command = next(line.split("#")[0] for line in (ROOT / "README.md").read_text().splitlines()
                   if line.startswith("dvc exp show --md --drop"))
    header = dvc(reproduced_copy, *shlex.split(command)[1:]).splitlines()[0]
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns == ["Experiment", "final.train_accuracy", "final.val.accuracy",
                       "final.test.accuracy", "baseline.train_accuracy", "baseline.val.accuracy",
                       "baseline.test.accuracy", "targets.all_met"]
