"""Stage train_head's phase on tiny decoded data: the standard recipe and the opt-in
cached-feature mode (train_head.feature_views), which must train the model's own head."""
import json

import numpy as np
import pytest

from catsdogs import params as P
from catsdogs.data import DECODED_DIR, decode_files, save_decoded
from catsdogs.training import eval_data, head_phase
from conftest import make_dataset, tiny_params

EPOCHS = 3


@pytest.fixture
def decoded(tmp_path, monkeypatch):
    """data/decoded/{train,val}.npz of a tiny tinted dataset, in a working folder."""
    dataset = make_dataset(tmp_path / "images", per_class={"train": 12, "validation": 4})
    monkeypatch.chdir(tmp_path)
    (tmp_path / DECODED_DIR).mkdir(parents=True)
    raw = tiny_params(dataset)
    raw["train_head"]["epochs"] = EPOCHS
    for split, folder in (("train", "train"), ("val", "validation")):
        paths = sorted(str(p) for p in (dataset / folder).rglob("*.jpg"))
        labels = [float("/dogs/" in p) for p in paths]
        save_decoded(DECODED_DIR / f"{split}.npz",
                     decode_files(paths, raw["model"]["image_size"]), labels)
    return raw


def run_head(raw, views, live_dir):
    raw["train_head"]["feature_views"] = views
    params = P.parse(raw)
    model, summary = head_phase(params, params.model.backbone, live_dir)
    return params, model, summary


def test_cached_features_train_the_models_own_head_and_log_every_epoch(decoded):
    params, untrained, _ = run_head(decoded, 0, "live_standard")
    params, model, summary = run_head(decoded, 2, "live_cached")

    logged = json.loads(open("live_cached/metrics.json").read())
    assert logged["step"] == EPOCHS - 1
    assert summary["params_total"] == model.count_params()  # the whole model, not the head
    assert summary["params_trainable"] == sum(w.numpy().size for w in model.trainable_weights)
    head = model.get_layer("cat_or_dog").get_weights()[0]
    assert not np.array_equal(head, untrained.get_layer("cat_or_dog").get_weights()[0])
    # The val accuracy logged while training the head on features is the full model's.
    val_data, val_labels = eval_data(params, params.model.backbone, "val")
    predictions = model.predict(val_data, verbose=0).reshape(-1) > 0.5  # as Keras counts
    assert summary["val_accuracy"] == pytest.approx(np.mean(predictions == val_labels))


def test_cached_features_with_the_same_params_give_the_same_head(decoded):
    _, first, _ = run_head(decoded, 2, "live_a")
    _, second, _ = run_head(decoded, 2, "live_b")
    _, other, _ = run_head(decoded, 1, "live_c")
    weights = [m.get_layer("cat_or_dog").get_weights()[0] for m in (first, second, other)]
    np.testing.assert_array_equal(weights[0], weights[1])
    assert not np.array_equal(weights[0], weights[2])  # one view is not two


def test_feature_views_must_not_be_negative(decoded):
    decoded["train_head"]["feature_views"] = -1
    with pytest.raises(P.ParamError, match="'train_head.feature_views' = -1"):
        P.parse(decoded)


def test_cached_features_resume_after_an_interruption_and_match_a_straight_run(
        decoded, monkeypatch):
    from catsdogs.training import EpochBackup

    _, straight, _ = run_head(decoded, 2, "live_straight")
    backup_epoch_end = EpochBackup.on_epoch_end

    def stop_after_two_epochs(self, epoch, logs=None):
        backup_epoch_end(self, epoch, logs)
        if epoch == 1:  # as a kill right after the second epoch's backup
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(EpochBackup, "on_epoch_end", stop_after_two_epochs)
        with pytest.raises(KeyboardInterrupt):
            run_head(decoded, 2, "live_resumed")
    _, resumed, summary = run_head(decoded, 2, "live_resumed")
    assert summary["resumed_after_epoch"] == 2
    for a, b in zip(straight.get_layer("cat_or_dog").get_weights(),
                    resumed.get_layer("cat_or_dog").get_weights()):
        np.testing.assert_array_equal(a, b)


def test_cached_features_without_augmentation_use_one_plain_view(decoded):
    decoded["augment"].update(rotation_degrees=0, shift_fraction=0.0, horizontal_flip=False)
    _, one, _ = run_head(decoded, 1, "live_one")
    _, three, _ = run_head(decoded, 3, "live_three")  # three identical views: the same head
    np.testing.assert_array_equal(one.get_layer("cat_or_dog").get_weights()[0],
                                  three.get_layer("cat_or_dog").get_weights()[0])
