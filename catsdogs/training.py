"""The two-phase recipe (frozen head, then fine-tuning), shared by the stages and compare.

Each phase is one Keras fit: dvclive logs every epoch, EpochBackup lets a killed stage
resume at its last completed epoch, and EpochRandomness makes each epoch's shuffle,
augmentation and dropout a function of (seed, epoch) alone, so a resumed run and a
straight one compute the same thing, and two runs give identical metrics.
"""
import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from catsdogs.data import (DECODED_DIR, augmentation, eval_dataset, feature_batches,
                           load_decoded, train_dataset, view_dataset)
from catsdogs.models import (backbone_spec, build_classifier, compile_binary, count_params,
                             find_base, unfreeze_top)

BACKUP_DIR = Path(".backups")  # not a DVC output: DVC must not delete it before a rerun


def seed_everything(seed):
    """Python, NumPy, TensorFlow and Keras seeds, and deterministic TF kernels."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def load_split(split):
    return load_decoded(DECODED_DIR / f"{split}.npz")


def eval_data(params, backbone, split):
    """(batches in file order, labels) of a split, preprocessed for `backbone`."""
    images, labels = load_split(split)
    preprocess = backbone_spec(backbone).preprocess
    return eval_dataset(images, labels, params.train.batch_size, preprocess), labels


class EpochRandomness(keras.callbacks.Callback):
    """As each epoch begins, set the epoch the input pipeline draws its shuffle and
    augmentation from, and reseed every Keras random layer (dropout) from (seed, epoch),
    so an epoch's randomness does not depend on how the run got there."""

    def __init__(self, seed, epoch):
        super().__init__()
        self.seed, self.epoch = seed, epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch.assign(epoch)
        rng = np.random.default_rng([self.seed, epoch])
        for generator in seed_generators([self.model]):
            generator.state.assign(np.array([rng.integers(2**31), 0], dtype="int64"))


def seed_generators(layers):
    """Every keras.random.SeedGenerator held by these layers or their sublayers, in order."""
    found, stack = [], list(reversed(layers))
    while stack:
        layer = stack.pop()
        for value in vars(layer).values():
            if isinstance(value, keras.random.SeedGenerator) and value not in found:
                found.append(value)
        stack.extend(reversed(getattr(layer, "layers", [])))
    return found


CODE_FILES = sorted(Path(__file__).parent.glob("*.py"))


def run_key(params, *inputs):
    """What a backup belongs to: all params, the code (this package and the running stage)
    and the identity of the input files. Anything else changed: no resume."""
    digest = hashlib.sha256(params.model_dump_json().encode())
    stage = getattr(sys.modules["__main__"], "__file__", None)
    for code in CODE_FILES + ([Path(stage)] if stage else []):
        digest.update(code.read_bytes())
    for path in inputs:
        stat = Path(path).stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


class EpochBackup(keras.callbacks.Callback):
    """After every epoch, the weights and optimizer state, written so a kill -9 at any
    moment leaves the last completed epoch restorable: the weights file first, then the
    state file naming it, each via an atomic rename. (keras.callbacks.BackupAndRestore
    overwrites its files in place; a kill during the write left a torn HDF5 file here.)
    The state also records the run key, so a backup of other params or data is not used.
    """

    def __init__(self, directory, key):
        super().__init__()
        self.directory, self.key = Path(directory), key
        self.state_file = self.directory / "state.json"

    def completed_epochs(self):
        """Epochs done by an interrupted run with this key; 0, clearing the rest, if none."""
        try:
            state = json.loads(self.state_file.read_text())
            if state["key"] == self.key and (self.directory / state["weights"]).is_file():
                return state["epoch"]
        except (OSError, ValueError, KeyError):
            pass
        shutil.rmtree(self.directory, ignore_errors=True)
        return 0

    def restore(self):
        """Load the last completed epoch; False (backup cleared) if it cannot be read."""
        state = json.loads(self.state_file.read_text())
        self.model.optimizer.build(self.model.trainable_variables)  # so its state can load
        try:
            self.model.load_weights(self.directory / state["weights"])
            return True
        except (OSError, ValueError) as error:
            print(f"{self.directory}: backup unreadable ({error}); starting over")
            shutil.rmtree(self.directory, ignore_errors=True)
            return False

    def on_epoch_end(self, epoch, logs=None):
        self.directory.mkdir(parents=True, exist_ok=True)
        weights = self.directory / f"epoch-{epoch + 1}.weights.h5"
        partial = self.directory / "partial.weights.h5"
        self.model.save_weights(partial)
        os.replace(partial, weights)
        state = {"key": self.key, "epoch": epoch + 1, "weights": weights.name}
        (self.directory / "state.partial").write_text(json.dumps(state))
        os.replace(self.directory / "state.partial", self.state_file)
        for old in self.directory.glob("epoch-*.weights.h5"):
            if old != weights:
                old.unlink()

    def on_train_end(self, logs=None):
        shutil.rmtree(self.directory, ignore_errors=True)  # finished: nothing to resume


