"""train.distribute: mirrored (tf.distribute.MirroredStrategy) on this machine's CPU, split in
two logical devices, against none: the stages train, load and resume under it, their metrics
match the single-device run's, and dvclive, the backup and the saved model happen once.

The stages run as subprocesses, as DVC runs them: the CPU can only be split before
TensorFlow starts, and this test process has started it. ImageNet weights (at 160 px, from
the seeded Keras cache), so that the head really learns and the metrics move.
"""
import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
import yaml

from catsdogs import params as P
from catsdogs import paths
from catsdogs.decoded import save_decoded
from catsdogs.models import BACKBONES
from conftest import ROOT, decode_files, make_dataset, tiny_params

BACKBONE, SIZE = "mobilenet_v2", 160
WEIGHTS = paths.keras_cache() / "models" / BACKBONES[BACKBONE].weights_file.format(size=SIZE)
HEAD_EPOCHS, FINETUNE_EPOCHS = 3, 2
METRICS = [f"{folder}/{metric}.tsv" for folder in ("train", "eval")
           for metric in ("accuracy", "loss")]
# Same batches, same starting weights, no dropout: the runs differ only in how sums are
# split and added (each replica's half-batch loss and gradient, then their all-reduce),
# float32 rounding of about 1e-7 per step. 1e-4 leaves that room to grow over the steps,
# and is far below what one epoch of training moves the loss (asserted, so a mirrored run
# that trained on other batches or other weights could not pass).
TOLERANCE = 1e-4

pytestmark = pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"{WEIGHTS} not in the Keras "
                                "cache (set KERAS_HOME to a seeded cache)")


def stage(directory, *args, check=True):
    """python -m <args> in directory with this project's code, as DVC would run it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run([sys.executable, *args], cwd=directory, env=env,
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n"
                             f"{result.stderr[-5000:]}")
    return result


@pytest.fixture(scope="module")
def decoded(tmp_path_factory):
    """{split: (images, labels)}: tiny tinted images at SIZE."""
    root = make_dataset(tmp_path_factory.mktemp("images"),
                        per_class={"train": 12, "validation": 4})
    arrays = {}
    for split, folder in (("train", "train"), ("val", "validation")):
        files = sorted(str(path) for path in (root / folder).rglob("*.jpg"))
        arrays[split] = decode_files(files, SIZE), [float("/dogs/" in f) for f in files]
    return arrays


def prepare(directory, decoded, **changes):
    """directory as a project working folder: params.yaml (no dropout: see TOLERANCE),
    data/decoded/ and the pretrained weights."""
    directory.mkdir(parents=True)
    raw = tiny_params(model__backbone=BACKBONE, model__weights="imagenet",
                      model__image_size=SIZE, train_head__epochs=HEAD_EPOCHS,
                      train_head__dropout=0.0, finetune__epochs=FINETUNE_EPOCHS, **changes)
    (directory / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for split, (images, labels) in decoded.items():
        save_decoded(split, images, labels, folder=directory / paths.DECODED)
    stage(directory, "-m", "stages.pretrained", BACKBONE)
    return directory


def histories(directory, live):
    return {name: pd.read_csv(directory / live / "plots" / "metrics" / name, sep="\t")
            .drop(columns="timestamp", errors="ignore") for name in METRICS}


def seconds(directory, live):
    return json.loads((directory / paths.TIMING / f"{paths.slug(live)}.json").read_text())[
        "seconds"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, decoded):
    """{distribute: (folder, {stage: stdout})}: train_head, then finetune from its model."""
    outcome = {}
    for distribute in ("none", "mirrored"):
        directory = prepare(tmp_path_factory.mktemp("runs") / distribute, decoded,
                            train__distribute=distribute)
        outcome[distribute] = directory, {
            name: stage(directory, "-m", f"stages.{name}").stdout
            for name in ("train_head", "finetune")}
        print(f"{distribute}: train_head {seconds(directory, paths.HEAD_LIVE)} s, finetune "
              f"{seconds(directory, paths.FINETUNE_LIVE)} s")   # pytest -s shows the times
    return outcome


@pytest.mark.slow
def test_mirrored_trains_on_two_devices_to_the_single_device_metrics(runs):
    (single, single_output), (mirrored, mirrored_output) = runs["none"], runs["mirrored"]
    for name, live in (("train_head", paths.HEAD_LIVE), ("finetune", paths.FINETUNE_LIVE)):
        # Built (or loaded) and compiled in the strategy's scope, so fit splits the batches.
        assert "mirrored over 2 devices" in mirrored_output[name]
        assert f"{live}: each batch split over 2 replicas" in mirrored_output[name]
        assert "mirrored" not in single_output[name] and "replicas" not in single_output[name]
    for live, epochs in ((paths.HEAD_LIVE, HEAD_EPOCHS), (paths.FINETUNE_LIVE, FINETUNE_EPOCHS)):
        expected, actual = histories(single, live), histories(mirrored, live)
        for name in METRICS:
            assert list(actual[name]["step"]) == list(range(epochs)), name  # logged once
            difference = (actual[name].iloc[:, 1] - expected[name].iloc[:, 1]).abs().max()
            assert difference <= TOLERANCE, f"{live}/{name}: {difference}"
        # The control: training moved the numbers far more than the tolerance.
        loss = expected["train/loss.tsv"]["loss"]
        assert loss.iloc[0] - loss.iloc[-1] > 10 * TOLERANCE, list(loss)
    # And the model learnt (chance is 0.5 on these 8 validation images).
    assert histories(single, paths.FINETUNE_LIVE)["eval/accuracy.tsv"]["accuracy"].iloc[-1] >= 0.75

    for model in (paths.HEAD_MODEL, paths.FINAL_MODEL):
        expected = keras.models.load_model(single / model).get_weights()
        actual = keras.models.load_model(mirrored / model).get_weights()
        assert len(actual) == len(expected)
        for a, b in zip(actual, expected):
            np.testing.assert_allclose(a, b, atol=TOLERANCE)
    assert sorted(p.name for p in (mirrored / "models").glob("*.keras")) == [
        "final.keras", "head.keras"]   # one of each, no partial or per-replica copies
    # finished: nothing left to resume (the stages' lock files stay, empty of state)
    assert [f.name for f in (mirrored / paths.BACKUPS).glob("*") if f.suffix != ".lock"] == []


# The stage as `python -m stages.train_head` runs it (the backup's key names the script),
# stopped as a kill right after the first epoch's backup.
INTERRUPT_AFTER_FIRST_EPOCH = """
import runpy
from catsdogs.resume import EpochBackup
backup_epoch_end = EpochBackup.on_epoch_end
def stop(self, epoch, logs=None):
    backup_epoch_end(self, epoch, logs)
    raise SystemExit(3)
