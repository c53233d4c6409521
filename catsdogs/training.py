"""The two-phase recipe (frozen head, then fine-tuning), shared by the stages and compare.

Each phase is a Keras fit whose per-epoch metrics and plots are logged by dvclive.
"""
import time
from pathlib import Path
from types import SimpleNamespace

import keras
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from catsdogs import params as P
from catsdogs.data import augmentation, make_dataset, read_split
from catsdogs.models import (BACKBONES, backbone_spec, build_classifier, compile_binary,
                             count_params, find_base, unfreeze_top)

SPLIT_DIR = Path("data/split")


def setup(params, backbone=None):
    """The knobs every training stage shares, checked; seeds every random source."""
    knobs = SimpleNamespace(
        backbone=backbone or P.get(params, "model.backbone", str, choices=BACKBONES),
        weights=P.get(params, "model.weights", (str, type(None)), choices=("imagenet", None)),
        image_size=P.get(params, "model.image_size", int, low=32),
        batch_size=P.get(params, "train.batch_size", int, low=1),
        seed=P.get(params, "train.seed", int),
    )
    keras.utils.set_random_seed(knobs.seed)  # Python, NumPy and TensorFlow
    return knobs


def split_data(setup, split, *, augment=None, shuffle=False):
    frame = read_split(SPLIT_DIR / f"{split}.csv")
    data = make_dataset(frame, setup.image_size, setup.batch_size,
                        backbone_spec(setup.backbone).preprocess, augment=augment,
                        shuffle_seed=setup.seed if shuffle else None)
    return data, len(frame)


def train_phase(model, train_data, val_data, epochs, live_dir, images_per_epoch):
    """Fit for `epochs`, log every epoch to `live_dir`, and add wall time and throughput.

    dvclive's summary (live_dir/metrics.json) holds the last epoch's Keras metrics under
    train/ and eval/: train/accuracy is the training accuracy Keras reports (augmented
    batches, dropout active). Returns them flat: accuracy, loss, val_accuracy, val_loss.
    """
    # dvc.yaml declares these outputs itself; dvclive must not write dvc.yaml or experiments.
    with Live(str(live_dir), dvcyaml=None, save_dvc_exp=False) as live:
        start = time.perf_counter()
        # shuffle=False: the tf.data pipeline shuffles (seeded); Keras cannot shuffle it anyway.
        model.fit(train_data, validation_data=val_data, epochs=epochs, verbose=2, shuffle=False,
                  callbacks=[DVCLiveCallback(live=live)])
        seconds = time.perf_counter() - start
        # Throughput counts training images only; the time includes per-epoch validation.
        live.summary["seconds"] = round(seconds, 2)
        live.summary["train_images_per_second"] = round(images_per_epoch * epochs / seconds, 1)
    return last_epoch(live.summary)


def last_epoch(summary):
    """dvclive's nested summary (train/..., eval/...) as Keras names it (accuracy, val_...)."""
    flat = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    flat.update(summary["train"])
    flat.update({f"val_{k}": v for k, v in summary["eval"].items()})
    return flat


def head_knobs(params):
    return SimpleNamespace(
        epochs=P.get(params, "train_head.epochs", int, low=1),
        learning_rate=P.get(params, "train_head.learning_rate", float, above=0.0),
        dropout=P.get(params, "train_head.dropout", float, low=0.0, high=0.99))


def finetune_knobs(params):
    return SimpleNamespace(
        epochs=P.get(params, "finetune.epochs", int, low=1),
        learning_rate=P.get(params, "finetune.learning_rate", float, above=0.0),
        unfreeze_last=P.get(params, "finetune.unfreeze_last", int, low=1))


def head_phase(params, setup, live_dir):
    """Frozen base + new head, trained on augmented batches."""
    knobs = head_knobs(params)
    keras.utils.set_random_seed(setup.seed)  # each phase starts from the seed, wherever it runs
    train_data, n_train = split_data(setup, "train", augment=augmentation(params), shuffle=True)
    val_data, _ = split_data(setup, "val")
    model = build_classifier(setup.backbone, setup.image_size, setup.weights, knobs.dropout,
                             setup.seed)
    compile_binary(model, knobs.learning_rate)
    print(f"train_head: {setup.backbone}, {n_train} training images, {knobs.epochs} epochs, "
          f"{model.count_params():,} parameters")
    return model, train_phase(model, train_data, val_data, knobs.epochs, live_dir, n_train)


def finetune_phase(params, setup, model, live_dir):
    """Unfreeze the top of the base (BatchNorm stays frozen), then a low learning rate."""
    knobs = finetune_knobs(params)
    keras.utils.set_random_seed(setup.seed)
    train_data, n_train = split_data(setup, "train", augment=augmentation(params), shuffle=True)
    val_data, _ = split_data(setup, "val")
    unfreeze_top(find_base(model), knobs.unfreeze_last)
    compile_binary(model, knobs.learning_rate)  # recompiling makes the new trainable flags count
    print(f"finetune: last {knobs.unfreeze_last} base layers unfrozen, "
          f"{count_params(model)['params_trainable']:,} trainable parameters")
    return train_phase(model, train_data, val_data, knobs.epochs, live_dir, n_train)
