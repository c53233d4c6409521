"""studies/legacy: the old setup as it runs in Keras 3 and its one-factor variants, on the
built models, then end to end through `dvc repro studies/legacy/dvc.yaml` on tiny data."""
import contextlib
import json
import re
import sys

import keras
import numpy as np
import pandas as pd
import pytest

from catsdogs import params as P
from catsdogs.models import find_base, save_model
from conftest import ROOT, copy_project, dvc, run, tiny_params
from studies.legacy import legacy, legacy_report
from studies.legacy import params as LP

STUDY = "studies/legacy/dvc.yaml"
# Few variants keep the end-to-end run short: the reference, the one that matches the tiny
# baseline (1 epoch) but for training augmentation, and the seed's two-phase solution.
TINY_STUDY = {
    "legacy__epochs": 1,
    "legacy__variants": {"old_setup": {},
                         "all_four": {"preprocess": "backbone", "batchnorm": "frozen",
                                      "learning_rate": 0.0001, "validation": "clean"}},
}
STUDY_STAGES = [f"{STUDY}:legacy@old_setup", f"{STUDY}:legacy@all_four",
                f"{STUDY}:legacy_recipe@seed_solution", f"{STUDY}:legacy_report"]


def test_each_variant_is_old_setup_with_only_its_named_factors_changed():
    _, legacy_params = LP.parse(tiny_params())
    old = legacy_params.old_setup.model_dump()
    for name in [*legacy_params.variants, *legacy_params.recipe_variants]:
        setup = legacy_params.setup(name).model_dump()
        changed = {factor for factor in old if setup[factor] != old[factor]}
        assert changed == set(legacy_params.changes(name)), name
    assert legacy_params.setup("all_four").model_dump() == {
        "preprocess": "backbone", "batchnorm": "frozen", "learning_rate": 0.0001,
        "validation": "clean"}


@pytest.mark.parametrize("change, message", [
    (lambda legacy: legacy["variants"].pop("old_setup"), "'legacy.variants' = "),
    (lambda legacy: legacy["variants"].update(old_setup={"batchnorm": "frozen"}),
     "must hold old_setup: {}"),
    (lambda legacy: legacy["recipe_variants"].update(all_four={}),
     "['all_four'] already in legacy.variants"),
    (lambda legacy: legacy["reported"].update(gone={"train_accuracy": 1.0, "val_accuracy": 0.5}),
     "['gone'] are no variants"),
    (lambda legacy: legacy["recipe_variants"].update(fast={"learning_rate": 0.1}),
     "'legacy.recipe_variants.fast.learning_rate' is not a known key"),
    (lambda legacy: legacy["variants"].update(x={"batchnorm": "frozne"}),
     "'legacy.variants.x.batchnorm' = 'frozne'"),
    (lambda legacy: legacy["variants"].update({"a-b": {}}), "should match pattern"),
])
def test_bad_legacy_params_are_refused_by_name(change, message):
    raw = tiny_params()
    change(raw["legacy"])
    P.parse(raw)  # the core leaves the study's section to the study
    with pytest.raises(P.ParamError, match=re.escape(message)):
        LP.parse(raw)


def test_several_legacy_errors_are_listed_in_one_message():
    raw = tiny_params()
    raw["legacy"]["epochs"] = "10"
    del raw["legacy"]["old_setup"]["validation"]
    message = str(pytest.raises(P.ParamError, LP.parse, raw).value)
    assert message.startswith("params.yaml: ") and message.count("; ") == 1
    assert "'legacy.epochs' = '10'" in message and "without quotes" in message
    assert "'legacy.old_setup.validation' is missing" in message


@pytest.mark.parametrize("classes", [["cats", "dogs", "birds"], [f"c{i}" for i in range(10)]])
def test_the_study_refuses_other_than_two_classes_in_one_message(classes):
    raw = tiny_params(classes=classes)
    P.parse(raw)  # the main pipeline takes them
    message = str(pytest.raises(P.ParamError, LP.parse, raw).value)
    assert message == (f"params.yaml: 'classes' = {classes!r}: studies/legacy reproduces a "
                       f"two-class setup (one sigmoid unit); run it with two classes")


