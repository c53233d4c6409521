"""binary_metrics on small cases worked out by hand (positive class: label 1), score() on
decoded split files, and the flattening of dvclive's summary."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from catsdogs.evaluation import (Bootstrap, accuracy_interval, binary_metrics, comparison_row,
                                 last_epoch, mcnemar, read_predictions)
from conftest import ROOT, decode_files, tiny_params

# Predictions at 0.5: 1 1 0 0 | 0 1 -> tp=2, fn=1, tn=2, fp=1.
LABELS = [1, 1, 1, 0, 0, 0]
PROBABILITIES = [0.9, 0.8, 0.4, 0.3, 0.2, 0.6]


def test_counts_and_rates_at_one_half():
    metrics = binary_metrics(LABELS, PROBABILITIES, 0.5)
    assert {k: metrics[k] for k in ("tn", "fp", "fn", "tp")} == {"tn": 2, "fp": 1, "fn": 1, "tp": 2}
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 / 3)
    # Positive/negative pairs ranked correctly: 0.9 and 0.8 beat all three negatives,
    # 0.4 beats 0.3 and 0.2 but not 0.6 -> 8 of 9.
    assert metrics["roc_auc"] == pytest.approx(8 / 9)
    expected_loss = -sum(math.log(p if y else 1 - p) for y, p in zip(LABELS, PROBABILITIES)) / 6
    assert metrics["loss"] == pytest.approx(expected_loss)


def test_threshold_is_respected_and_inclusive():
    # At 0.7: 1 1 0 0 0 0 -> tp=2, fn=1, tn=3, fp=0.
    high = binary_metrics(LABELS, PROBABILITIES, 0.7)
    assert (high["tn"], high["fp"], high["fn"], high["tp"]) == (3, 0, 1, 2)
    assert high["precision"] == 1.0
    assert high["recall"] == pytest.approx(2 / 3)
    assert high["f1"] == pytest.approx(0.8)
    assert high["roc_auc"] == pytest.approx(8 / 9)  # ranking does not depend on the threshold
    # A probability equal to the threshold counts as positive.
    assert binary_metrics([1, 0], [0.4, 0.1], 0.4)["tp"] == 1


def test_one_class_only_has_no_auc_and_no_crash():
    metrics = binary_metrics([0, 0, 0], [0.1, 0.7, 0.2], 0.5)
    assert metrics["roc_auc"] is None
    assert (metrics["tn"], metrics["fp"], metrics["fn"], metrics["tp"]) == (2, 1, 0, 0)
    assert metrics["precision"] == 0.0 and metrics["recall"] == 0.0
    assert metrics["accuracy"] == pytest.approx(2 / 3)


def test_all_right_and_all_wrong():
    right = binary_metrics([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], 0.5)
    assert (right["accuracy"], right["f1"], right["roc_auc"]) == (1.0, 1.0, 1.0)
    wrong = binary_metrics([0, 1, 0, 1], [0.9, 0.1, 0.8, 0.2], 0.5)
    assert (wrong["accuracy"], wrong["f1"], wrong["roc_auc"]) == (0.0, 0.0, 0.0)


# score(): batches of decoded splits (eval_split: file order, the backbone's preprocessing).
# Checked against a model simple enough to predict by hand: the mean blue minus red of the
# preprocessed image, scaled, through a sigmoid. conftest's dogs are bluish (label 1).
PREPROCESS = {"mobilenet_v2": lambda x: x / 127.5 - 1.0, "efficientnet_b0": lambda x: x}
SCALE = 0.02


def colour_model(size):
    import keras

    inputs = keras.Input((size, size, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid")(pooled)
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([np.array([[-SCALE], [0.0], [SCALE]], "float32"),
                                  np.zeros(1, "float32")])
    return model


def by_hand(images, backbone):
    x = PREPROCESS[backbone](images.astype("float64")).mean(axis=(1, 2))
    return 1 / (1 + np.exp(-SCALE * (x[:, 2] - x[:, 0])))


@pytest.mark.parametrize("backbone, threshold", [("mobilenet_v2", 0.5), ("efficientnet_b0", 0.5),
                                                 ("mobilenet_v2", 0.9)])
def test_score_predicts_each_decoded_split_in_file_order(tiny_dataset, tmp_path, monkeypatch,
                                                         backbone, threshold):
    from catsdogs.data import eval_split
    from catsdogs.decoded import save_decoded
    from catsdogs.evaluation import score
    from catsdogs.models import BACKBONES

    raw = tiny_params(tiny_dataset)
    size, batch_size = raw["model"]["image_size"], raw["train"]["batch_size"]
    monkeypatch.chdir(tmp_path)
    decoded = {}
    for split, source in (("val", "train"), ("test", "validation")):
        # Dogs first, then cats: the order of the file, not of the labels, must come back.
        paths = sorted((tiny_dataset / source).glob("dogs/*.jpg")) + \
            sorted((tiny_dataset / source).glob("cats/*.jpg"))
        labels = [1.0 if path.parent.name == "dogs" else 0.0 for path in paths]
        images = decode_files([str(path) for path in paths], size)
        save_decoded(split, images, labels)
        decoded[split] = images, np.array(labels)
    # A partial last batch is among them (test: 12 images in batches of 8).
    assert len(decoded["val"][1]) % batch_size != 0 or len(decoded["test"][1]) % batch_size != 0

    preprocess = BACKBONES[backbone].preprocess
    splits = {split: eval_split(split, batch_size, preprocess) for split in ("val", "test")}
    metrics, probabilities, images_per_second = score(colour_model(size), splits, threshold,
                                                      BOOTSTRAP)

    assert set(metrics) == set(probabilities) == {"val", "test"}
    assert images_per_second > 0
    for split, (images, labels) in decoded.items():
        expected = by_hand(images, backbone)
        assert probabilities[split].shape == (len(labels),)
        np.testing.assert_allclose(probabilities[split], expected, rtol=1e-4)
        right = (expected >= threshold) == labels.astype(bool)
        assert metrics[split] == pytest.approx({**binary_metrics(labels, expected, threshold),
                                                **accuracy_interval(right, BOOTSTRAP)})
        if threshold == 0.5:  # the tint separates the classes
            assert metrics[split]["accuracy"] == 1.0
        else:  # no probability reaches 0.9: nothing is called a dog
            assert metrics[split]["tp"] + metrics[split]["fp"] == 0


def test_score_keeps_the_splits_apart():
    """Each split's metrics come from its own batches and labels."""
    import tensorflow as tf
    from catsdogs.evaluation import score

    size = 4
    reddish = np.zeros((3, size, size, 3), "float32")
    reddish[..., 0] = 100.0                               # p < 0.5: called a cat
    bluish = np.zeros((5, size, size, 3), "float32")
    bluish[..., 2] = 100.0                                # p > 0.5: called a dog
    splits = {"cats": (tf.data.Dataset.from_tensor_slices(reddish).batch(2), np.zeros(3)),
              "dogs": (tf.data.Dataset.from_tensor_slices(bluish).batch(2), np.ones(5))}
    metrics, probabilities, _ = score(colour_model(size), splits, 0.5, BOOTSTRAP)
    assert list(metrics) == ["cats", "dogs"]
    assert len(probabilities["cats"]) == 3 and len(probabilities["dogs"]) == 5
    assert (metrics["cats"]["tn"], metrics["cats"]["fp"], metrics["cats"]["tp"]) == (3, 0, 0)
    assert (metrics["dogs"]["tp"], metrics["dogs"]["fn"], metrics["dogs"]["tn"]) == (5, 0, 0)


