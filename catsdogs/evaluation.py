"""Predictions and binary metrics (positive class: label 1); no TensorFlow: light stages."""
import math
import time
from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn import metrics as skm


def binary_metrics(labels, probabilities, threshold):
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
            # AUC is undefined with one class present; NaN would break `dvc metrics`.
            "roc_auc": float(skm.roc_auc_score(labels, probabilities)) if both_classes else None,
            "tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}


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


def correct(labels, probabilities, threshold):
    return (np.asarray(probabilities) >= threshold) == np.asarray(labels).astype(bool)


def score(model, splits, threshold, bootstrap=None):
    """splits: {name: (batches, labels)}. Metrics (with an accuracy interval, given a
    bootstrap) and sigmoid outputs per split; images/s (input pipeline included) on the last."""
    metrics, probabilities = {}, {}
    for name, (batches, labels) in splits.items():
        start = time.perf_counter()
        probabilities[name] = model.predict(batches, verbose=0).reshape(-1)
        images_per_second = len(labels) / (time.perf_counter() - start)
        metrics[name] = binary_metrics(labels, probabilities[name], threshold)
        if bootstrap:
            metrics[name].update(accuracy_interval(
                correct(labels, probabilities[name], threshold), bootstrap))
    return metrics, probabilities, round(images_per_second, 1)


def read_predictions(path, **options):
    """A per-image predictions CSV; paths and class names stay text ("NA", "007", "True")."""
    return pd.read_csv(path, dtype={"path": str, "class": str}, keep_default_na=False, **options)


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
