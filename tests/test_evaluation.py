"""binary_metrics on small cases worked out by hand (positive class: label 1)."""
import math

import pytest

from catsdogs.evaluation import binary_metrics

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
