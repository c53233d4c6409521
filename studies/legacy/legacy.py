"""Stage legacy@<variant> (studies/legacy/dvc.yaml): the user's old setup as its code runs in
Keras 3, or a variant of it (params legacy): ImageNet weights, input scaled 1/255 as
ImageDataGenerator did (a layer inside the model, as every model's preprocessing), augmented
training batches, validation drawn through the same augmenting generator, BatchNorm trainable
(batch statistics while training, even under training=False: keras-team/keras#20285), Adam
1e-3. A one-phase variant trains every layer from the start with no dropout; a recipe variant
runs the seed's solution as written: train_head's phase, then `base.trainable = True` with all
but the last finetune.unfreeze_last layers frozen. Then every split is scored clean, in
inference mode. Two classes only (studies/legacy/params.py refuses others).
"""
import json
import math
import sys

import keras
import tensorflow as tf

from catsdogs import paths
from catsdogs.data import (augmentation, batches_in_order, eval_split, model_input, stream_seed,
                           train_dataset)
from catsdogs.decoded import load_decoded, read_split
from catsdogs.evaluation import correct, score
from catsdogs.files import locked
from catsdogs.models import (BACKBONES, build_classifier, compile_classifier, find_base,
                             seed_everything, unfreeze_top)
from catsdogs.reports import write_json
from catsdogs.training import distribution, fit, start_head_phase, two_phase
from studies.legacy import params

KERAS_REPORTED = ("accuracy", "loss", "val_accuracy", "val_loss")
SCORED = ("accuracy", "loss")  # the test interval is legacy_report's, from predictions.csv
# catsdogs.data's stateless streams: 0 shuffle, 1 augmentation; this study's is 2.
VALIDATION_AUGMENT_STREAM = 2


def input_scaling(setup, backbone):
    """A new layer scaling the model's 0-255 input: ImageDataGenerator(rescale=1/255), pixels
    in [0, 1] where MobileNetV2 expects [-1, 1]; or the backbone's own preprocessing."""
    if setup.preprocess == "rescale":
        return keras.layers.Rescaling(1 / 255, name="preprocess")
    return BACKBONES[backbone].preprocess_layer()


def augmented_eval_dataset(images, labels, batch_size, augment, epoch, seed):
    """Batches in file order, augmented anew each epoch: validation drawn through the training
    generator, as `validation_split` on one augmenting ImageDataGenerator does. The draws are
    functions of (seed, epoch, batch) on their own stream; `epoch` is the training data's
    (TrainingData.epoch, set by training.fit), and Keras opens a new iterator per epoch."""
    steps = math.ceil(len(labels) / batch_size)

    def augmented(step, batch, epoch_now):
        batch_seed = stream_seed(seed, VALIDATION_AUGMENT_STREAM, epoch_now * steps + step)
        return augment(tf.cast(batch[0], tf.float32), batch_seed), batch[1]

    def epoch_batches(_):
        # Read once per epoch. Under op determinism tf.data then runs the map below on one
        # thread (see data.train_dataset): the validation split is small, and it stays as it was.
        epoch_now = epoch.read_value()
        return batches_in_order(images, labels, batch_size).enumerate().map(
            lambda step, batch: augmented(step, batch, epoch_now),
            num_parallel_calls=tf.data.AUTOTUNE)

    return model_input(tf.data.Dataset.range(1).flat_map(epoch_batches))


def all_layers_model(backbone, image_size, weights, setup, seed):
    """The old setup's network: its input scaling, every layer trainable from the start,
    pooling + one sigmoid unit, no dropout; BatchNorm trainable too unless setup.batchnorm is
    frozen."""
    model = build_classifier(backbone, image_size, weights, dropout=0.0, seed=seed,
                             num_classes=2, preprocess=input_scaling(setup, backbone))
    base = find_base(model)
    unfreeze_top(base, len(base.layers), freeze_batchnorm=setup.batchnorm == "frozen")
    compile_classifier(model, setup.learning_rate)
    return model


def datasets(p, setup):
    """The training batches and the validation (batches, labels) as setup draws them."""
    batch_size, seed = p.train.batch_size, p.train.seed
    augment = augmentation(p.augment)  # flip, rotation, shift
    train = train_dataset(*load_decoded("train"), batch_size, augment, seed)
    if setup.validation == "clean":
        return train, eval_split("val", batch_size)
    images, labels = load_decoded("val")
    return train, (augmented_eval_dataset(images, labels, batch_size, augment, train.epoch,
                                          seed), labels)


def train(p, legacy, variant, setup, run_dir):
    """The variant's model, trained; and the last epoch as Keras reported it."""
    strategy = distribution(p.train.distribute)  # first: mirrored may split the CPU
    backbone, image_size, seed = p.model.backbone, p.model.image_size, p.train.seed
    class_weight = p.train.class_weight
    seed_everything(seed)
    train_data, val = datasets(p, setup)
    if variant in legacy.variants:
        with strategy.scope():  # the model's variables (and the optimizer's) on every device
            model = all_layers_model(backbone, image_size,
                                     paths.pretrained_weights(backbone, image_size), setup, seed)
        return model, fit(model, train_data, val, legacy.epochs, seed, run_dir / "train",
                          class_weight)
    # The seed's solution: a new head on the frozen base, then the top unfrozen.
    model = start_head_phase(backbone, image_size, p.train_head, seed, strategy, 2,
                             input_scaling(setup, backbone))
    _, keras_reported = two_phase(model, train_data, val, p.train_head, p.finetune, seed,
                                  run_dir, setup.batchnorm == "frozen", class_weight)
    return model, keras_reported


def main():
    p, legacy = params.load()
    variants = {**legacy.variants, **legacy.recipe_variants}
    if len(sys.argv) != 2 or sys.argv[1] not in variants:
        raise SystemExit(f"usage: python -m studies.legacy.legacy VARIANT  "
                         f"({' | '.join(variants)})")
    variant = sys.argv[1]
    with locked(f"legacy@{variant}"):
        setup, run_dir = legacy.setup(variant), params.RUNS / variant
        print(f"legacy@{variant}: {setup}")
        model, keras_reported = train(p, legacy, variant, setup, run_dir)

        scores, probabilities, _ = score(
            model, {split: eval_split(split, p.train.batch_size) for split in paths.SPLITS},
            p.evaluate.threshold)
        metrics = {"keras_last_epoch": {key: keras_reported[key] for key in KERAS_REPORTED},
                   **{split: {key: scores[split][key] for key in SCORED} for split in paths.SPLITS}}
        write_json(run_dir / "metrics.json", metrics)
        test = read_split("test")[["path", "label"]]
        test["probability"] = probabilities["test"][:, 1].round(5)  # p(the second class)
        test["correct"] = correct(test["label"], probabilities["test"], p.evaluate.threshold)
        test.to_csv(run_dir / "predictions.csv", index=False)
        print(f"legacy@{variant}: " + json.dumps(metrics))


if __name__ == "__main__":
    main()
