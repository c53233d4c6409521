"""MODEL_CARD.md is written from params.yaml and the committed reports; it must not drift,
and it words the same verdicts as stage evaluate's summary (catsdogs.verdicts)."""
import json
import shutil
import subprocess
import sys

import pytest

from catsdogs import params as P
from catsdogs import paths
from conftest import ROOT

COMMITTED = P.load(ROOT / paths.PARAMS).model

SCRIPT = ROOT / "scripts" / "model_card.py"
SOURCES = [paths.PARAMS, paths.SPLIT_METRICS, paths.EVALUATE_REPORTS / "metrics.json",
           paths.COMPARE_REPORTS / "metrics.json", paths.EXPORT_REPORTS / "metrics.json",
           paths.pretrained_provenance(COMMITTED.backbone, COMMITTED.image_size), paths.MODEL_CARD]


def run(folder, *options):
    return subprocess.run([sys.executable, str(SCRIPT), *options], cwd=folder,
                          capture_output=True, text=True)


def check(folder):
    return run(folder, "--check")


@pytest.fixture
def copy(tmp_path):
    """A folder with the card's sources, copied from the project."""
    for source in SOURCES:
        (tmp_path / source).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / source, tmp_path / source)
    return tmp_path


def test_the_model_card_matches_the_committed_reports():
    result = check(ROOT)
    assert result.returncode == 0, result.stderr


def test_the_card_quotes_each_format_and_a_changed_metric_makes_it_stale(copy):
    card = (copy / paths.MODEL_CARD).read_text()
    exported = json.loads((copy / paths.EXPORT_REPORTS / "metrics.json").read_text())
    for path in (paths.FINAL_MODEL, paths.SAVED_MODEL, paths.TFLITE_FLOAT32, paths.TFLITE_INT8):
        assert f"`{path}`" in card
    int8_row = next(line for line in card.splitlines() if f"`{paths.TFLITE_INT8}`" in line)
    assert f"| {exported['tflite_int8']['accuracy']:.3f} |" in int8_row
    assert check(copy).returncode == 0  # the copy is complete: the control

    exported["tflite_int8"]["accuracy"] -= 0.1
    (copy / paths.EXPORT_REPORTS / "metrics.json").write_text(json.dumps(exported))
    result = check(copy)
    assert result.returncode != 0 and "out of date" in result.stderr


def test_help_prints_usage_and_writes_nothing(copy):
    stale = "a stale card\n"
    (copy / paths.MODEL_CARD).write_text(stale)
    result = run(copy, "--help")
    assert result.returncode == 0 and "--check" in result.stdout, result.stderr
    assert (copy / paths.MODEL_CARD).read_text() == stale


CAP = "The training-accuracy cap is"


@pytest.mark.parametrize("train_met, val_met, card_says, summary_says", [
    (True, True, None, None),
    (False, True, "The model does not overfit in the old sense",
     "The model is not overfitting in the old sense"),
    (False, False, "the model overfits in the old sense",
     "The model is overfitting in the old sense"),
])
def test_the_card_and_evaluates_summary_word_the_same_verdicts(copy, train_met, val_met,
                                                               card_says, summary_says):
    from stages.evaluate import summary_table  # TensorFlow: only for this test

    metrics_file = copy / paths.EVALUATE_REPORTS / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    metrics["targets"].update(train_accuracy_met=train_met, val_accuracy_met=val_met,
                              all_met=train_met and val_met)
    metrics["final_vs_baseline_test"]["significant"] = True
    metrics_file.write_text(json.dumps(metrics))
    result = run(copy)
    assert result.returncode == 0, result.stderr
    card, summary = (copy / paths.MODEL_CARD).read_text(), summary_table(metrics, 0.95)

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
