"""Stage finetune: train_head's model with the last base layers unfrozen, low learning rate."""
from pathlib import Path

import keras

from catsdogs import params as P
from catsdogs.training import finetune_phase

HEAD_MODEL = Path("models/head.keras")
MODEL = Path("models/final.keras")
LIVE_DIR = Path("reports/finetune")


def main():
    params = P.load()
    model = keras.models.load_model(HEAD_MODEL)  # safe_mode (the default): no code is loaded
    summary = finetune_phase(params, params.model.backbone, model, LIVE_DIR, HEAD_MODEL)
    model.save(MODEL)
    print(f"finetune: accuracy {summary['accuracy']:.3f}, val_accuracy "
          f"{summary['val_accuracy']:.3f}, {summary['seconds']:.0f} s -> {MODEL}")


if __name__ == "__main__":
    main()
