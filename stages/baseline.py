"""Stage baseline: the old setup, the "before" of the story.

Every layer trainable from ImageNet weights, no augmentation, no dropout, same batch
size and preprocessing. BatchNorm stays in inference mode, as in the recipe, so the
differences from the recipe are what the old setup did differently (and the seeded
weights have BatchNorm folded into the convolutions, which batch statistics would wreck).
At Adam's default 1e-3 this network collapsed to chance here, hence baseline.learning_rate.
"""
from pathlib import Path

from catsdogs import params as P
from catsdogs.models import (build_classifier, compile_binary, count_params, find_base,
                             unfreeze_top)
from catsdogs.training import setup, split_data, train_phase

MODEL = Path("models/baseline.keras")
LIVE_DIR = Path("reports/baseline")


def main():
    params = P.load()
    knobs = setup(params)
    epochs = P.get(params, "baseline.epochs", int, low=1)
    learning_rate = P.get(params, "baseline.learning_rate", float, above=0.0)

    train_data, n_train = split_data(knobs, "train", shuffle=True)
    val_data, _ = split_data(knobs, "val")
    model = build_classifier(knobs.backbone, knobs.image_size, knobs.weights,
                             dropout=0.0, seed=knobs.seed)
    base = find_base(model)
    unfreeze_top(base, len(base.layers))  # every layer but BatchNorm
    compile_binary(model, learning_rate)
    print(f"baseline: {knobs.backbone}, {count_params(model)['params_trainable']:,} of "
          f"{model.count_params():,} parameters trainable (all but BatchNorm), "
          f"{n_train} training images, {epochs} epochs")
    summary = train_phase(model, train_data, val_data, epochs, LIVE_DIR, n_train)
    MODEL.parent.mkdir(parents=True, exist_ok=True)
    model.save(MODEL)
    print(f"baseline: accuracy {summary['accuracy']:.3f}, val_accuracy "
          f"{summary['val_accuracy']:.3f}, {summary['seconds']:.0f} s -> {MODEL}")


if __name__ == "__main__":
    main()
