"""Predictions and metrics for K classes: probabilities (N, K), labels 0..K-1 (no TensorFlow)."""
import math
import time
from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn import metrics as skm

CALIBRATION_BINS = 15  # equal-width bins of the top label's confidence (Guo et al. 2017)


def class_probabilities(outputs):
    """A model's outputs as (N, K): one sigmoid unit p (K == 2) becomes the columns 1 - p, p."""
    outputs = np.asarray(outputs)
    if outputs.ndim == 1 or outputs.shape[1] == 1:
        p = outputs.reshape(-1)
        return np.column_stack([1 - p, p])
    return outputs


def predicted(probabilities, threshold):
    """Labels: K == 2, p(second class) >= threshold; K > 2, the arg-max (threshold unused)."""
    probabilities = np.asarray(probabilities, dtype="float64")
    if probabilities.shape[1] == 2:
        return (probabilities[:, 1] >= threshold).astype(int)
    return probabilities.argmax(axis=1)


def top_confidence(probabilities, threshold):
    """The probability given to the predicted class (K == 2: the thresholded one)."""
    probabilities = np.asarray(probabilities, dtype="float64")
    return probabilities[np.arange(len(probabilities)), predicted(probabilities, threshold)]


def correct(labels, probabilities, threshold):
    return predicted(probabilities, threshold) == np.asarray(labels).astype(int)


def classifier_metrics(labels, probabilities, threshold):
    """K == 2: the binary metrics (positive class: label 1); K > 2: accuracy, log loss, macro
    F1, one-vs-rest macro ROC AUC. Either with the top label's expected calibration error."""
    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype="float64")
    predictions, classes = predicted(probabilities, threshold), list(range(probabilities.shape[1]))
    accuracy = float(skm.accuracy_score(labels, predictions))
    ece = calibration(labels, probabilities, threshold)["ece"]
    if len(classes) == 2:
        positive = probabilities[:, 1]
        tn, fp, fn, tp = skm.confusion_matrix(labels, predictions, labels=[0, 1]).ravel()
        both_classes = len(np.unique(labels)) == 2
        return {"accuracy": accuracy,
                "loss": float(skm.log_loss(labels, positive, labels=[0, 1])),
                "precision": float(skm.precision_score(labels, predictions, zero_division=0)),
                "recall": float(skm.recall_score(labels, predictions, zero_division=0)),
                "f1": float(skm.f1_score(labels, predictions, zero_division=0)),
                # AUC is undefined with one class present; NaN would break `dvc metrics`.
                "roc_auc": float(skm.roc_auc_score(labels, positive)) if both_classes else None,
                "tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp), "ece": ece}
    # A float32 softmax sums to 1 only to float32 rounding; sklearn checks in float64.
    summed_to_one = probabilities / probabilities.sum(axis=1, keepdims=True)
    every_class = len(np.unique(labels)) == len(classes)  # one-vs-rest AUC needs them all
    return {"accuracy": accuracy,
            "loss": float(skm.log_loss(labels, summed_to_one, labels=classes)),
            "macro_f1": float(skm.f1_score(labels, predictions, labels=classes, average="macro",
                                           zero_division=0)),
            "roc_auc": float(skm.roc_auc_score(labels, summed_to_one, multi_class="ovr",
                                               labels=classes)) if every_class else None,
            "ece": ece}


def probability_columns(probabilities, class_names):
    """A predictions CSV's columns. Two classes: `probability` (of the second), as before any
    number of classes; more: `p_<class>` for each."""
    if len(class_names) == 2:
        return {"probability": probabilities[:, 1]}
    return {f"p_{name}": probabilities[:, k] for k, name in enumerate(class_names)}


def per_class(labels, probabilities, threshold, class_names):
    """One row per class: its images, precision, recall and F1 (any K)."""
    precision, recall, f1, images = skm.precision_recall_fscore_support(
        np.asarray(labels).astype(int), predicted(probabilities, threshold),
        labels=list(range(len(class_names))), zero_division=0)
    return pd.DataFrame({"class": class_names, "images": images, "precision": precision,
                         "recall": recall, "f1": f1})


def confusion(labels, probabilities, threshold):
    """K x K counts: rows the true class, columns the predicted one."""
    probabilities = np.asarray(probabilities)
    return skm.confusion_matrix(np.asarray(labels).astype(int),
                                predicted(probabilities, threshold),
                                labels=list(range(probabilities.shape[1])))


def calibration(labels, probabilities, threshold, bins=CALIBRATION_BINS):
    """Expected calibration error: over equal-width bins of the top label's confidence, the
    image-weighted gap between accuracy and mean confidence; and the bins behind it."""
    confidence = top_confidence(probabilities, threshold)
    right = correct(labels, probabilities, threshold)
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)  # (low, high]
    images = np.bincount(which, minlength=bins)
    confidence_sums = np.bincount(which, confidence, minlength=bins)
    right_sums = np.bincount(which, right, minlength=bins)
    table = [{"low": round(k / bins, 4), "high": round((k + 1) / bins, 4), "images": int(n),
              "confidence": float(c / n) if n else None, "accuracy": float(r / n) if n else None}
             for k, (n, c, r) in enumerate(zip(images, confidence_sums, right_sums))]
    return {"ece": float(np.abs(right_sums - confidence_sums).sum() / len(right)), "bins": table}


