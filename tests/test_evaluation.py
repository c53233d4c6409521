"""Metrics for K classes on small cases worked out by hand (K == 2: positive class label 1,
today's keys and values), score() on decoded split files, and the flattening of dvclive's
summary."""
import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from sklearn import metrics as skm

from catsdogs.evaluation import (Bootstrap, accuracy_interval, class_probabilities,
                                 classifier_metrics, comparison_row, confusion, correct,
                                 last_epoch, mcnemar, per_class, predicted, read_predictions)
from conftest import ROOT, decode_files, tiny_params

# Predictions at 0.5: 1 1 0 0 | 0 1 -> tp=2, fn=1, tn=2, fp=1.
LABELS = [1, 1, 1, 0, 0, 0]
PROBABILITIES = [0.9, 0.8, 0.4, 0.3, 0.2, 0.6]


def binary(labels, sigmoid, threshold):
    """Two classes, as a model's single sigmoid unit gives them."""
    return classifier_metrics(labels, class_probabilities(np.array(sigmoid)[:, None]), threshold)


def old_binary_metrics(labels, probabilities, threshold):
    """The binary metrics before any number of classes (main 06baabf): the reference."""
    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype="float64")
    predictions = (probabilities >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(labels, predictions, labels=[0, 1]).ravel()
    both_classes = len(np.unique(labels)) == 2
    return {"accuracy": float(skm.accuracy_score(labels, predictions)),
            "loss": float(skm.log_loss(labels, probabilities, labels=[0, 1])),
            "precision": float(skm.precision_score(labels, predictions, zero_division=0)),
            "recall": float(skm.recall_score(labels, predictions, zero_division=0)),
            "f1": float(skm.f1_score(labels, predictions, zero_division=0)),
            "roc_auc": float(skm.roc_auc_score(labels, probabilities)) if both_classes else None,
            "tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}


def softmax(logits):
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype("float32")


def test_outputs_become_one_column_per_class():
    sigmoid = np.array([[0.2], [0.9]], "float32")
    two = class_probabilities(sigmoid)
    assert two.shape == (2, 2) and two.dtype == np.float32
    np.testing.assert_array_equal(two[:, 1], sigmoid[:, 0])  # p itself, not 1 - (1 - p)
    np.testing.assert_allclose(two[:, 0], [0.8, 0.1], rtol=1e-6)
    assert class_probabilities([0.2, 0.9]).shape == (2, 2)
    three = softmax(np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]]))
    np.testing.assert_array_equal(class_probabilities(three), three)


def test_two_classes_are_thresholded_more_are_the_arg_max():
    two = class_probabilities(np.array([0.3, 0.5, 0.7]))
    assert predicted(two, 0.5).tolist() == [0, 1, 1]     # p >= threshold: the second class
    assert predicted(two, 0.6).tolist() == [0, 0, 1]
    three = np.array([[0.5, 0.3, 0.2], [0.1, 0.3, 0.6], [0.2, 0.45, 0.35]])
    assert predicted(three, 0.9).tolist() == [0, 2, 1]   # the threshold plays no part
    assert correct([0, 1, 1], three, 0.5).tolist() == [True, False, True]


def test_counts_and_rates_at_one_half():
    metrics = binary(LABELS, PROBABILITIES, 0.5)
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
    high = binary(LABELS, PROBABILITIES, 0.7)
    assert (high["tn"], high["fp"], high["fn"], high["tp"]) == (3, 0, 1, 2)
    assert high["precision"] == 1.0
    assert high["recall"] == pytest.approx(2 / 3)
    assert high["f1"] == pytest.approx(0.8)
    assert high["roc_auc"] == pytest.approx(8 / 9)  # ranking does not depend on the threshold
    # A probability equal to the threshold counts as positive.
    assert binary([1, 0], [0.4, 0.1], 0.4)["tp"] == 1


def test_one_class_only_has_no_auc_and_no_crash():
    metrics = binary([0, 0, 0], [0.1, 0.7, 0.2], 0.5)
    assert metrics["roc_auc"] is None
    assert (metrics["tn"], metrics["fp"], metrics["fn"], metrics["tp"]) == (2, 1, 0, 0)
    assert metrics["precision"] == 0.0 and metrics["recall"] == 0.0
    assert metrics["accuracy"] == pytest.approx(2 / 3)


