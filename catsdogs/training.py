"""One training phase = one Keras fit, logged per epoch by dvclive, resumable after a kill.
Each epoch's shuffle, augmentation and dropout are functions of (seed, epoch) alone, so a
resumed run and a straight one compute the same thing."""
import time

import keras
import numpy as np
import tensorflow as tf
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from catsdogs import paths
from catsdogs.evaluation import last_epoch
from catsdogs.models import (build_classifier, compile_classifier, count_params, find_base,
                             seed_everything, unfreeze_top)
from catsdogs.reports import write_timing
from catsdogs.resume import EpochBackup


# Logical CPUs `mirrored` makes without a GPU: the multi-device path runs (with no speed-up).
CPU_REPLICAS = 2


def distribution(distribute):
    """The default strategy, or MirroredStrategy over the GPUs, else over CPU_REPLICAS logical
    CPUs (call it before TensorFlow starts). Dropout's seed state is mirrored: same masks."""
    if distribute == "none":
        return tf.distribute.get_strategy()
    if tf.config.list_physical_devices("GPU"):
        strategy = tf.distribute.MirroredStrategy()
    else:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * CPU_REPLICAS)
        except RuntimeError:  # TensorFlow already started: its devices are checked below
            pass
        devices = [device.name for device in tf.config.list_logical_devices("CPU")]
        if len(devices) < 2:
            raise SystemExit("train.distribute: mirrored found no GPU and one CPU device: "
                             "TensorFlow started before the CPU could be split (call "
                             "training.distribution first)")
        strategy = tf.distribute.MirroredStrategy(devices)
    print(f"train.distribute: mirrored over {strategy.num_replicas_in_sync} devices: "
          f"{', '.join(strategy.extended.worker_devices)}")
    return strategy


def check_last_batches(replicas, batch_size, **counts):
    """Stop if a last batch has fewer images than replicas: Keras' layers fail on an empty one."""
    for name, count in counts.items():
        last = count % batch_size or batch_size
        if last < replicas:
            raise SystemExit(
                f"train.distribute: mirrored splits every batch over {replicas} replicas, but "
                f"the last {name} batch holds {last} image(s) ({count} images in batches of "
                f"{batch_size}): choose a train.batch_size that leaves 0 or at least "
                f"{replicas} images for the last batch of every split")


class EpochRandomness(keras.callbacks.Callback):
    """As each epoch begins, reseed dropout from (seed, epoch) and set the epoch variable
    (the training batches carry their epoch; the legacy study's augmented validation reads it)."""

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


def class_weights(class_weight, labels, num_classes):
    """train.class_weight for model.fit: None, or "balanced" as scikit-learn weighs classes."""
    if class_weight is None:
        return None
    counts = np.bincount(np.asarray(labels).astype(int), minlength=num_classes)
    return {k: len(labels) / (num_classes * int(n)) for k, n in enumerate(counts) if n}


def fit(model, train, val, epochs, seed, live_dir, class_weight=None):
    """Train, validating on val (data.eval_split) and logging every epoch to live_dir; the last
    epoch's metrics and the timing (also written to reports/timing/), flat."""
    strategy = model.distribute_strategy  # the one it was built under; none: the default
    weights = class_weights(class_weight, train.labels, max(2, model.output_shape[-1]))
    if weights:
        print(f"{live_dir}: class weights (label: weight) {weights}")
    if strategy.num_replicas_in_sync > 1:
        check_last_batches(strategy.num_replicas_in_sync, train.batch_size,
                           training=train.images, validation=len(val[1]))
        print(f"{live_dir}: each batch split over {strategy.num_replicas_in_sync} replicas")
    with strategy.scope():  # a backup's weights and optimizer state load into its variables
        backup = EpochBackup(model, live_dir)
    first_epoch = backup.first_epoch
    # dvc.yaml declares these outputs itself; dvclive must not write dvc.yaml or experiments.
    with Live(str(live_dir), dvcyaml=None, save_dvc_exp=False) as live:
        logger = DVCLiveCallback(live=live)
        for epoch, logs in enumerate(backup.history):  # epochs an interrupted run finished
            logger.on_epoch_end(epoch, logs)
        start = time.perf_counter()
        # One dataset of the epochs left: with steps_per_epoch, Keras keeps its iterator from
        # epoch to epoch. Backup last: a kill before it redoes the epoch.
        if first_epoch < epochs:
            model.fit(train.epochs(first_epoch, epochs), steps_per_epoch=train.steps,
                      validation_data=val[0], epochs=epochs, class_weight=weights,
                      initial_epoch=first_epoch, verbose=2, shuffle=False,
                      callbacks=[EpochRandomness(seed, train.epoch), logger, backup])
        else:  # killed after the last epoch's backup: its weights are the run's end
            backup.on_train_end()
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


def start_head_phase(backbone, image_size, head, seed, strategy, num_classes, preprocess=None):
    """The recipe's first phase: the starting weights frozen under a new head, compiled."""
    with strategy.scope():
        model = build_classifier(backbone, image_size,
                                 paths.pretrained_weights(backbone, image_size), head.dropout,
                                 seed, num_classes, preprocess)
        compile_classifier(model, head.learning_rate)
    return model


def start_finetune_phase(model, finetune, freeze_batchnorm=True):
    """The recipe's second phase: top base layers unfrozen, recompiled (so the flags count)."""
    with model.distribute_strategy.scope():  # the new optimizer's variables on every replica
        unfreeze_top(find_base(model), finetune.unfreeze_last, freeze_batchnorm=freeze_batchnorm)
        compile_classifier(model, finetune.learning_rate)


def two_phase(model, train, val, head, finetune, seed, run_dir, freeze_batchnorm=True,
              class_weight=None):
    """Both phases on a start_head_phase model, as their stages run them; both summaries."""
    head_summary = fit(model, train, val, head.epochs, seed, run_dir / "head", class_weight)
    seed_everything(seed)  # each phase starts from the seed, as in its own stage
    start_finetune_phase(model, finetune, freeze_batchnorm)
    finetune_summary = fit(model, train, val, finetune.epochs, seed, run_dir / "finetune",
                           class_weight)
    return head_summary, finetune_summary
