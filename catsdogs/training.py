"""One training phase = one Keras fit, logged per epoch by dvclive, resumable after a kill.

Each epoch's shuffle, augmentation and dropout are functions of (seed, epoch) alone, so a
resumed run and a straight one compute the same thing, and two runs give identical metrics.
"""
import json
import time

import keras
import numpy as np
import tensorflow as tf
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from catsdogs import paths
from catsdogs.evaluation import last_epoch
from catsdogs.models import compile_binary, count_params, find_base, unfreeze_top
from catsdogs.resume import EpochBackup


def seed_everything(seed):
    """Python, NumPy, TensorFlow and Keras seeds, and deterministic TF kernels."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


class EpochRandomness(keras.callbacks.Callback):
    """As each epoch begins, set the epoch the input pipeline draws its shuffle and
    augmentation from, and reseed every Keras random layer (dropout) from (seed, epoch)."""

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


def fit(model, train, val_batches, epochs, seed, live_dir):
    """Train a compiled model on `train` (data.TrainingData) for `epochs`, logging every
    epoch to live_dir. dvclive's summary (live_dir/metrics.json) holds the last epoch's
    Keras metrics under train/ and eval/ (train/accuracy is what Keras reports: augmented
    batches, dropout active) and the parameter counts; the wall time and throughput go to
    reports/timing/. Returns all of them flat (accuracy, loss, val_accuracy, val_loss, ...)."""
    backup = EpochBackup(model, live_dir)
    first_epoch = backup.first_epoch
    # dvc.yaml declares these outputs itself; dvclive must not write dvc.yaml or experiments.
    with Live(str(live_dir), dvcyaml=None, save_dvc_exp=False) as live:
        logger = DVCLiveCallback(live=live)
        for epoch, logs in enumerate(backup.history):  # epochs an interrupted run finished
            logger.on_epoch_end(epoch, logs)
        start = time.perf_counter()
        # shuffle=False: the order comes from EpochRandomness; Keras cannot shuffle it anyway.
        # The backup comes last: a kill before it redoes the epoch.
        model.fit(train.batches, validation_data=val_batches, epochs=epochs,
                  initial_epoch=first_epoch, verbose=2, shuffle=False,
                  callbacks=[EpochRandomness(seed, train.epoch), logger, backup])
        seconds = time.perf_counter() - start
        live.summary.update(count_params(model))
    # Throughput counts training images only; the time includes per-epoch validation.
    timing = {"seconds": round(seconds, 2), "resumed_after_epoch": first_epoch,
              "train_images_per_second": round(train.images * (epochs - first_epoch) / seconds, 1)}
    write_timing(live_dir, timing)
    summary = {**last_epoch(live.summary), **timing}
    print(f"{live_dir}: accuracy {summary['accuracy']:.3f}, val_accuracy "
          f"{summary['val_accuracy']:.3f}, {seconds:.0f} s")
    return summary


def two_phase(model, train, val_batches, head, finetune, seed, run_dir, freeze_batchnorm=True):
    """The recipe's two fits of a model compiled for the head phase: head.epochs on the frozen
    base (run_dir/head), then the top finetune.unfreeze_last base layers unfrozen at
    finetune.learning_rate (run_dir/finetune). Returns both phases' summaries."""
    head_summary = fit(model, train, val_batches, head.epochs, seed, run_dir / "head")
    seed_everything(seed)  # each phase starts from the seed, as in its own stage
    unfreeze_top(find_base(model), finetune.unfreeze_last, freeze_batchnorm=freeze_batchnorm)
    compile_binary(model, finetune.learning_rate)
    finetune_summary = fit(model, train, val_batches, finetune.epochs, seed,
                           run_dir / "finetune")
    return head_summary, finetune_summary


def write_timing(name, timing):
    paths.TIMING.mkdir(parents=True, exist_ok=True)
    (paths.TIMING / f"{paths.slug(name)}.json").write_text(json.dumps(timing, indent=2) + "\n")
