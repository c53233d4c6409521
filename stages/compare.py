"""Stage compare@<backbone>: the same two-phase recipe with another backbone.

Runs once per entry of compare.backbones (a dvc.yaml matrix), each with its own
preprocess_input, and records accuracy, size, wall time and throughput.
"""
import json
import sys
import time
from pathlib import Path

from catsdogs import params as P
from catsdogs.data import read_split
from catsdogs.evaluation import binary_metrics, predict_proba
from catsdogs.models import BACKBONES, count_params
from catsdogs.training import (SPLIT_DIR, finetune_knobs, finetune_phase, head_phase, setup,
                               split_data)

RUNS_DIR = Path("reports/compare/runs")


def compare(params, backbone, run_dir):
    knobs = setup(params, backbone)
    threshold = P.get(params, "evaluate.threshold", float, low=0.0, high=1.0)
    finetune_knobs(params)  # bad fine-tuning params fail now, not after the head phase
    model, head = head_phase(params, knobs, run_dir / "head")
    head_params = count_params(model)
    finetune = finetune_phase(params, knobs, model, run_dir / "finetune")

    result = {"backbone": backbone, "params_total": head_params["params_total"],
              "params_trainable_head": head_params["params_trainable"],
              "params_trainable_finetune": count_params(model)["params_trainable"]}
    for split in ("val", "test"):
        data, n_images = split_data(knobs, split)
        start = time.perf_counter()
        probabilities = predict_proba(model, data)
        seconds = time.perf_counter() - start
        labels = read_split(SPLIT_DIR / f"{split}.csv")["label"]
        result[f"{split}_accuracy"] = binary_metrics(labels, probabilities, threshold)["accuracy"]
        if split == "test":  # includes decoding, as a served model would
            result["predict_images_per_second"] = round(n_images / seconds, 1)
    result["train_accuracy"] = finetune["accuracy"]
    for phase, summary in (("head", head), ("finetune", finetune)):
        result[f"{phase}_seconds"] = summary["seconds"]
        result[f"{phase}_train_images_per_second"] = summary["train_images_per_second"]
    return result


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in BACKBONES:
        raise SystemExit(f"usage: python -m stages.compare BACKBONE  ({' | '.join(BACKBONES)})")
    backbone = sys.argv[1]
    run_dir = RUNS_DIR / backbone
    result = compare(P.load(), backbone, run_dir)
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"compare@{backbone}: " + ", ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
