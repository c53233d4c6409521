"""scripts/pr_report.py against a real throwaway git + DVC repo with two commits."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pr_report.py"
# `python` in the stage's cmd must be this interpreter (it has pyyaml), venv activated or not.
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1",
       "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}

# One stage that turns params into a metrics file and dvclive-style learning curves (one row
# per epoch) kept in git (cache: false), with dvc.yaml's top-level plot ids, like the pipeline:
# the fine-tuning curves follow the epochs, the frozen-head ones never change.
TRAIN_PY = """\
import json, os, yaml
epochs = yaml.safe_load(open("params.yaml"))["train"]["epochs"]
json.dump({"accuracy": epochs / 10, "loss": 0.5}, open("metrics.json", "w"))
for phase, rows in (("head", [0.5, 0.6]), ("finetune", [e / 10 for e in range(epochs)])):
    for split, shift in (("train", 0.1), ("eval", 0.0)):
        os.makedirs(f"live/{phase}/{split}", exist_ok=True)
        with open(f"live/{phase}/{split}/accuracy.tsv", "w") as tsv:
            tsv.write("step\\taccuracy\\n")
            tsv.writelines(f"{step}\\t{value + shift}\\n" for step, value in enumerate(rows))
"""
DVC_YAML = """\
stages:
  train:
    cmd: python train.py
    deps:
      - train.py
    params:
      - train.epochs
    metrics:
      - metrics.json:
          cache: false
    plots:
      - live:
          cache: false
plots:
  - Learning curves, frozen head:
      x: step
      y:
        live/head/train/accuracy.tsv: accuracy
        live/head/eval/accuracy.tsv: accuracy
  - Learning curves, fine-tuning:
      x: step
      y:
        live/finetune/train/accuracy.tsv: accuracy
        live/finetune/eval/accuracy.tsv: accuracy
"""


def sh(repo, *command):
    result = subprocess.run(command, cwd=repo, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(map(str, command))}:\n{result.stderr}"


def dvc(repo, *args):
    sh(repo, sys.executable, "-m", "dvc", *args)


def commit_with_epochs(repo, epochs, message):
    (repo / "params.yaml").write_text(f"train:\n  epochs: {epochs}\n  batch_size: 32\n")
    dvc(repo, "repro", "-q")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", message)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """Commit 1: epochs 4 (accuracy 0.4); commit 2: epochs 8 (accuracy 0.8); loss stays 0.5."""
    repo = tmp_path_factory.mktemp("repo")
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "config", "user.name", "Test")
    sh(repo, "git", "config", "user.email", "test@example.com")
    dvc(repo, "init", "-q")
    (repo / "train.py").write_text(TRAIN_PY)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    commit_with_epochs(repo, 4, "four epochs")
    commit_with_epochs(repo, 8, "eight epochs")
    return repo


def pr_report(repo, *args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=repo, env=ENV,
                          capture_output=True, text=True)


def table_row(markdown, name):
    """Cells of the markdown table row naming `name`, or None."""
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if name in cells:
            return cells
    return None


def test_report_shows_old_and_new_values_of_changed_metric_and_param(repo):
    result = pr_report(repo, "HEAD~1", "HEAD")
    assert result.returncode == 0, result.stderr
    report = result.stdout
    assert report.startswith("# ")
    assert table_row(report, "accuracy") == ["metrics.json", "accuracy", "0.4", "0.8", "0.4"]
    assert table_row(report, "train.epochs") == ["params.yaml", "train.epochs", "4", "8"]
    assert table_row(report, "loss") is None  # unchanged metrics are left out
    assert table_row(report, "train.batch_size") is None


def test_no_change_against_workspace_says_so(repo):
    result = pr_report(repo, "HEAD")
    assert result.returncode == 0, result.stderr
    assert "No metrics changed." in result.stdout
    assert "No params changed." in result.stdout


def test_plots_are_embedded_and_missing_ones_skipped(repo):
    plot = repo / "reports" / "evaluate" / "roc.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot.write_bytes(b"\x89PNG\r\n\x1a\n")
    out = repo / "out" / "report.md"
    result = pr_report(repo, "HEAD~1", "--plot", "reports/evaluate/roc.png",
                       "--plot", "reports/missing.png", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    report = out.read_text()
    assert "![roc](../reports/evaluate/roc.png)" in report  # relative to the report file
    assert "reports/missing.png: not found, skipped" in report
    assert "0.4" in report and "0.8" in report


def test_changed_learning_curves_are_drawn_base_dashed_head_solid(repo):
    out = repo / "out" / "report.md"
    result = pr_report(repo, "HEAD~1", "HEAD", "--out", str(out),  # this repo's two curves
                       "--curve", "Learning curves, frozen head",
                       "--curve", "Learning curves, fine-tuning")
    assert result.returncode == 0, result.stderr
    report = out.read_text()
    section = report.split("## Learning curves")[1].split("## ")[0]
    assert "![learning curves fine tuning](pr_report_plots/learning_curves_fine_tuning.png)" \
        in section
    assert "_Unchanged: `Learning curves, frozen head`._" in section  # named, not drawn
    assert sorted(p.name for p in (out.parent / "pr_report_plots").iterdir()) == \
        ["learning_curves_fine_tuning.png"]
    with Image.open(out.parent / "pr_report_plots" / "learning_curves_fine_tuning.png") as image:
        assert image.format == "PNG" and image.width >= 600 and image.height >= 300
        assert len(image.convert("RGB").getcolors(1 << 16)) > 50  # drawn, not a blank canvas
    assert not (repo / "dvc_plots").exists()  # dvc plots diff leaves nothing behind


def test_unknown_revision_fails_with_clear_message(repo):
    result = pr_report(repo, "no-such-branch", "HEAD")
    assert result.returncode != 0
    assert "git revision 'no-such-branch' does not exist" in result.stderr
    assert result.stdout == ""


def test_dvc_failure_shows_its_stderr(tmp_path):
    sh(tmp_path, "git", "init", "-q")  # a git repo without `dvc init`
    sh(tmp_path, "git", "-c", "user.name=T", "-c", "user.email=t@example.com",
       "commit", "-q", "--allow-empty", "-m", "empty")
    result = pr_report(tmp_path, "HEAD")
    assert result.returncode != 0
    assert "dvc root failed" in result.stderr
    assert "not inside of a DVC repository" in result.stderr
