"""Stage train_head on tiny decoded data (32 px, random weights): what it saves and logs (two
classes: one sigmoid unit; more: a softmax, optionally class-weighted), and resume after an
interruption (catsdogs.resume.EpochBackup), which must end exactly as a straight run would,
and only ever from a backup of the same run; a second run while one is going stops at once."""
import json
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pandas as pd
import pytest

import stages.pretrained
import stages.train_head
from catsdogs import paths
from catsdogs.decoded import save_decoded
from catsdogs.files import locked
from catsdogs.models import build_classifier, find_base, seed_everything
from catsdogs.resume import EpochBackup
from catsdogs.training import class_weights
from conftest import ROOT, class_tints, decode_files, make_dataset, tiny_params

pytestmark = pytest.mark.slow

EPOCHS = 3
OTHER_LEARNING_RATE = 0.01   # the committed train_head.learning_rate is 0.001
TSVS = [f"{folder}/{metric}.tsv" for folder in ("train", "eval") for metric in ("accuracy", "loss")]
BACKUP = paths.BACKUPS / "reports_train_head"   # EpochBackup's folder for paths.HEAD_LIVE
TIMING = paths.TIMING / "reports_train_head.json"  # training.fit's wall times for it


def decode_dataset(root):
    """{split: (images, labels)} of a dataset folder, decoded at the tiny params' size;
    labels: the index of the class folder among the sorted class names."""
    size = tiny_params()["model"]["image_size"]
    arrays = {}
    for split, folder in (("train", "train"), ("val", "validation")):
        files = sorted((root / folder).rglob("*.jpg"))
        classes = sorted({file.parent.name for file in files})
        arrays[split] = (decode_files(files, size),
                         [float(classes.index(file.parent.name)) for file in files])
    return arrays


@pytest.fixture(scope="module")
def decoded(tmp_path_factory):
    """{split: (images, labels)} of a tiny tinted dataset of cats and dogs."""
    return decode_dataset(make_dataset(tmp_path_factory.mktemp("images"),
                                       per_class={"train": 12, "validation": 4}))


def prepare(directory, monkeypatch, write_params, decoded, **changes):
    """directory as a project working folder: params.yaml, data/decoded/{train,val}
    (.images.npy, .labels.npy) and the starting weights the pretrained stage writes."""
    directory.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(directory)
    raw = write_params(directory, **changes)
    for split, (images, labels) in decoded.items():
        save_decoded(split, images, labels)
    monkeypatch.setattr("sys.argv", ["stages.pretrained", raw["model"]["backbone"]])
    stages.pretrained.main()
    return raw


def outcome(directory):
    """(weights of the saved model, dvclive's per-epoch TSVs, dvclive's summary)."""
    live = directory / paths.HEAD_LIVE
    model = keras.models.load_model(directory / paths.HEAD_MODEL)
    # (Were dvclive to stamp rows with the wall clock, everything else must still match.)
    histories = {name: pd.read_csv(live / "plots" / "metrics" / name, sep="\t")
                 .drop(columns="timestamp", errors="ignore") for name in TSVS}
    summary = {**json.loads((live / "metrics.json").read_text()),
               **json.loads((directory / TIMING).read_text())}
    return model.get_weights(), histories, summary


