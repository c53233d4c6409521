"""Expected calibration error and its bins (the top label's confidence, 15 equal-width bins) on
synthetic probabilities for K = 2, 3, 5; the reliability diagram and K x K confusion figures."""
import numpy as np
import pytest
from PIL import Image

from catsdogs import plots
from catsdogs.evaluation import CALIBRATION_BINS, calibration, class_probabilities, confusion


def synthetic(k, confidence, accuracy, rng):
    """Per image: a predicted class at random given probability `confidence` (the rest spread
    evenly), and a true label that is that class with probability `accuracy`, else another."""
    n = len(confidence)
    guessed = rng.integers(0, k, n)
    probabilities = np.repeat(((1 - confidence) / (k - 1))[:, None], k, axis=1)
    probabilities[np.arange(n), guessed] = confidence
    other = (guessed + rng.integers(1, k, n)) % k
    labels = np.where(rng.random(n) < accuracy, guessed, other)
    return labels, probabilities


@pytest.mark.parametrize("k", [2, 3, 5])
def test_honest_probabilities_have_an_ece_near_zero_and_overconfident_ones_do_not(k):
    rng = np.random.default_rng(k)
    confidence = rng.uniform(1 / k + 0.01, 1.0, 20_000)
    honest = calibration(*synthetic(k, confidence, confidence, rng), threshold=0.5)
    assert honest["ece"] < 0.02  # sampling noise only

    overconfident = rng.uniform(0.95, 1.0, 20_000)
    labels, probabilities = synthetic(k, overconfident, 0.6, rng)
    said = calibration(labels, probabilities, 0.5)
    right = probabilities.argmax(axis=1) == labels
    # Every confidence lies in the top bin: the ECE is the one gap there.
    assert said["ece"] == pytest.approx(overconfident.mean() - right.mean())
    assert said["ece"] > 0.3


@pytest.mark.parametrize("k", [2, 3, 5])
def test_the_bins_hold_every_image_with_its_mean_confidence_and_accuracy(k):
    rng = np.random.default_rng(10 + k)
    confidence = rng.uniform(1 / k + 0.01, 1.0, 3_000)
    labels, probabilities = synthetic(k, confidence, confidence ** 2, rng)
    said = calibration(labels, probabilities, 0.5)
    bins = said["bins"]
    assert len(bins) == CALIBRATION_BINS
    assert sum(b["images"] for b in bins) == len(labels)
    assert bins[0]["low"] == 0 and bins[-1]["high"] == 1
    gaps, edges = 0.0, np.linspace(0, 1, CALIBRATION_BINS + 1)
    for b, low, high in zip(bins, edges, edges[1:]):
        assert [b["low"], b["high"]] == pytest.approx([low, high], abs=1e-4)
        inside = (confidence > low) & (confidence <= high)
        assert b["images"] == inside.sum()
        if b["images"]:
            assert low < b["confidence"] <= high
            assert b["confidence"] == pytest.approx(confidence[inside].mean())
            assert b["accuracy"] == pytest.approx((labels == probabilities.argmax(1))[inside]
                                                  .mean())
            gaps += b["images"] * abs(b["accuracy"] - b["confidence"])
        else:
            assert b["confidence"] is None and b["accuracy"] is None
    assert said["ece"] == pytest.approx(gaps / len(labels))
    assert said["ece"] > 0.05  # accuracy confidence**2: overconfident


def test_two_classes_take_the_thresholded_label_as_the_top_one():
    """At threshold 0.7, p = 0.62 is called the first class, with confidence 0.38."""
    probabilities = class_probabilities(np.array([0.62, 0.95, 0.1, 0.8]))
    labels = [0, 1, 1, 0]  # right, right, wrong, wrong
    said = calibration(labels, probabilities, threshold=0.7)
    filled = {round(b["low"] * 15): (b["images"], b["confidence"], b["accuracy"])
              for b in said["bins"] if b["images"]}
    # 0.38 -> bin (5/15, 6/15]; 0.8 -> (11/15, 12/15]; 0.9, 0.95 -> (13/15, 14/15], (14/15, 1].
    assert filled == {5: (1, pytest.approx(0.38), 1.0), 11: (1, pytest.approx(0.8), 0.0),
                      13: (1, pytest.approx(0.9), 0.0), 14: (1, pytest.approx(0.95), 1.0)}
    assert said["ece"] == pytest.approx((0.62 + 0.8 + 0.9 + 0.05) / 4)


def test_reliability_diagram_draws_empty_bins(tmp_path):
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.9, 1.0, 200)  # 13 of the 15 bins empty
    said = calibration(*synthetic(3, confidence, confidence, rng), threshold=0.5)
    plots.reliability(tmp_path / "calibration.png", said, "final model, test")
    with Image.open(tmp_path / "calibration.png") as image:
        assert image.format == "PNG" and image.width > 300


@pytest.mark.slow
def test_the_confusion_figure_grows_with_the_classes(tmp_path):
    sizes = {}
    for k in (2, 20):
        labels = np.arange(200) % k
        probabilities = np.eye(k)[(labels + (np.arange(200) % 7 == 0)) % k]
        counts = confusion(labels, probabilities, 0.5)
        assert counts.trace() == np.sum(np.arange(200) % 7 != 0)
        names = [f"class {c}" for c in range(k)]
        plots.confusion(tmp_path / f"{k}.png", {"final, test": counts, "baseline": counts}, names)
        with Image.open(tmp_path / f"{k}.png") as image:
            sizes[k] = image.size
    assert sizes[20][0] > 1.5 * sizes[2][0] and sizes[20][1] > 1.5 * sizes[2][1]
