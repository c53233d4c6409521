"""Stage baseline, the old setup: every layer but BatchNorm trainable, no augmentation, no
dropout. At Adam's default 1e-3 it collapsed to chance, hence baseline.learning_rate."""
from catsdogs import params, paths
from catsdogs.data import eval_split, train_dataset
from catsdogs.decoded import load_decoded
from catsdogs.files import locked
from catsdogs.models import (build_classifier, compile_classifier, find_base, save_model,
                             seed_everything, unfreeze_top)
from catsdogs.training import distribution, fit


def main():
    p = params.load()
    with locked("baseline"):
        strategy = distribution(p.train.distribute)  # first: mirrored may split the CPU
        backbone, image_size = p.model.backbone, p.model.image_size
        weights = paths.pretrained_weights(backbone, image_size)
        batch_size, seed, epochs = p.train.batch_size, p.train.seed, p.baseline.epochs
        seed_everything(seed)
        train = train_dataset(*load_decoded("train"), batch_size, None, seed)
        val = eval_split("val", batch_size)
        with strategy.scope():  # the model's variables (and the optimizer's) on every device
            model = build_classifier(backbone, image_size, weights, dropout=0.0, seed=seed,
                                     num_classes=len(p.classes))
            base = find_base(model)
            unfreeze_top(base, len(base.layers))  # every layer but BatchNorm
            compile_classifier(model, p.baseline.learning_rate)
        print(f"baseline: {backbone}, {model.count_params():,} parameters, all but BatchNorm "
              f"trainable, {train.images} training images, {epochs} epochs")
        fit(model, train, val, epochs, seed, paths.BASELINE_LIVE, p.train.class_weight)
        save_model(model, paths.BASELINE_MODEL)


if __name__ == "__main__":
    main()
