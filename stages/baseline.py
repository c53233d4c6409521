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
from catsdogs.training import (DECODED_DIR, eval_data, run_key, seed_everything,
                               train_phase, training_batches)

MODEL = Path("models/baseline.keras")
LIVE_DIR = Path("reports/baseline")


def main():
    params = P.load()
    backbone, knobs = params.model.backbone, params.baseline
    seed_everything(params.train.seed)
    train = training_batches(params, backbone, augment=None)
    val_data, _ = eval_data(params, backbone, "val")
    model = build_classifier(backbone, params.model.image_size, params.model.weights,
                             dropout=0.0, seed=params.train.seed)
    base = find_base(model)
    unfreeze_top(base, len(base.layers))  # every layer but BatchNorm
    compile_binary(model, knobs.learning_rate)
    print(f"baseline: {backbone}, {count_params(model)['params_trainable']:,} of "
          f"{model.count_params():,} parameters trainable (all but BatchNorm), "
          f"{train[2]} training images, {knobs.epochs} epochs")
    key = run_key(params, DECODED_DIR / "train.npz", DECODED_DIR / "val.npz")
    summary = train_phase(model, params, train, val_data, knobs.epochs, LIVE_DIR, key)
    MODEL.parent.mkdir(parents=True, exist_ok=True)
    model.save(MODEL)
    print(f"baseline: accuracy {summary['accuracy']:.3f}, val_accuracy "
          f"{summary['val_accuracy']:.3f}, {summary['seconds']:.0f} s -> {MODEL}")


if __name__ == "__main__":
    main()
