"""Stage compare_report: one table and one figure, model.backbone (from train_head,
finetune and evaluate) beside every compare@<backbone> run."""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from catsdogs import params as P  # noqa: E402
from catsdogs.training import last_epoch  # noqa: E402
from stages import evaluate, finetune, train_head  # noqa: E402
from stages.compare import RUNS_DIR, comparison_row  # noqa: E402

OUT = Path("reports/compare")
COLUMNS = [("backbone", "backbone", "{}"), ("val_accuracy", "val acc", "{:.3f}"),
           ("test_accuracy", "test acc", "{:.3f}"), ("train_accuracy", "train acc (last epoch)", "{:.3f}"),
           ("params_total", "params", "{:,}"), ("params_trainable_finetune", "trainable (fine-tune)", "{:,}"),
           ("head_seconds", "head s", "{:.0f}"), ("finetune_seconds", "fine-tune s", "{:.0f}"),
           ("head_train_images_per_second", "head img/s", "{:.0f}"),
           ("finetune_train_images_per_second", "fine-tune img/s", "{:.0f}"),
           ("predict_images_per_second", "predict img/s", "{:.0f}")]


def read_json(path):
    return json.loads(Path(path).read_text())


def main_backbone_row(backbone):
    """model.backbone went through the same recipe in train_head and finetune: reuse them."""
    final = read_json(evaluate.OUT / "metrics.json")["final"]
    return comparison_row(backbone, last_epoch(read_json(train_head.LIVE_DIR / "metrics.json")),
                          last_epoch(read_json(finetune.LIVE_DIR / "metrics.json")),
                          final["val"]["accuracy"], final["test"]["accuracy"],
                          final["predict_images_per_second"])


def main():
    params = P.load()
    results = [main_backbone_row(params.model.backbone)]
    results += [json.loads((RUNS_DIR / name / "metrics.json").read_text())
                for name in params.compare.backbones]

    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|" + " --- |" * len(COLUMNS)]
    for result in results:
        lines.append("| " + " | ".join(fmt.format(result[key]) for key, _, fmt in COLUMNS) + " |")
    lines += ["", f"{params.model.backbone} (model.backbone) comes from the train_head, finetune and "
              "evaluate stages; the others from compare@<backbone>, with the same recipe. "
              "Seconds include per-epoch validation; img/s counts training images. Each run "
              "was its own process, one after the other: compare speeds as ratios."]
    (OUT / "compare.md").write_text("\n".join(lines) + "\n")
    (OUT / "metrics.json").write_text(json.dumps({r["backbone"]: r for r in results}, indent=2) + "\n")

    fig, (acc_ax, time_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = [r["backbone"] for r in results]
    positions = range(len(names))
    for offset, split in ((-0.2, "val"), (0.2, "test")):
        bars = acc_ax.bar([p + offset for p in positions],
                          [r[f"{split}_accuracy"] for r in results], 0.4, label=split)
        acc_ax.bar_label(bars, fmt="%.3f", fontsize=8)
    lowest = min(min(r["val_accuracy"], r["test_accuracy"]) for r in results)
    # Zoom in on the differences that matter; the axis does not start at zero, so say so.
    acc_ax.set(xticks=list(positions), xticklabels=names, ylim=(max(0.0, lowest - 0.05), 1.0),
               title="accuracy (axis zoomed)")
    acc_ax.legend(loc="lower right")
    head_bars = time_ax.bar(names, [r["head_seconds"] for r in results], label="frozen head")
    tune_bars = time_ax.bar(names, [r["finetune_seconds"] for r in results],
                            bottom=[r["head_seconds"] for r in results], label="fine-tuning")
    time_ax.bar_label(head_bars, fmt="%.0f s", label_type="center", fontsize=8)
    time_ax.bar_label(tune_bars, fmt="%.0f s", label_type="center", fontsize=8)
    time_ax.set(ylabel="seconds", title="training wall time")
    time_ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(OUT / "compare.png", dpi=110)
    print((OUT / "compare.md").read_text())


if __name__ == "__main__":
    main()
