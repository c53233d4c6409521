"""Stage legacy@<variant> (studies/legacy/dvc.yaml): the user's old setup as its code runs in
Keras 3, or a variant of it (params legacy): ImageNet weights, input scaled 1/255 as
ImageDataGenerator did, augmented training batches, validation drawn through the same
augmenting generator, BatchNorm trainable (batch statistics while training, even under
training=False: keras-team/keras#20285), Adam 1e-3. A one-phase variant trains every layer
from the start with no dropout; a recipe variant runs the seed's solution as written:
train_head's phase, then `base.trainable = True` with all but the last
finetune.unfreeze_last layers frozen. Then every split is scored clean, in inference mode.
"""
import json
import sys

from catsdogs import params, paths
from catsdogs.data import (augmentation, augmented_eval_dataset, eval_split, load_decoded,
                           read_split, train_dataset)
from catsdogs.evaluation import correct, score
from catsdogs.models import BACKBONES, build_classifier, compile_binary, find_base, unfreeze_top
from catsdogs.training import distribution, fit, seed_everything, two_phase

KERAS_REPORTED = ("accuracy", "loss", "val_accuracy", "val_loss")
SCORED = ("accuracy", "loss")  # the test interval is legacy_report's, from predictions.csv


def rescale(images):
    """ImageDataGenerator(rescale=1/255): pixels in [0, 1], where MobileNetV2 expects [-1, 1]."""
    return images / 255.0


def input_scaling(setup, backbone):
    return rescale if setup.preprocess == "rescale" else BACKBONES[backbone].preprocess


def all_layers_model(backbone, image_size, weights, setup, seed):
    """The old setup's network: every layer trainable from the start, pooling + one sigmoid
    unit, no dropout; BatchNorm trainable too unless setup.batchnorm is frozen."""
    model = build_classifier(backbone, image_size, weights, dropout=0.0, seed=seed)
    base = find_base(model)
    unfreeze_top(base, len(base.layers), freeze_batchnorm=setup.batchnorm == "frozen")
    compile_binary(model, setup.learning_rate)
    return model


def main():
    p = params.load()
    variants = {**p.legacy.variants, **p.legacy.recipe_variants}
    if len(sys.argv) != 2 or sys.argv[1] not in variants:
        raise SystemExit(f"usage: python -m stages.legacy VARIANT  ({' | '.join(variants)})")
    variant = sys.argv[1]
    strategy = distribution(p.train.distribute)  # first: mirrored may split the CPU
    setup = p.legacy.setup(variant)
    backbone, image_size = p.model.backbone, p.model.image_size
    weights = paths.pretrained_weights(backbone, image_size)
    batch_size, seed = p.train.batch_size, p.train.seed
    augment = augmentation(**p.augment.model_dump())  # flip, rotation, shift
    preprocess = input_scaling(setup, backbone)
    run_dir = paths.LEGACY_RUNS / variant
    print(f"legacy@{variant}: {setup}")

    seed_everything(seed)
    train = train_dataset(*load_decoded("train"), batch_size, preprocess, augment, seed)
    if setup.validation == "augmented":
        val = augmented_eval_dataset(*load_decoded("val"), batch_size, preprocess, augment,
                                     train.epoch, seed)
    else:
        val, _ = eval_split("val", batch_size, preprocess)
    if variant in p.legacy.variants:
        with strategy.scope():  # the model's variables (and the optimizer's) on every device
            model = all_layers_model(backbone, image_size, weights, setup, seed)
        keras_reported = fit(model, train, val, p.legacy.epochs, seed, run_dir / "train")
    else:  # the seed's solution: a new head on the frozen base, then the top unfrozen
        with strategy.scope():
            model = build_classifier(backbone, image_size, weights, p.train_head.dropout, seed)
            compile_binary(model, p.train_head.learning_rate)
        _, keras_reported = two_phase(model, train, val, p.train_head, p.finetune, seed, run_dir,
                                      freeze_batchnorm=setup.batchnorm == "frozen")

    scores, probabilities, _ = score(
        model, {split: eval_split(split, batch_size, preprocess) for split in paths.SPLITS},
        p.evaluate.threshold)
    metrics = {"keras_last_epoch": {key: keras_reported[key] for key in KERAS_REPORTED},
               **{split: {key: scores[split][key] for key in SCORED} for split in paths.SPLITS}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    test = read_split("test")[["path", "label"]]
    test["probability"] = probabilities["test"].round(5)
    test["correct"] = correct(test["label"], probabilities["test"], p.evaluate.threshold)
    test.to_csv(run_dir / "predictions.csv", index=False)
    print(f"legacy@{variant}: " + json.dumps(metrics))


if __name__ == "__main__":
    main()