def test_a_missing_legacy_section_is_one_clear_message():
    raw = tiny_params()
    del raw["legacy"]
    P.parse(raw)  # the main pipeline runs without it
    with pytest.raises(P.ParamError, match="^params.yaml: 'legacy' is missing: "
                                           "studies/legacy's stages read"):
        LP.parse(raw)


def test_the_core_does_not_import_the_study():
    core = sorted((ROOT / "catsdogs").glob("*.py"))
    assert core and [path.name for path in core
                     if re.search(r"^\s*(from|import)\s+studies\b", path.read_text(), re.M)] == []


def ran(output, stage):
    return f"Running stage '{stage}'" in output


def batchnorms(model):
    return [layer for layer in find_base(model).layers
            if isinstance(layer, keras.layers.BatchNormalization)]


def built(variant, size=32):
    """(the variant's one-phase model, its input scaling layer, raw pixels 0-255)."""
    _, legacy_params = LP.parse(tiny_params())
    model = legacy.all_layers_model("mobilenet_v2", size, None, legacy_params.setup(variant),
                                    seed=0)
    images = np.random.default_rng(0).integers(0, 256, (8, size, size, 3)).astype("float32")
    return model, model.get_layer("preprocess"), images


def rescales_by_1_255(layer):
    return isinstance(layer, keras.layers.Rescaling) and layer.get_config()["scale"] == \
        pytest.approx(1 / 255) and layer.get_config()["offset"] == 0


def test_old_setup_trains_batchnorm_on_batch_statistics_from_rescaled_pixels():
    model, scaling, x = built("old_setup")
    assert rescales_by_1_255(scaling) and model.layers[1] is scaling
    assert 0 <= np.min(scaling(x)) and np.max(scaling(x)) <= 1
    assert all(layer.trainable for layer in batchnorms(model))
    # Batch statistics in training: training and inference outputs differ (no dropout here),
    # and a training-mode call moves the moving averages.
    assert not np.allclose(model(x, training=True), model(x, training=False))
    before = [keras.ops.convert_to_numpy(bn.moving_mean).copy() for bn in batchnorms(model)]
    model(x, training=True)  # what fit's train step does
    moved = [not np.allclose(b, keras.ops.convert_to_numpy(bn.moving_mean))
             for b, bn in zip(before, batchnorms(model))]
    assert sum(moved) > len(moved) / 2  # (a channel dead at random init may stay put)


def test_frozen_batchnorm_variant_keeps_moving_statistics_and_trains_the_rest():
    model, scaling, x = built("b_frozen_batchnorm")
    assert rescales_by_1_255(scaling)  # only BatchNorm changed
    assert not any(layer.trainable for layer in batchnorms(model))
    others = [layer for layer in find_base(model).layers if layer.weights
              and not isinstance(layer, keras.layers.BatchNormalization)]
    assert others and all(layer.trainable for layer in others)
    np.testing.assert_allclose(model(x, training=True), model(x, training=False), atol=1e-6)
    before = [keras.ops.convert_to_numpy(bn.moving_mean).copy() for bn in batchnorms(model)]
    model(x, training=True)
    for b, bn in zip(before, batchnorms(model)):
        np.testing.assert_array_equal(b, keras.ops.convert_to_numpy(bn.moving_mean))


def test_preprocess_input_variant_feeds_the_backbone_its_own_range():
    _, scaling, x = built("all_four")
    assert not rescales_by_1_255(scaling) and np.min(scaling(x)) < 0  # MobileNetV2: [-1, 1]


@pytest.mark.slow
def test_a_variant_saved_takes_raw_pixels_with_its_scaling_inside(tmp_path):
    model, _, x = built("old_setup")
    save_model(model, tmp_path / "old_setup.keras")
    # safe_mode: no code; compile=False: never trained, its optimizer holds no state to load
    loaded = keras.models.load_model(tmp_path / "old_setup.keras", compile=False)
    assert rescales_by_1_255(loaded.get_layer("preprocess"))
    np.testing.assert_allclose(loaded.predict(x.astype("uint8"), verbose=0),
                               model.predict(x, verbose=0), atol=1e-6)