def test_all_right_and_all_wrong():
    right = binary([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], 0.5)
    assert (right["accuracy"], right["f1"], right["roc_auc"]) == (1.0, 1.0, 1.0)
    wrong = binary([0, 1, 0, 1], [0.9, 0.1, 0.8, 0.2], 0.5)
    assert (wrong["accuracy"], wrong["f1"], wrong["roc_auc"]) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.9])
def test_two_classes_keep_the_old_keys_and_values(threshold):
    """dvc metrics diff on the two-class pipeline: nothing but the new `ece`."""
    rng = np.random.default_rng(3)
    for n, positives in ((500, 0.5), (37, 0.2), (20, 0.0)):
        labels = (rng.random(n) < positives).astype(float)
        sigmoid = rng.random((n, 1)).astype("float32")  # float32, as Keras returns it
        new = classifier_metrics(labels, class_probabilities(sigmoid), threshold)
        assert new.pop("ece") >= 0
        assert new == old_binary_metrics(labels, sigmoid.reshape(-1), threshold)  # exactly


# K > 2: 6 images, 3 classes. Arg-max: 0 1 2 | 1 0 | 2 -> right on 4 of 6.
THREE_LABELS = [0, 1, 2, 0, 1, 2]
THREE = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6],
                  [0.3, 0.5, 0.2], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]])