def drop_logged_epochs(live_dir, first_epoch):
    """Remove dvclive rows of epochs a resumed run will redo (logged after the last backup)."""
    for tsv in Path(live_dir, "plots", "metrics").rglob("*.tsv"):
        history = pd.read_csv(tsv, sep="\t")
        history[history["step"] < first_epoch].to_csv(tsv, sep="\t", index=False)


def training_batches(params, backbone, augment):
    """(the train split as epoch-seeded batches, the epoch variable seeding them, images)."""
    images, labels = load_split("train")
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    batches = train_dataset(images, labels, params.train.batch_size,
                            backbone_spec(backbone).preprocess, augment, params.train.seed, epoch)
    return batches, epoch, len(labels)


def train_phase(model, params, train, val_data, epochs, live_dir, key, *, counted=None,
                setup_seconds=0.0):
    """Fit for `epochs` (resuming a killed run with the same key), log every epoch to live_dir.

    `train` is (batches, epoch variable, image count), as training_batches returns.
    dvclive's summary (live_dir/metrics.json) holds the last epoch's Keras metrics under
    train/ and eval/: train/accuracy is the training accuracy Keras reports (augmented
    batches, dropout active). Returns them flat: accuracy, loss, val_accuracy, val_loss,
    plus seconds (setup_seconds included), throughput and the parameter counts of
    `counted` (default: model).
    """
    train_data, epoch, count = train
    # One flat folder per live_dir: an absolute live_dir must not put the backup inside it.
    backup = EpochBackup(BACKUP_DIR / re.sub(r"[^\w.-]+", "_", str(live_dir)).strip("_"), key)
    backup.set_model(model)
    done = backup.completed_epochs()
    if done and backup.restore():
        print(f"{live_dir}: resumed after epoch {done} of {epochs} from {backup.directory}")
        drop_logged_epochs(live_dir, done)
    else:
        done = 0
    # dvc.yaml declares these outputs itself; dvclive must not write dvc.yaml or experiments.
    with Live(str(live_dir), dvcyaml=None, save_dvc_exp=False, resume=bool(done)) as live:
        live.step = done
        callbacks = [EpochRandomness(params.train.seed, epoch),
                     # dvclive before the backup: a kill between the two redoes that epoch,
                     # and drop_logged_epochs removes its first record.
                     DVCLiveCallback(live=live), backup]
        start = time.perf_counter()
        # shuffle=False: the order comes from EpochRandomness; Keras cannot shuffle it anyway.
        model.fit(train_data, validation_data=val_data, epochs=epochs, initial_epoch=done,
                  verbose=2, shuffle=False, callbacks=callbacks)
        seconds = time.perf_counter() - start + setup_seconds
        # Throughput counts training images only; the time includes per-epoch validation.
        live.summary["seconds"] = round(seconds, 2)
        live.summary["train_images_per_second"] = round(count * (epochs - done) / seconds, 1)
        live.summary["resumed_after_epoch"] = done
        live.summary.update(count_params(counted or model))
    return last_epoch(live.summary)