class Bootstrap(NamedTuple):
    resamples: int
    seed: int
    confidence: float

    @classmethod
    def of(cls, evaluate):  # from params.evaluate
        return cls(evaluate.bootstrap_resamples, evaluate.bootstrap_seed, evaluate.confidence)


def accuracy_interval(right, bootstrap):
    """Percentile bootstrap interval of accuracy; right: one 0/1 per image."""
    right = np.asarray(right, dtype="float64")
    rng = np.random.default_rng(bootstrap.seed)
    draws = rng.integers(0, len(right), size=(bootstrap.resamples, len(right)))
    tail = (1 - bootstrap.confidence) / 2
    low, high = np.quantile(right[draws].mean(axis=1), [tail, 1 - tail])
    return {"accuracy_low": float(low), "accuracy_high": float(high)}


def mcnemar(correct_a, correct_b, significance):
    """McNemar's exact two-sided test on the images exactly one of models a and b gets right:
    would a fair coin split them this unevenly?"""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    # Integers, one rounding: scipy's binomtest differs in the last bit (tests compare them).
    disagreements, fewer = only_a + only_b, min(only_a, only_b)
    tail = sum(math.comb(disagreements, k) for k in range(fewer + 1)) / 2 ** disagreements
    p_value = min(1.0, 2 * tail)
    return {"only_a_right": only_a, "only_b_right": only_b, "p_value": p_value,
            "significant": p_value < significance}


def score(model, splits, threshold, bootstrap=None):
    """splits: {name: (batches, labels)}. Metrics (with an accuracy interval, given a bootstrap)
    and probabilities per split; images/s (input pipeline included) on the last."""
    metrics, probabilities = {}, {}
    for name, (batches, labels) in splits.items():
        start = time.perf_counter()
        probabilities[name] = class_probabilities(model.predict(batches, verbose=0))
        images_per_second = len(labels) / (time.perf_counter() - start)
        metrics[name] = classifier_metrics(labels, probabilities[name], threshold)
        if bootstrap:
            metrics[name].update(accuracy_interval(
                correct(labels, probabilities[name], threshold), bootstrap))
    return metrics, probabilities, round(images_per_second, 1)


def read_predictions(path, **options):
    """A per-image predictions CSV; paths and class names (class, *_predicted) stay text ("NA",
    "007", "True", the digits' "0" to "9")."""
    text = [name for name in pd.read_csv(path, nrows=0).columns
            if name in ("path", "class") or name.endswith("_predicted")]
    return pd.read_csv(path, dtype=dict.fromkeys(text, str), keep_default_na=False, **options)


def last_epoch(summary):
    """dvclive's nested summary (train/..., eval/...) as Keras names it (accuracy, val_...)."""
    return {**{k: v for k, v in summary.items() if not isinstance(v, dict)}, **summary["train"],
            **{f"val_{k}": v for k, v in summary["eval"].items()}}


def comparison_row(backbone, head, finetune, scores):
    """A backbone's comparison row (intervals: compare_report's; wall times: reports/timing/)."""
    return {"backbone": backbone,
            **{f"{split}_{key}": scores[split][key] for split in ("val", "test")
               for key in ("accuracy", "loss")},
            "train_accuracy": finetune["accuracy"], "params_total": head["params_total"],
            "params_trainable_head": head["params_trainable"],
            "params_trainable_finetune": finetune["params_trainable"]}