def assert_same_weights(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def interrupt_after_two_epochs(patch):
    """As a kill right after the second epoch's backup was written."""
    backup_epoch_end = EpochBackup.on_epoch_end

    def stop(self, epoch, logs=None):
        backup_epoch_end(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    patch.setattr(EpochBackup, "on_epoch_end", stop)


def run_interrupted():
    with pytest.MonkeyPatch.context() as patch:
        interrupt_after_two_epochs(patch)
        with pytest.raises(KeyboardInterrupt):
            stages.train_head.main()
    assert not paths.HEAD_MODEL.exists()
    assert len(json.loads((BACKUP / "state.json").read_text())["history"]) == 2


@pytest.fixture(scope="module")
def straight(tmp_path_factory, write_params, decoded):
    """The outcome of an uninterrupted run of EPOCHS epochs with the tiny params."""
    directory = tmp_path_factory.mktemp("straight")
    with pytest.MonkeyPatch.context() as patch:
        prepare(directory, patch, write_params, decoded, train_head__epochs=EPOCHS)
        stages.train_head.main()
    return outcome(directory)


def test_the_stage_saves_a_head_trained_on_a_frozen_base_and_logs_every_epoch(
        tmp_path, monkeypatch, write_params, decoded):
    raw = prepare(tmp_path, monkeypatch, write_params, decoded, train_head__epochs=2)
    stages.train_head.main()

    model = keras.models.load_model(paths.HEAD_MODEL)
    base = find_base(model)
    assert not base.trainable
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 1280 + 1
    # The base left training as it was built (BatchNorm statistics included); the head learnt.
    model_params, train = raw["model"], raw["train"]
    seed_everything(train["seed"])
    weights = paths.pretrained_weights(model_params["backbone"], model_params["image_size"])
    built = build_classifier(model_params["backbone"], model_params["image_size"], weights,
                             raw["train_head"]["dropout"], train["seed"], num_classes=2)
    assert_same_weights(base.get_weights(), find_base(built).get_weights())
    assert any(not np.array_equal(a, b) for a, b in zip(
        model.get_layer("classes").get_weights(), built.get_layer("classes").get_weights()))

    summary = json.loads((paths.HEAD_LIVE / "metrics.json").read_text())
    assert summary["step"] == 2 - 1
    # Wall times live apart from the metrics, so an identical rerun leaves the metrics alone.
    assert not {"seconds", "train_images_per_second", "resumed_after_epoch"} & set(summary)
    timing = json.loads(TIMING.read_text())
    assert timing["resumed_after_epoch"] == 0 and timing["seconds"] > 0
    assert set(summary["train"]) == set(summary["eval"]) == {"accuracy", "loss"}
    assert summary["params_trainable"] == 1280 + 1
    assert summary["params_total"] == model.count_params()
    for name in TSVS:
        tsv = pd.read_csv(paths.HEAD_LIVE / "plots" / "metrics" / name, sep="\t")
        assert list(tsv["step"]) == [0, 1], name
    assert not BACKUP.exists()   # finished: nothing left to resume


def test_an_interrupted_run_resumes_and_ends_exactly_as_a_straight_run(
        straight, tmp_path, monkeypatch, write_params, decoded, capsys):
    prepare(tmp_path / "resumed", monkeypatch, write_params, decoded, train_head__epochs=EPOCHS)
    run_interrupted()
    capsys.readouterr()
    stages.train_head.main()
    output = capsys.readouterr().out

    assert "resumed after epoch 2" in output
    assert "Epoch 3/3" in output and "Epoch 1/3" not in output   # only the missing epoch ran
    weights, histories, summary = outcome(tmp_path / "resumed")
    assert summary["resumed_after_epoch"] == 2
    assert summary["step"] == EPOCHS - 1
    straight_weights, straight_histories, straight_summary = straight
    assert_same_weights(weights, straight_weights)
    for name in TSVS:
        assert len(histories[name]) == EPOCHS, name
        pd.testing.assert_frame_equal(histories[name], straight_histories[name], check_exact=True)
    assert summary["train"] == straight_summary["train"]
    assert summary["eval"] == straight_summary["eval"]
    assert not BACKUP.exists()

    # Control: the comparison can tell runs apart (another learning rate, other weights).
    prepare(tmp_path / "other", monkeypatch, write_params, decoded, train_head__epochs=EPOCHS,
            train_head__learning_rate=OTHER_LEARNING_RATE)
    stages.train_head.main()
    other_weights, _, _ = outcome(tmp_path / "other")
    assert any(not np.array_equal(a, b) for a, b in zip(other_weights, straight_weights))


def test_a_backup_of_a_run_with_other_params_is_not_used(
        straight, tmp_path, monkeypatch, write_params, decoded, capsys):
    # Interrupted with another learning rate: resuming from it would change the weights.
    prepare(tmp_path, monkeypatch, write_params, decoded, train_head__epochs=EPOCHS,
            train_head__learning_rate=OTHER_LEARNING_RATE)
    run_interrupted()
    write_params(tmp_path, train_head__epochs=EPOCHS)   # the params of the straight run
    capsys.readouterr()
    stages.train_head.main()
    output = capsys.readouterr().out

    assert "resumed" not in output
    assert "Epoch 1/3" in output
    weights, histories, summary = outcome(tmp_path)
    assert summary["resumed_after_epoch"] == 0
    straight_weights, straight_histories, _ = straight
    assert_same_weights(weights, straight_weights)
    for name in TSVS:
        pd.testing.assert_frame_equal(histories[name], straight_histories[name], check_exact=True)
    assert not BACKUP.exists()


def test_more_classes_train_a_softmax_head_with_a_probability_per_class(
        tmp_path, monkeypatch, write_params, multiclass_dataset):
    root, classes = multiclass_dataset
    arrays = decode_dataset(root)
    prepare(tmp_path, monkeypatch, write_params, arrays, classes=classes)
    stages.train_head.main()

    model = keras.models.load_model(paths.HEAD_MODEL)
    assert model.get_layer("classes").activation.__name__ == "softmax"
    assert model.loss == "sparse_categorical_crossentropy"
    images, labels = arrays["val"]
    assert sorted(set(labels)) == list(range(len(classes)))  # every class in the data
    probabilities = model.predict(images, verbose=0)  # uint8 pixels, as decoded
    assert probabilities.shape == (len(images), len(classes))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    summary = json.loads((paths.HEAD_LIVE / "metrics.json").read_text())
    assert summary["params_trainable"] == (1280 + 1) * len(classes)
    assert 0 <= summary["eval"]["accuracy"] <= 1 and summary["train"]["loss"] > 0


def test_class_weights_balanced_weigh_each_class_by_its_rarity():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2], "float32")  # as decoded: float labels
    assert class_weights(None, labels, 3) is None
    assert class_weights("balanced", labels, 3) == {0: 8 / 12, 1: 8 / 6, 2: 8 / 6}
    # Each class's weights add up to the same total: n / K.
    weights = class_weights("balanced", labels, 3)
    assert [weights[k] * np.sum(labels == k) for k in weights] == pytest.approx([8 / 3] * 3)
    assert class_weights("balanced", [0.0, 1.0, 1.0, 1.0], 2) == {0: 2.0, 1: 2 / 3}
    assert class_weights("balanced", [0.0, 0.0, 2.0], 3) == {0: 0.5, 2: 1.0}  # no 1s: unused