BOOTSTRAP = Bootstrap(resamples=2000, seed=0, confidence=0.95)


def test_the_interval_holds_the_accuracy_and_narrows_with_more_images():
    rng = np.random.default_rng(1)
    small, large = (rng.random(n) < 0.8 for n in (100, 10_000))
    widths = []
    for right in (small, large):
        interval = accuracy_interval(right, BOOTSTRAP)
        assert interval["accuracy_low"] < right.mean() < interval["accuracy_high"]
        widths.append(interval["accuracy_high"] - interval["accuracy_low"])
    # The normal approximation: 95% half-width 1.96 * sqrt(p (1 - p) / n).
    for width, n in zip(widths, (100, 10_000)):
        assert width / 2 == pytest.approx(1.96 * math.sqrt(0.8 * 0.2 / n), rel=0.2)
    assert accuracy_interval(small, BOOTSTRAP) == accuracy_interval(small, BOOTSTRAP)


def test_all_right_has_no_spread():
    assert accuracy_interval(np.ones(50), BOOTSTRAP) == {"accuracy_low": 1.0, "accuracy_high": 1.0}


@pytest.mark.parametrize("only_a, only_b, p_value", [
    (5, 0, 2 / 32),          # five one-sided disagreements: 2 * 0.5**5
    (0, 0, 1.0),             # no disagreement, no evidence
    (10, 10, 1.0),
    (12, 3, 2 * sum(math.comb(15, k) for k in range(4)) / 2 ** 15),
])
def test_mcnemar_exact_p_values(only_a, only_b, p_value):
    both_right = 40
    a = np.array([1] * both_right + [1] * only_a + [0] * only_b + [0] * 7, bool)
    b = np.array([1] * both_right + [0] * only_a + [1] * only_b + [0] * 7, bool)
    result = mcnemar(a, b, significance=0.05)
    assert (result["only_a_right"], result["only_b_right"]) == (only_a, only_b)
    assert result["p_value"] == pytest.approx(p_value)
    assert result["significant"] == (p_value < 0.05)
    assert mcnemar(b, a, 0.05)["p_value"] == pytest.approx(p_value)  # symmetric