def test_findings_are_written_from_the_numbers():
    # The committed variants: four single changes, all_four.
    p, legacy_params = LP.parse(tiny_params())
    test = {"old_setup": 0.70, "a_preprocess_input": 0.71, "b_frozen_batchnorm": 0.95,
            "c_learning_rate": 0.72, "d_clean_validation": 0.70, "all_four": 0.97,
            "seed_solution": 0.90}
    differs = {"b_frozen_batchnorm", "all_four", "seed_solution"}
    # On the test images: the seed's solution misses 5 that the recipe gets right.
    right = {"seed_solution": np.array([True] * 10 + [False] * 5), "recipe": np.ones(15, bool)}
    rows = {name: {"keras_accuracy": 0.99, "keras_val_accuracy": 0.7, "clean_val_accuracy": 0.7,
                   "test_accuracy": accuracy, "test_p_vs_old_setup": 0.001 if name in differs
                   else 0.5, "test_differs_from_old_setup": name in differs}
            for name, accuracy in test.items()}
    text = "\n".join(legacy_report.findings(p, legacy_params, rows, right, like_baseline=[]))
    assert "b_frozen_batchnorm (batchnorm batch_statistics → frozen): test 0.950 (+0.250" in text
    assert "a_preprocess_input (preprocess rescale → backbone): test 0.710 (+0.010, p = 0.5: " \
           "noise" in text
    assert "one change alone closes: b_frozen_batchnorm 93%. Every other single change is " \
           "noise" in text
    assert "seed_solution: Keras reports train 0.990 / val 0.700 (claimed 0.90 / 0.87)" in text
    assert "only seed_solution is right on 0 images, only the recipe on 5 (p = 0.062: " \
           "noise)" in text
    rows["b_frozen_batchnorm"].update(test_p_vs_old_setup=0.2, test_differs_from_old_setup=False)
    text = "\n".join(legacy_report.findings(p, legacy_params, rows, right, like_baseline=[]))
    assert "No single change improves test accuracy beyond noise" in text and "93%" not in text
    rows["c_learning_rate"].update(test_accuracy=0.60, test_p_vs_old_setup=0.01,
                                   test_differs_from_old_setup=True)
    text = "\n".join(legacy_report.findings(p, legacy_params, rows, right, like_baseline=[]))
    assert "Alone, these make it worse: c_learning_rate (-0.100)." in text


@pytest.fixture(scope="module")
def study(reproduced_project, tmp_path_factory, write_params):
    """A copy of the session's reproduced project (its main stages up to date) after
    `dvc repro studies/legacy/dvc.yaml` with TINY_STUDY: (project, dataset, what it printed).
    TINY_STUDY leaves compare.backbones as committed: compare@mobilenet never ran here, as in a
    project where only the study ran (the main pipeline has stages to run)."""
    project = copy_project(reproduced_project.path,
                           tmp_path_factory.mktemp("legacy") / "project")
    dataset = reproduced_project.dataset
    write_params(project, dataset, **TINY_STUDY)
    return project, dataset, dvc(project, "repro", STUDY)


@pytest.mark.slow
def test_study_runs_the_main_stages_it_needs_then_its_own(study):
    project, _, output = study
    # Here the main stages were up to date: the study ran its own stages only.
    assert sorted(re.findall(r"Running stage '([^']+)'", output)) == sorted(STUDY_STAGES)
    # From scratch (--force: nothing up to date; --dry: what would run) it runs the main stages
    # it needs too, and no compare stage.
    plan = dvc(project, "repro", "--dry", "--force", STUDY)
    needed = ["fetch", "validate", "split", "decode", "pretrained", "baseline", "train_head",
              "finetune", "evaluate"]
    assert [s for s in needed + STUDY_STAGES if not ran(plan, s)] == []
    assert "compare" not in plan