def last_epoch(summary):
    """dvclive's nested summary (train/..., eval/...) as Keras names it (accuracy, val_...)."""
    flat = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    flat.update(summary["train"])
    flat.update({f"val_{k}": v for k, v in summary["eval"].items()})
    return flat


def head_phase(params, backbone, live_dir):
    """Frozen base + new head, trained on augmented batches."""
    knobs = params.train_head
    seed_everything(params.train.seed)  # each phase starts from the seed, wherever it runs
    val_data, val_labels = eval_data(params, backbone, "val")
    model = build_classifier(backbone, params.model.image_size, params.model.weights,
                             knobs.dropout, params.train.seed)
    compile_binary(model, knobs.learning_rate)
    print(f"train_head: {backbone}, {knobs.epochs} epochs, {model.count_params():,} parameters"
          + (f", head on cached features of {knobs.feature_views} views"
             if knobs.feature_views else ""))
    key = run_key(params, DECODED_DIR / "train.npz", DECODED_DIR / "val.npz")
    if knobs.feature_views:
        return model, head_on_cached_features(model, params, backbone, (val_data, val_labels),
                                              live_dir, key)
    train = training_batches(params, backbone, augmentation(params))
    return model, train_phase(model, params, train, val_data, knobs.epochs, live_dir, key)


def head_on_cached_features(model, params, backbone, val, live_dir, key):
    """train_head.feature_views = K > 0, opt-in: the frozen base sees K augmented views of
    each training image once, instead of a fresh view every epoch, and the head (dropout,
    sigmoid unit) trains on those features, epoch e on view e mod K. Far less base compute,
    fewer distinct augmentations. The head's layers are the model's own, so the model is
    trained when this returns.
    """
    knobs, batch_size, seed = params.train_head, params.train.batch_size, params.train.seed
    start = time.perf_counter()
    features_of = keras.Model(model.inputs, model.get_layer("pool").output)
    images, labels = load_split("train")
    preprocess, augment = backbone_spec(backbone).preprocess, augmentation(params)
    # Without augmentation every view would be the same: compute one.
    views = np.stack([
        features_of.predict(view_dataset(images, batch_size, preprocess, augment, seed, view),
                            verbose=0) for view in range(knobs.feature_views if augment else 1)])
    val_data, val_labels = val
    val_features = tf.data.Dataset.from_tensor_slices(
        (features_of.predict(val_data, verbose=0), val_labels)).batch(batch_size)
    head_layers = model.layers[model.layers.index(model.get_layer("pool")) + 1:]
    # The Input builds the head now, so a backup can be restored into it before fit.
    head = keras.Sequential([keras.Input(views.shape[-1:]), *head_layers], name="head")
    compile_binary(head, knobs.learning_rate)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    train = (feature_batches(views, labels, batch_size, seed, epoch), epoch, len(labels))
    return train_phase(head, params, train, val_features, knobs.epochs, live_dir, key,
                       counted=model, setup_seconds=time.perf_counter() - start)


def finetune_phase(params, backbone, model, live_dir, head_model_file=None):
    """Unfreeze the top of the base (BatchNorm stays frozen), then a low learning rate."""
    knobs = params.finetune
    seed_everything(params.train.seed)
    val_data, _ = eval_data(params, backbone, "val")
    unfreeze_top(find_base(model), knobs.unfreeze_last)
    compile_binary(model, knobs.learning_rate)  # recompiling makes the new trainable flags count
    print(f"finetune: last {knobs.unfreeze_last} base layers unfrozen, "
          f"{count_params(model)['params_trainable']:,} trainable parameters")
    inputs = [DECODED_DIR / "train.npz", DECODED_DIR / "val.npz"]
    key = run_key(params, *inputs, *([head_model_file] if head_model_file else []))
    return train_phase(model, params, training_batches(params, backbone, augmentation(params)),
                       val_data, knobs.epochs, live_dir, key)
