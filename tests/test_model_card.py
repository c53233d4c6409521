"""MODEL_CARD.md is written from params.yaml and the committed reports; it must not drift."""
import json
import shutil
import subprocess
import sys

from catsdogs import params as P
from catsdogs import paths
from conftest import ROOT

COMMITTED = P.load(ROOT / paths.PARAMS).model

SCRIPT = ROOT / "scripts" / "model_card.py"
SOURCES = [paths.PARAMS, paths.SPLIT_METRICS, paths.EVALUATE_REPORTS / "metrics.json",
           paths.COMPARE_REPORTS / "metrics.json", paths.EXPORT_REPORTS / "metrics.json",
           paths.pretrained_provenance(COMMITTED.backbone, COMMITTED.image_size), paths.MODEL_CARD]


def check(folder):
    return subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=folder,
                          capture_output=True, text=True)


def test_the_model_card_matches_the_committed_reports():
    result = check(ROOT)
    assert result.returncode == 0, result.stderr


def test_the_card_quotes_each_format_and_a_changed_metric_makes_it_stale(tmp_path):
    for source in SOURCES:
        (tmp_path / source).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / source, tmp_path / source)
    card = (tmp_path / paths.MODEL_CARD).read_text()
    exported = json.loads((tmp_path / paths.EXPORT_REPORTS / "metrics.json").read_text())
    for path in (paths.FINAL_MODEL, paths.SAVED_MODEL, paths.TFLITE_FLOAT32, paths.TFLITE_INT8):
        assert f"`{path}`" in card
    int8_row = next(line for line in card.splitlines() if f"`{paths.TFLITE_INT8}`" in line)
    assert f"| {exported['tflite_int8']['accuracy']:.3f} |" in int8_row
    assert check(tmp_path).returncode == 0  # the copy is complete: the control

    exported["tflite_int8"]["accuracy"] -= 0.1
    (tmp_path / paths.EXPORT_REPORTS / "metrics.json").write_text(json.dumps(exported))
    result = check(tmp_path)
    assert result.returncode != 0 and "out of date" in result.stderr