def test_balanced_class_weights_keep_a_rare_class_from_falling_behind(
        tmp_path, monkeypatch, write_params, capsys):
    root = make_dataset(tmp_path / "images", per_class={"train": 12, "validation": 4},
                        tints=class_tints(3))
    for rare in sorted((root / "train" / "class2").glob("*.jpg"))[3:]:
        rare.unlink()  # class2: 3 training images of 27
    arrays = decode_dataset(root)
    biases = {}
    for class_weight in (None, "balanced"):
        prepare(tmp_path / str(class_weight), monkeypatch, write_params, arrays,
                classes=["class0", "class1", "class2"], train__class_weight=class_weight)
        capsys.readouterr()
        stages.train_head.main()
        output = capsys.readouterr().out
        biases[class_weight] = keras.models.load_model(paths.HEAD_MODEL).get_layer(
            "classes").get_weights()[1]
    assert "class weights (label: weight) {0: 0.75, 1: 0.75, 2: 3.0}" in output
    # Random weights give features near 0 at 32 px: the head learns its biases, the classes'
    # priors. Unweighted the rare class falls behind; balanced, each class weighs alike.
    behind = {key: bias[:2].mean() - bias[2] for key, bias in biases.items()}
    assert behind[None] > 0.002
    assert behind["balanced"] < behind[None] / 2


# train_head as `dvc repro` runs it, held after its first epoch's backup until the test says go
# (as an orphan left training by kill -9 of dvc alone).
PAUSED_TRAIN_HEAD = """
import pathlib, time
from catsdogs.resume import EpochBackup
from stages import train_head
backup_epoch_end = EpochBackup.on_epoch_end
def paused(self, epoch, logs=None):
    backup_epoch_end(self, epoch, logs)
    pathlib.Path("paused").touch()
    while not pathlib.Path("go").exists():
        time.sleep(0.05)
EpochBackup.on_epoch_end = paused
train_head.main()
"""


def test_a_second_run_while_one_trains_stops_at_once_naming_it(
        tmp_path, monkeypatch, write_params, decoded):
    prepare(tmp_path, monkeypatch, write_params, decoded, train_head__epochs=2)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen([sys.executable, "-c", PAUSED_TRAIN_HEAD], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not (tmp_path / "paused").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.1)
        backup = {path.name: path.read_bytes() for path in BACKUP.iterdir()}
        second = subprocess.run([sys.executable, "-m", "stages.train_head"], cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=600)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines()[-1] == (
            f"train_head: another run (pid {first.pid}) holds .backups/train_head.lock; "
            f"wait for it to end or stop it, then run again")
        assert "Traceback" not in second.stderr
        assert "parameters" not in second.stdout  # stopped before building a model
        # The first run's backup is as it left it, and it goes on to the end.
        assert {path.name: path.read_bytes() for path in BACKUP.iterdir()} == backup
    finally:
        (tmp_path / "go").touch()
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert "Epoch 2/2" in out and not BACKUP.exists()
    assert keras.models.load_model(paths.HEAD_MODEL)
    with locked("train_head"):  # the lock is free again
        pass
