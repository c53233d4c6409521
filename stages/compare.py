"""Stage compare@<backbone>: the same two-phase recipe with another backbone.

Runs once per entry of compare.backbones (a dvc.yaml matrix), each with its own
preprocess_input, and records accuracy, size, wall time and throughput. model.backbone
itself is not rerun: compare_report takes its row from train_head, finetune and evaluate.
"""
import json
import sys
from pathlib import Path

from catsdogs import params as P
from catsdogs.evaluation import score
from catsdogs.models import BACKBONES
from catsdogs.training import finetune_phase, head_phase

RUNS_DIR = Path("reports/compare/runs")


def comparison_row(backbone, head, finetune, val_accuracy, test_accuracy, predict_speed):
    """One backbone's line of the comparison, from its two phase summaries and its scores."""
    return {"backbone": backbone, "val_accuracy": val_accuracy, "test_accuracy": test_accuracy,
            "train_accuracy": finetune["accuracy"], "params_total": head["params_total"],
            "params_trainable_head": head["params_trainable"],
            "params_trainable_finetune": finetune["params_trainable"],
            "head_seconds": head["seconds"], "finetune_seconds": finetune["seconds"],
            "head_train_images_per_second": head["train_images_per_second"],
            "finetune_train_images_per_second": finetune["train_images_per_second"],
            # includes the input pipeline, as a served model would
            "predict_images_per_second": predict_speed}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in BACKBONES:
        raise SystemExit(f"usage: python -m stages.compare BACKBONE  ({' | '.join(BACKBONES)})")
    backbone, params = sys.argv[1], P.load()
    run_dir = RUNS_DIR / backbone
    model, head = head_phase(params, backbone, run_dir / "head")
    finetune = finetune_phase(params, backbone, model, run_dir / "finetune")
    scores, _, speed = score(model, params, backbone, ("val", "test"))
    result = comparison_row(backbone, head, finetune, scores["val"]["accuracy"],
                            scores["test"]["accuracy"], speed)
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"compare@{backbone}: " + ", ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