EpochBackup.on_epoch_end = stop
runpy.run_module("stages.train_head", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_an_interrupted_mirrored_run_keeps_one_backup_and_resumes_to_the_same_model(
        runs, tmp_path, decoded):
    directory = prepare(tmp_path / "resumed", decoded, train__distribute="mirrored")
    interrupted = stage(directory, "-c", INTERRUPT_AFTER_FIRST_EPOCH, check=False)
    assert interrupted.returncode == 3, interrupted.stderr[-3000:]
    backups = [f for f in (directory / paths.BACKUPS).iterdir() if f.suffix != ".lock"]
    assert [b.name for b in backups] == ["reports_train_head"]
    assert sorted(f.name for f in backups[0].iterdir()) == ["epoch-1.weights.h5", "state.json"]
    assert len(json.loads((backups[0] / "state.json").read_text())["history"]) == 1

    output = stage(directory, "-m", "stages.train_head").stdout
    assert "resumed after epoch 1" in output
    straight, _ = runs["mirrored"]
    for name, history in histories(directory, paths.HEAD_LIVE).items():
        pd.testing.assert_frame_equal(history, histories(straight, paths.HEAD_LIVE)[name],
                                      check_exact=False, atol=TOLERANCE, rtol=0)
    for a, b in zip(keras.models.load_model(directory / paths.HEAD_MODEL).get_weights(),
                    keras.models.load_model(straight / paths.HEAD_MODEL).get_weights()):
        np.testing.assert_allclose(a, b, atol=TOLERANCE)


@pytest.mark.slow
def test_a_batch_smaller_than_the_replicas_stops_before_training(tmp_path, decoded):
    # 8 validation images in batches of 7: the last holds 1, and one replica would get none.
    directory = prepare(tmp_path / "project", decoded, train__distribute="mirrored",
                        train__batch_size=7)
    result = stage(directory, "-m", "stages.train_head", check=False)
    assert result.returncode != 0
    assert "the last validation batch holds 1 image(s)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (directory / paths.HEAD_MODEL).exists()


@pytest.mark.parametrize("value", ["mirror", "MirroredStrategy", "multi_worker", None, True])
def test_an_unknown_distribute_value_is_refused_naming_the_choices(value):
    raw = tiny_params(train__distribute=value)
    with pytest.raises(P.ParamError) as error:
        P.parse(raw)
    message = str(error.value)
    assert f"'train.distribute' = {value!r}" in message
    assert "'none' or 'mirrored'" in message


def test_distribute_is_required_and_none_is_committed():
    assert P.load(ROOT / "params.yaml").train.distribute == "none"
    raw = tiny_params()
    del raw["train"]["distribute"]
    with pytest.raises(P.ParamError, match="'train.distribute' is missing"):
        P.parse(raw)


# Two workers of tf.distribute.MultiWorkerMirroredStrategy on loopback ports, each fitting a
# one-layer Keras model: they connect (2 replicas), then Keras 3's fit fails on PerReplica
# values. While that stays so, train.distribute offers no multi-machine value.
WORKER = """
import json, os, sys
os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": sys.argv[1:3]},
                                      "task": {"type": "worker", "index": int(sys.argv[3])}})
import keras, numpy as np, tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()
print("replicas", strategy.num_replicas_in_sync, flush=True)
x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
data = tf.data.Dataset.from_tensor_slices((x, (x.sum(1) > 0).astype("float32"))).batch(16)
with strategy.scope():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
model.fit(data, epochs=1, verbose=0)
print("fitted", flush=True)
"""


def free_port():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_workers_on_loopback_connect_and_keras_fit_fails_as_documented():
    """What README says of the multi-machine path: the workers form one cluster, and Keras
    3's fit fails on it (keras-team/keras#20585). If fit works, this fails: then Keras fixed
    it, and train.distribute can offer multi-worker training (and README should say so)."""
    cluster = [f"localhost:{free_port()}" for _ in range(2)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, *cluster, str(index)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for index in range(2)]
    try:
        outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    finally:  # a worker left waiting for its peer would hold its port
        for worker in workers:
            worker.kill()
    for output in outputs:
        assert "replicas 2" in output, output[-3000:]  # connected: one cluster, 2 replicas
        assert "fitted" not in output, "Keras 3 now fits under MultiWorkerMirroredStrategy"
        assert "Attempt to convert a value (PerReplica" in output, output[-3000:]
