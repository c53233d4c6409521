"""dvc.yaml's top-level plots as `dvc plots show` draws them from the committed curves (no
training): each learning curve in a colour of its own and each revision in a dash of its own
(DVC's linear template gives every curve of a revision one colour), on a page that says UTF-8."""
import json
import sys

import pytest
import yaml

from conftest import ROOT, run

pytestmark = pytest.mark.slow  # a dvc process or two

CURVE_PLOTS = [name for plot in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
               for name, spec in plot.items() if spec.get("template") == "learning_curve"]


def shown(out_dir, *args):
    return run([sys.executable, "-m", "dvc", "plots", "show", "-o", str(out_dir), *args],
               ROOT).stdout


def test_every_learning_curve_gets_a_colour_and_every_revision_a_dash(tmp_path):
    assert len(CURVE_PLOTS) == 4, "dvc.yaml's learning-curve plots are not on the template"
    shown_plots = json.loads(shown(tmp_path, "--json"))["data"]
    for name in CURVE_PLOTS:
        spec = shown_plots[name][0]["content"]
        rows, files = spec["data"]["values"], {row["filename"] for row in spec["data"]["values"]}
        assert len(files) >= 2 and all(row["rev"] == "workspace" for row in rows), name
        # The colour is per curve (its file), the dash per revision: no two curves of one
        # revision share both.
        series = [step for step in spec["transform"] if step.get("as") == "series"]
        assert len(series) == 1 and "datum.filename" in series[0]["calculate"], name
        # The smoothed line, the raw line and the last point; not the hover rule.
        layers = [layer for layer in spec["layer"] if "color" in layer.get("encoding", {})]
        assert len(layers) == 3, name
        for layer in layers:
            assert layer["encoding"]["color"]["field"] == "series", name
            assert layer["encoding"]["strokeDash"]["field"] == "rev", name
        # Smoothing (loess) keeps only its group-by fields: the series is computed again after.
        smoothed = spec["layer"][0]["transform"]
        assert [step.get("as") for step in smoothed][-1] == "series", name


def test_the_plots_page_declares_utf8(tmp_path):
    """dvc-render's page has no charset: a browser would read Vega's "…" and any non-ASCII
    class name as Latin-1. .dvc/config points `dvc plots show` at a page that declares it."""
    shown(tmp_path)
    head = (tmp_path / "index.html").read_text(encoding="utf-8").split("</head>")[0]
    assert '<meta charset="utf-8">' in head