@pytest.mark.slow
def test_the_report_sets_each_variant_beside_what_was_reported(study):
    project = study[0]
    report = (project / "reports/legacy/legacy.md").read_text()
    rows = ["| old_setup |", "| old_setup, as reported |", "| all_four |",
            "| project_baseline |", "| seed_solution |", "| seed_solution, as reported |"]
    assert [row for row in rows if row not in report] == []
    # all_four is the baseline's setup but for training augmentation: the report says so.
    assert "all_four differs from the project's baseline only by training augmentation" in report
    assert report.index("| all_four |") < report.index("| project_baseline |")
    summary = json.loads((project / "reports/legacy/metrics.json").read_text())
    assert set(summary) == {"old_setup", "all_four", "seed_solution", "project_baseline"}
    assert (project / "reports/legacy/curves.png").stat().st_size > 0
    assert "reports/legacy/metrics.json" in dvc(project, "metrics", "show", "--json")


@pytest.mark.slow
@pytest.mark.parametrize("variant, live_dirs", [("old_setup", ["train"]),
                                                ("seed_solution", ["head", "finetune"])])
def test_each_run_keeps_its_curves_clean_scores_and_test_predictions(study, variant, live_dirs):
    project = study[0]
    run_dir = project / "reports/legacy/runs" / variant
    curves = [run_dir / d / "plots/metrics/eval/accuracy.tsv" for d in live_dirs]
    assert [c for c in curves if not c.is_file()] == []
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"keras_last_epoch", "train", "val", "test"}
    assert "seconds" not in json.dumps(metrics)  # wall times go to reports/timing only
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert len(predictions) == len(pd.read_csv(project / "data/split/test.csv"))
    test = metrics["test"]
    assert test["accuracy"] == pytest.approx(predictions["correct"].mean())
    # The interval is legacy_report's (its params must not retrain a variant).
    reported = json.loads((project / "reports/legacy/metrics.json").read_text())[variant]
    assert reported["test_accuracy"] == test["accuracy"]
    assert reported["test_accuracy_low"] <= test["accuracy"] <= reported["test_accuracy_high"]


@contextlib.contextmanager
def one_variant_changed(study, write_params):
    project, dataset, _ = study
    variants = {**TINY_STUDY["legacy__variants"], "all_four": {"batchnorm": "frozen"}}
    write_params(project, dataset, **{**TINY_STUDY, "legacy__variants": variants})
    try:
        yield project
    finally:
        write_params(project, dataset, **TINY_STUDY)


@pytest.mark.slow
def test_changing_one_variant_reruns_only_it(study, write_params):
    assert "up to date" in dvc(study[0], "status", STUDY)
    with one_variant_changed(study, write_params) as project:
        status = dvc(project, "status", STUDY)
    stale = [stage for stage in STUDY_STAGES if f"{stage}:" in status]
    assert stale == [f"{STUDY}:legacy@all_four", f"{STUDY}:legacy_report"], status


@pytest.mark.slow
def test_the_intervals_params_rerun_only_the_report(study, write_params):
    project, dataset, _ = study
    write_params(project, dataset, **TINY_STUDY, evaluate__bootstrap_resamples=500)
    try:
        status = dvc(project, "status", STUDY)
    finally:
        write_params(project, dataset, **TINY_STUDY)
    stale = [stage for stage in STUDY_STAGES if f"{stage}:" in status]
    assert stale == [f"{STUDY}:legacy_report"], status


@pytest.mark.slow
def test_main_repro_leaves_a_stale_study_alone(study, write_params):
    def would_run(*targets):
        # --keep-going: past the compare stages, whose inputs this study never made.
        result = run([sys.executable, "-m", "dvc", "repro", "--dry", "--keep-going", *targets],
                     project, check=False)
        return [line for line in result.stdout.splitlines() if line.startswith("Running stage")]

    with one_variant_changed(study, write_params) as project:
        main, everything = would_run(), would_run("--all-pipelines")
    assert main and not [line for line in main if "legacy" in line]
    assert f"Running stage '{STUDY}:legacy@all_four':" in everything  # the control
