"""Stage compare_report: one table and one figure, model.backbone (from train_head,
finetune and evaluate) beside every compare@<backbone> run."""
import json

from catsdogs import params, paths, plots
from catsdogs.evaluation import comparison_row, last_epoch

OUT = paths.COMPARE_REPORTS
COLUMNS = [("backbone", "backbone", "{}"), ("val_accuracy", "val acc", "{:.3f}"),
           ("test_accuracy", "test acc", "{:.3f}"), ("val_loss", "val loss", "{:.3f}"),
           ("test_loss", "test loss", "{:.3f}"),
           ("train_accuracy", "train acc (last epoch)", "{:.3f}"),
           ("params_total", "params", "{:,}"),
           ("params_trainable_finetune", "trainable (fine-tune)", "{:,}")]


def read_json(path):
    return json.loads(path.read_text())


def main():
    p = params.load()
    # model.backbone went through the same recipe in train_head and finetune: reuse them.
    final = read_json(paths.EVALUATE_REPORTS / "metrics.json")["final"]
    head, finetune = (last_epoch(read_json(live / "metrics.json"))
                      for live in (paths.HEAD_LIVE, paths.FINETUNE_LIVE))
    rows = [comparison_row(p.model.backbone, head, finetune, final)]
    rows += [read_json(paths.COMPARE_RUNS / name / "metrics.json") for name in p.compare.backbones]

    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt.format(row[key]) for key, _, fmt in COLUMNS) + " |"
              for row in rows]
    lines += ["", f"{p.model.backbone} (model.backbone) comes from the train_head, finetune and "
              "evaluate stages; the others from compare@<backbone>, with the same recipe. "
              "Training times: benchmarks/results/training_time.md."]
    (OUT / "compare.md").write_text("\n".join(lines) + "\n")
    (OUT / "metrics.json").write_text(json.dumps({r["backbone"]: r for r in rows}, indent=2) + "\n")
    plots.comparison(OUT / "compare.png", rows)
    print((OUT / "compare.md").read_text())


if __name__ == "__main__":
    main()
