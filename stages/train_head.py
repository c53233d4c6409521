"""Stage train_head: frozen ImageNet base + new head (pooling, dropout, sigmoid unit)."""
from pathlib import Path

from catsdogs import params as P
from catsdogs.training import head_phase

MODEL = Path("models/head.keras")
LIVE_DIR = Path("reports/train_head")


def main():
    params = P.load()
    model, summary = head_phase(params, params.model.backbone, LIVE_DIR)
    MODEL.parent.mkdir(parents=True, exist_ok=True)
    model.save(MODEL)
    print(f"train_head: accuracy {summary['accuracy']:.3f}, val_accuracy "
          f"{summary['val_accuracy']:.3f}, {summary['seconds']:.0f} s -> {MODEL}")


if __name__ == "__main__":
    main()