def test_mcnemar_agrees_with_scipy_and_keeps_the_committed_p_values():
    """scipy.stats.binomtest is the library answer: ours agrees to rounding (it is exact in
    integers, binomtest is not bit for bit: 4 of the committed study p-values differ from it
    in the last digit). On the committed test predictions, ours gives the committed p-values."""
    from scipy.stats import binomtest
    for n in range(1, 120):
        for k in range(n + 1):
            ours = mcnemar([True] * k + [False] * (n - k), [False] * k + [True] * (n - k), 0.05)
            assert ours["p_value"] == pytest.approx(binomtest(k, n).pvalue, rel=1e-12, abs=0)
    reports = ROOT / "reports"
    final = read_predictions(reports / "evaluate/test_predictions.csv")
    right = {name: (final[f"{name}_predicted"] == final["class"]).to_numpy()
             for name in ("final", "baseline")}
    committed = json.loads((reports / "evaluate/metrics.json").read_text())
    assert mcnemar(right["final"], right["baseline"], 0.05)["p_value"] == \
        committed["final_vs_baseline_test"]["p_value"]
    compared = json.loads((reports / "compare/metrics.json").read_text())
    main = next(iter(compared))
    for backbone in list(compared)[1:]:
        runs = read_predictions(reports / f"compare/runs/{backbone}/test_predictions.csv")
        assert mcnemar(runs["correct"].to_numpy(), right["final"], 0.05)["p_value"] == \
            compared[backbone][f"test_vs_{main}_p_value"]
    study = json.loads((reports / "legacy/metrics.json").read_text())
    old_setup = read_predictions(reports / "legacy/runs/old_setup/predictions.csv")["correct"]
    for variant in (ROOT / "reports/legacy/runs").iterdir():
        runs = read_predictions(variant / "predictions.csv")["correct"]
        if variant.name != "old_setup":
            assert mcnemar(runs.to_numpy(), old_setup.to_numpy(), 0.05)["p_value"] == \
                study[variant.name]["test_p_vs_old_setup"]


# last_epoch: dvclive's summary (metrics.json) -> Keras' names.
SUMMARY = {"step": 2, "params_total": 100, "params_trainable": 10,
           "train": {"accuracy": 0.8, "loss": 0.4}, "eval": {"accuracy": 0.7, "loss": 0.6}}


def test_last_epoch_flattens_train_and_eval_as_keras_names_them():
    flat = last_epoch(SUMMARY)
    assert flat == {"step": 2, "params_total": 100, "params_trainable": 10,
                    "accuracy": 0.8, "loss": 0.4, "val_accuracy": 0.7, "val_loss": 0.6}


def test_comparison_row_takes_each_column_from_the_right_phase():
    head = {**last_epoch(SUMMARY), "seconds": 10.0, "params_trainable": 10, "accuracy": 0.6}
    finetune = {**last_epoch(SUMMARY), "seconds": 20.0, "params_trainable": 40, "accuracy": 0.9}
    scores = {"val": {"accuracy": 0.88, "accuracy_low": 0.85, "accuracy_high": 0.91,
                      "loss": 0.3, "f1": 0.5},
              "test": {"accuracy": 0.87, "accuracy_low": 0.84, "accuracy_high": 0.9,
                       "loss": 0.35, "f1": 0.5}}
    row = comparison_row("mobilenet", head, finetune, scores)
    # Model metrics only: wall times stay out of the comparison's metrics.
    # Intervals are compare_report's: their params must not retrain a backbone.
    assert row == {"backbone": "mobilenet", "val_accuracy": 0.88, "val_loss": 0.3,
                   "test_accuracy": 0.87, "test_loss": 0.35, "train_accuracy": 0.9,
                   "params_total": 100, "params_trainable_head": 10,
                   "params_trainable_finetune": 40}


def test_the_evaluation_module_does_not_import_tensorflow():
    """The report stages import it; TensorFlow would cost them seconds of start-up."""
    code = ("import sys, catsdogs.evaluation; "
            "print([m for m in ('tensorflow', 'keras') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "[]"
