"""binary_metrics on small cases worked out by hand (positive class: label 1), and score()
on decoded split files."""
import math

import numpy as np
import pytest

from catsdogs import params as P
from catsdogs.evaluation import binary_metrics
from conftest import tiny_params

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


# score(): the decoded arrays of stage decode, the backbone's preprocessing, params' threshold.
# Checked against a model simple enough to predict by hand: the mean red minus blue of the
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
    from catsdogs.data import DECODED_DIR, decode_files, save_decoded
    from catsdogs.evaluation import score

    raw = tiny_params(tiny_dataset)
    raw["evaluate"]["threshold"] = threshold
    params = P.parse(raw)
    monkeypatch.chdir(tmp_path)
    DECODED_DIR.mkdir(parents=True)
    decoded = {}
    for split, source in (("val", "train"), ("test", "validation")):
        # Dogs first, then cats: the order of the file, not of the labels, must come back.
        paths = sorted((tiny_dataset / source).glob("dogs/*.jpg")) + \
            sorted((tiny_dataset / source).glob("cats/*.jpg"))
        labels = [1.0 if path.parent.name == "dogs" else 0.0 for path in paths]
        images = decode_files([str(path) for path in paths], params.model.image_size)
        save_decoded(DECODED_DIR / f"{split}.npz", images, labels)
        decoded[split] = images, np.array(labels)

    metrics, probabilities, images_per_second = score(
        colour_model(params.model.image_size), params, backbone, ["val", "test"])

    assert set(metrics) == set(probabilities) == {"val", "test"}
    assert images_per_second > 0
    for split, (images, labels) in decoded.items():
        expected = by_hand(images, backbone)
        np.testing.assert_allclose(probabilities[split], expected, rtol=1e-4)
        assert metrics[split] == pytest.approx(binary_metrics(labels, expected, threshold))
        if threshold == 0.5:  # the tint separates the classes
            assert metrics[split]["accuracy"] == 1.0
        else:  # no probability reaches 0.9: nothing is called a dog
            assert metrics[split]["tp"] + metrics[split]["fp"] == 0


def test_score_needs_the_decoded_split(tiny_dataset, tmp_path, monkeypatch):
    from catsdogs.evaluation import score

    params = P.parse(tiny_params(tiny_dataset))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="test.npz"):
        score(colour_model(params.model.image_size), params, "mobilenet_v2", ["test"])
