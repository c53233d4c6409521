"""Predictions and binary-classification metrics (positive class: label 1)."""
import time

import numpy as np
from sklearn import metrics as skm


def predict_proba(model, data):
    """Sigmoid outputs in the dataset's order (evaluation datasets are not shuffled)."""
    return model.predict(data, verbose=0).reshape(-1)


def binary_metrics(labels, probabilities, threshold):
    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype="float64")
    predictions = (probabilities >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(labels, predictions, labels=[0, 1]).ravel()
    both_classes = len(np.unique(labels)) == 2
    return {
        "accuracy": float(skm.accuracy_score(labels, predictions)),
        "loss": float(skm.log_loss(labels, probabilities, labels=[0, 1])),
        "precision": float(skm.precision_score(labels, predictions, zero_division=0)),
        "recall": float(skm.recall_score(labels, predictions, zero_division=0)),
        "f1": float(skm.f1_score(labels, predictions, zero_division=0)),
        # AUC is undefined with one class present; NaN would break `dvc metrics`.
        "roc_auc": float(skm.roc_auc_score(labels, probabilities)) if both_classes else None,
        "tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp),
    }


def score(model, params, backbone, splits):
    """Metrics and probabilities per split, and the prediction speed on the last split."""
    from catsdogs.training import eval_data  # training imports Keras; metrics alone do not

    metrics, probabilities = {}, {}
    for split in splits:
        data, labels = eval_data(params, backbone, split)
        start = time.perf_counter()
        probabilities[split] = predict_proba(model, data)
        images_per_second = len(labels) / (time.perf_counter() - start)
        metrics[split] = binary_metrics(labels, probabilities[split], params.evaluate.threshold)
    return metrics, probabilities, round(images_per_second, 1)
