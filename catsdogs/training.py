"""One training phase = one Keras fit, logged per epoch by dvclive, resumable after a kill.

Each epoch's shuffle, augmentation and dropout are functions of (seed, epoch) alone, so a
resumed run and a straight one compute the same thing, and two runs give identical metrics.
train.distribute picks the devices (see `distribution`); the callbacks run once per fit
whatever it is: one process drives every replica.
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


# Logical CPU devices `mirrored` makes when no GPU is visible: enough for the multi-device
# path (each batch split, gradients all-reduced) to run and be tested; no speed-up, since
# they share the same cores.
CPU_REPLICAS = 2


def distribution(distribute):
    """The tf.distribute strategy of train.distribute; stages build, load and compile their
    models inside its scope(), so that the variables live on every replica.

    none: TensorFlow's default strategy (one device; its scope() changes nothing).
    mirrored: tf.distribute.MirroredStrategy over every visible GPU, or, with none, over
    CPU_REPLICAS logical CPU devices: call this before TensorFlow starts (first thing in a
    stage), since the CPU can only be split then. train.batch_size stays the global batch:
    each replica gets its share of every batch, and their gradients add up to the batch's.
    (Keras 3's Dropout draws the same mask on every replica: its SeedGenerator state is a
    mirrored variable. Masks still change every step and every image's place in its batch
    changes every epoch.)
    """
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


def check_last_batches(replicas, **datasets):
    """Stop if a batch of these (name: batches) is smaller than the replica count: a replica
    would get no images, and Keras' layers fail on an empty batch (BatchNorm included)."""
    for name, batches in datasets.items():
        sizes = [int(size) for size in batches.map(lambda x, y: tf.shape(y)[0])]
        if min(sizes) < replicas:
            raise SystemExit(
                f"train.distribute: mirrored splits every batch over {replicas} replicas, but "
                f"the last {name} batch holds {sizes[-1]} image(s) ({sum(sizes)} images in "
                f"batches of {sizes[0]}): choose a train.batch_size that leaves 0 or at "
                f"least {replicas} images for the last batch of every split")


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
    strategy = model.distribute_strategy  # the one it was built under; none: the default
    if strategy.num_replicas_in_sync > 1:
        check_last_batches(strategy.num_replicas_in_sync, training=train.batches,
                           validation=val_batches)
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
    with model.distribute_strategy.scope():  # the new optimizer's variables on every replica
        unfreeze_top(find_base(model), finetune.unfreeze_last, freeze_batchnorm=freeze_batchnorm)
        compile_binary(model, finetune.learning_rate)
    finetune_summary = fit(model, train, val_batches, finetune.epochs, seed,
                           run_dir / "finetune")
    return head_summary, finetune_summary


def write_timing(name, timing):
    paths.TIMING.mkdir(parents=True, exist_ok=True)
    (paths.TIMING / f"{paths.slug(name)}.json").write_text(json.dumps(timing, indent=2) + "\n")