def test_more_classes_score_accuracy_log_loss_macro_f1_and_one_vs_rest_auc():
    metrics = classifier_metrics(THREE_LABELS, THREE, 0.5)
    assert set(metrics) == {"accuracy", "loss", "macro_f1", "roc_auc", "ece"}
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    truth = THREE[range(6), THREE_LABELS]
    assert metrics["loss"] == pytest.approx(-np.log(truth).mean())
    # Per class: 0 is predicted for images 0, 4 (one right) and is images 0, 3 -> P 1/2, R 1/2;
    # 1: predicted 1, 3 (one right), is 1, 4 -> 1/2, 1/2; 2: predicted 2, 5, is 2, 5 -> 1, 1.
    assert metrics["macro_f1"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    ovr = [skm.roc_auc_score(np.equal(THREE_LABELS, k), THREE[:, k]) for k in range(3)]
    # Class 0's 0.7 and 0.3 against the others' 0.1, 0.2, 0.4, 0.1: 0.7 beats all four,
    # 0.3 three of them -> 7 of 8.
    assert ovr[0] == pytest.approx(7 / 8)
    assert metrics["roc_auc"] == pytest.approx(np.mean(ovr))


def test_more_classes_with_one_missing_have_no_auc():
    labels = [0, 1, 0, 1, 0, 1]                          # class 2 never occurs
    metrics = classifier_metrics(labels, THREE, 0.5)
    assert metrics["roc_auc"] is None
    assert metrics["accuracy"] == pytest.approx(4 / 6)   # images 0, 1, 3, 4


def test_float32_softmax_is_scored_without_warnings():
    """A float32 softmax sums to 1 only to float32 rounding; sklearn checks in float64."""
    rng = np.random.default_rng(0)
    labels = np.arange(300) % 5
    probabilities = softmax(rng.normal(size=(300, 5)) * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = classifier_metrics(labels, probabilities, 0.5)
    assert 0 < metrics["loss"] and 0 <= metrics["roc_auc"] <= 1


@pytest.mark.parametrize("k", [2, 3, 5])
def test_per_class_table_and_confusion_agree_with_the_predictions(k):
    rng = np.random.default_rng(k)
    labels = np.repeat(np.arange(k), [10 + 5 * c for c in range(k)])  # imbalanced on purpose
    probabilities = softmax(rng.normal(size=(len(labels), k)) + 2 * np.eye(k)[labels])
    names = [f"class {c}" for c in range(k)]
    table, counts = per_class(labels, probabilities, 0.5, names), confusion(labels, probabilities,
                                                                          0.5)
    guesses = predicted(probabilities, 0.5)
    assert table["class"].tolist() == names
    assert table["images"].tolist() == [10 + 5 * c for c in range(k)]
    assert counts.shape == (k, k) and counts.sum() == len(labels)
    for c in range(k):
        right = np.sum((guesses == c) & (labels == c))
        assert counts[c, c] == right
        assert counts[c].sum() == table["images"][c]
        assert table["recall"][c] == pytest.approx(right / np.sum(labels == c))
        called = np.sum(guesses == c)
        assert table["precision"][c] == pytest.approx(right / called if called else 0.0)
    if k == 2:  # the binary metrics' counts, in the same places
        m = classifier_metrics(labels, probabilities, 0.5)
        assert counts.tolist() == [[m["tn"], m["fp"]], [m["fn"], m["tp"]]]
        assert table["precision"][1] == pytest.approx(m["precision"])


def test_predictions_read_back_keep_class_names_as_text(tmp_path):
    """Digits as class names: "0" to "9" must not turn into numbers in one column only."""
    file = tmp_path / "test_predictions.csv"
    file.write_text("path,label,class,final_p_0,final_predicted\n"
                    "a.jpg,0,0,0.9,0\nb.jpg,1,07,0.2,07\nc.jpg,2,3,0.1,2\n")
    frame = read_predictions(file)
    assert frame["final_predicted"].tolist() == ["0", "07", "2"]
    assert (frame["final_predicted"] == frame["class"]).tolist() == [True, True, False]
    assert frame["final_p_0"].dtype == float


# score(): batches of decoded splits (eval_split: file order, raw pixels 0-255). Checked
# against a model simple enough to predict by hand: the mean blue minus red, scaled, through a
# sigmoid (two classes) or a softmax over (red, green, blue) (three). conftest's dogs are bluish.
SCALE = 0.01  # raw pixels: tint gaps of ~140 stay below p = 0.9


def colour_model(size, classes=2):
    import keras

    inputs = keras.Input((size, size, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    if classes == 2:
        outputs = keras.layers.Dense(1, activation="sigmoid")(pooled)
        weights = np.array([[-SCALE], [0.0], [SCALE]], "float32")
    else:
        outputs = keras.layers.Dense(3, activation="softmax")(pooled)
        weights = np.eye(3, dtype="float32") * SCALE
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([weights, np.zeros(weights.shape[1], "float32")])
    return model


def by_hand(images, classes=2):
    x = images.astype("float64").mean(axis=(1, 2))
    if classes == 2:
        p = 1 / (1 + np.exp(-SCALE * (x[:, 2] - x[:, 0])))
        return np.column_stack([1 - p, p])
    return softmax(SCALE * x).astype("float64")


@pytest.mark.parametrize("threshold", [0.5, 0.9])
def test_score_predicts_each_decoded_split_in_file_order(tiny_dataset, tmp_path, monkeypatch,
                                                         threshold):
    from catsdogs.data import eval_split
    from catsdogs.decoded import save_decoded
    from catsdogs.evaluation import score

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

    splits = {split: eval_split(split, batch_size) for split in ("val", "test")}
    metrics, probabilities, images_per_second = score(colour_model(size), splits, threshold,
                                                      BOOTSTRAP)

    assert set(metrics) == set(probabilities) == {"val", "test"}
    assert images_per_second > 0
    for split, (images, labels) in decoded.items():
        expected = by_hand(images)
        assert probabilities[split].shape == (len(labels), 2)
        np.testing.assert_allclose(probabilities[split], expected, rtol=1e-4, atol=1e-6)
        right = (expected[:, 1] >= threshold) == labels.astype(bool)
        assert metrics[split] == pytest.approx({
            **old_binary_metrics(labels, expected[:, 1], threshold),
            **accuracy_interval(right, BOOTSTRAP), "ece": metrics[split]["ece"]})
        if threshold == 0.5:  # the tint separates the classes
            assert metrics[split]["accuracy"] == 1.0
        else:  # no probability reaches 0.9: nothing is called a dog
            assert metrics[split]["tp"] + metrics[split]["fp"] == 0


def test_score_keeps_the_splits_apart_for_any_number_of_classes():
    """Each split's metrics come from its own batches and labels; (N, K) probabilities."""
    import tensorflow as tf
    from catsdogs.evaluation import score

    size = 4
    tinted = {}
    for channel, count in ((0, 3), (1, 2), (2, 5)):  # red, green, blue images
        images = np.zeros((count, size, size, 3), "float32")
        images[..., channel] = 100.0
        tinted[channel] = images
    two = {"cats": (tf.data.Dataset.from_tensor_slices(tinted[0]).batch(2), np.zeros(3)),
           "dogs": (tf.data.Dataset.from_tensor_slices(tinted[2]).batch(2), np.ones(5))}
    metrics, probabilities, _ = score(colour_model(size), two, 0.5, BOOTSTRAP)
    assert list(metrics) == ["cats", "dogs"]
    assert probabilities["cats"].shape == (3, 2) and probabilities["dogs"].shape == (5, 2)
    assert (metrics["cats"]["tn"], metrics["cats"]["fp"], metrics["cats"]["tp"]) == (3, 0, 0)
    assert (metrics["dogs"]["tp"], metrics["dogs"]["fn"], metrics["dogs"]["tn"]) == (5, 0, 0)

    three = {name: (tf.data.Dataset.from_tensor_slices(tinted[c]).batch(2), np.full(n, c))
             for name, c, n in (("red", 0, 3), ("green", 1, 2), ("blue", 2, 5))}
    metrics, probabilities, _ = score(colour_model(size, 3), three, 0.5, BOOTSTRAP)
    assert [probabilities[name].shape for name in three] == [(3, 3), (2, 3), (5, 3)]
    for name, (_, labels) in three.items():
        assert metrics[name]["accuracy"] == 1.0 and "tp" not in metrics[name]
        assert (probabilities[name].argmax(axis=1) == labels).all()


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


@pytest.mark.slow
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


# The evaluate stage on a tiny project: colour models saved as the training stages would, two
# classes (today's files, column for column) and three named by digits (text, not numbers).
TINTS = [(200, 60, 60), (60, 200, 60), (60, 60, 200)]


def evaluate_project(root, classes, model_classes=None):
    """root: params, split lists, decoded splits and images, final and baseline models, and
    the training stages' dvclive folders. Each test split has a mistake: class 0 tinted as the
    last class."""
    from catsdogs import paths
    from catsdogs.decoded import save_decoded
    rng, size = np.random.default_rng(0), 32
    raw = tiny_params(classes=classes)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    tints = TINTS[:1] + TINTS[-1:] if len(classes) == 2 else TINTS
    for split, count in (("train", 6), ("val", 3), ("test", 4)):
        rows, images = [], []
        for label, name in enumerate(sorted(classes)):
            for i in range(count):
                tint = tints[-1] if (split, label, i) == ("test", 0, 0) else tints[label]
                pixels = np.clip(np.array(tint) + rng.integers(-40, 40, (size, size, 3)), 0,
                                 255).astype("uint8")
                path = f"data/raw/{split}/{name}/{i}.png"
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(root / path)
                rows.append({"path": path, "label": label, "class": name})
                images.append(pixels)
        (root / paths.SPLIT).mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(root / paths.SPLIT / f"{split}.csv", index=False)
        save_decoded(split, images, [row["label"] for row in rows], root / paths.DECODED)
    for model_file in (paths.FINAL_MODEL, paths.BASELINE_MODEL):
        (root / model_file).parent.mkdir(parents=True, exist_ok=True)
        colour_model(size, model_classes or len(classes)).save(root / model_file)
    for live in (paths.HEAD_LIVE, paths.FINETUNE_LIVE, paths.BASELINE_LIVE):
        for folder in ("train", "eval"):
            (root / live / "plots/metrics" / folder).mkdir(parents=True)
            for metric in ("accuracy", "loss"):
                (root / live / "plots/metrics" / folder / f"{metric}.tsv").write_text(
                    f"step\t{metric}\n0\t0.5\n1\t0.6\n")
        (root / live / "metrics.json").write_text(json.dumps(
            {"train": {"accuracy": 0.6, "loss": 0.6}, "eval": {"accuracy": 0.6, "loss": 0.6},
             "step": 1, "params_total": 100, "params_trainable": 10}))


def run_evaluate(root, monkeypatch):
    from stages import evaluate
    monkeypatch.chdir(root)
    evaluate.main()
    out = root / "reports/evaluate"
    for figure in ("learning_curves", "roc", "confusion_matrix", "misclassified", "calibration"):
        with Image.open(out / f"{figure}.png") as image:
            assert image.format == "PNG", figure
    return (out, json.loads((out / "metrics.json").read_text()),
            read_predictions(out / "test_predictions.csv"))


def test_evaluate_two_classes_writes_todays_files_and_calibration(tmp_path, monkeypatch):
    evaluate_project(tmp_path, ["cats", "dogs"])
    out, metrics, predictions = run_evaluate(tmp_path, monkeypatch)

    assert list(predictions.columns) == ["path", "label", "class", "final_probability",
                                         "final_predicted", "baseline_probability",
                                         "baseline_predicted"]
    assert set(metrics["final"]["test"]) == {*old_binary_metrics([0, 1], [0.2, 0.8], 0.5),
                                             "accuracy_low", "accuracy_high", "ece"}
    assert metrics["final"]["test"]["accuracy"] == 7 / 8 and metrics["final"]["test"]["fp"] == 1
    wrong = predictions[predictions["final_predicted"] != predictions["class"]]
    assert wrong["path"].tolist() == ["data/raw/test/cats/0.png"]
    summary = (out / "summary.md").read_text()
    assert "| test precision |" in summary and "| test expected calibration error" in summary
    per_class = pd.read_csv(out / "per_class.csv")
    assert per_class.columns.tolist() == ["model", "class", "images", "precision", "recall", "f1"]
    final = per_class[per_class["model"] == "final"].set_index("class")
    assert final["images"].tolist() == [4, 4]
    assert final.loc["dogs", "precision"] == pytest.approx(metrics["final"]["test"]["precision"])
    calibrated = json.loads((out / "calibration.json").read_text())
    assert calibrated["ece"] == metrics["final"]["test"]["ece"]
    assert sum(b["images"] for b in calibrated["bins"]) == 8


def test_evaluate_three_classes_names_them_and_drops_the_binary_rows(tmp_path, monkeypatch):
    evaluate_project(tmp_path, ["2", "0", "1"])  # digits: names, never numbers
    out, metrics, predictions = run_evaluate(tmp_path, monkeypatch)

    assert list(predictions.columns) == ["path", "label", "class", "final_p_0", "final_p_1",
                                         "final_p_2", "final_predicted", "baseline_p_0",
                                         "baseline_p_1", "baseline_p_2", "baseline_predicted"]
    right = predictions["final_predicted"] == predictions["class"]
    assert right.tolist() == [False] + [True] * 11
    assert metrics["final"]["test"]["accuracy"] == pytest.approx(right.mean())
    assert set(metrics["final"]["test"]) == {"accuracy", "loss", "macro_f1", "roc_auc", "ece",
                                             "accuracy_low", "accuracy_high"}
    assert predictions.loc[0, "final_predicted"] == "2"
    np.testing.assert_allclose(predictions.filter(like="final_p_").sum(axis=1), 1, atol=1e-4)
    summary = (out / "summary.md").read_text()
    assert "| test macro F1 |" in summary and "precision" not in summary
    assert "dog" not in summary and "nan" not in summary
    per_class = pd.read_csv(out / "per_class.csv", dtype={"class": str})
    assert per_class["class"].tolist() == ["0", "1", "2"] * 2
    assert per_class["images"].tolist() == [4] * 6
    final = per_class[per_class["model"] == "final"]
    assert final["recall"].tolist() == [0.75, 1.0, 1.0]
    assert final["precision"].tolist() == [1.0, 1.0, 0.8]


def test_evaluate_refuses_a_model_for_another_number_of_classes(tmp_path, monkeypatch):
    evaluate_project(tmp_path, ["a", "b", "c"], model_classes=2)
    with pytest.raises(SystemExit, match=r"tells 2 classes apart, params.yaml names 3; rerun"):
        run_evaluate(tmp_path, monkeypatch)


def test_compare_report_pairs_any_number_of_classes_by_right_and_wrong(tmp_path, monkeypatch):
    """Three classes named by digits: the main model's right/wrong comes from comparing text."""
    from stages import compare_report
    evaluate_project(tmp_path, ["0", "1", "2"])
    run_evaluate(tmp_path, monkeypatch)
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["compare"]["backbones"] = ["efficientnet_b0"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    run = tmp_path / "reports/compare/runs/efficientnet_b0"
    run.mkdir(parents=True)
    for split in ("val", "test"):
        frame = pd.read_csv(tmp_path / f"data/split/{split}.csv", dtype=str)
        frame["correct"] = [i >= 3 for i in range(len(frame))]  # wrong on the first three
        frame.to_csv(run / f"{split}_predictions.csv", index=False)
    (run / "metrics.json").write_text(json.dumps(
        {"backbone": "efficientnet_b0", "val_accuracy": 6 / 9, "val_loss": 0.9,
         "test_accuracy": 0.75, "test_loss": 0.8, "train_accuracy": 0.7, "params_total": 50,
         "params_trainable_head": 5, "params_trainable_finetune": 20}))
    compare_report.main()
    compared = json.loads((tmp_path / "reports/compare/metrics.json").read_text())
    other = compared["efficientnet_b0"]
    # The main model misses only image 0, which the other misses too: 2 images only it gets.
    assert (other["test_only_efficientnet_b0_right"], other["test_only_mobilenet_v2_right"]) \
        == (0, 2)
    assert compared["mobilenet_v2"]["test_accuracy"] == pytest.approx(11 / 12)
    assert "| efficientnet_b0 | 0.667" in (tmp_path / "reports/compare/compare.md").read_text()
