"""Stage compare_report: one table and one figure, model.backbone (from train_head,
finetune and evaluate) beside every compare@<backbone> run, with each accuracy's bootstrap
interval and McNemar's test of each backbone against model.backbone on the test images."""
from catsdogs import params, paths, plots, verdicts
from catsdogs.evaluation import (Bootstrap, accuracy_interval, comparison_row, last_epoch,
                                 mcnemar, read_predictions)
from catsdogs.reports import read_json, write_json, write_text

OUT = paths.COMPARE_REPORTS
SPLITS = ("val", "test")


def main():
    p = params.load()
    main_backbone, bootstrap = p.model.backbone, Bootstrap.of(p.evaluate)
    # model.backbone went through the same recipe in train_head and finetune, and evaluate
    # scored it (intervals included, from the same bootstrap): reuse them.
    final = read_json(paths.EVALUATE_REPORTS / "metrics.json")["final"]
    head, finetune = (last_epoch(read_json(live / "metrics.json"))
                      for live in (paths.HEAD_LIVE, paths.FINETUNE_LIVE))
    rows = [{**comparison_row(main_backbone, head, finetune, final),
             **{f"{split}_{key}": final[split][key] for split in SPLITS
                for key in ("accuracy_low", "accuracy_high")}}]
    main_test = read_predictions(paths.EVALUATE_REPORTS / "test_predictions.csv")
    main_right = (main_test["final_predicted"] == main_test["class"]).to_numpy()
    for name in p.compare.backbones:
        row = read_json(paths.COMPARE_RUNS / name / "metrics.json")
        predictions = {split: read_predictions(paths.COMPARE_RUNS / name /
                                               f"{split}_predictions.csv") for split in SPLITS}
        for split, frame in predictions.items():
            row.update({f"{split}_{key}": value for key, value in
                        accuracy_interval(frame["correct"].to_numpy(), bootstrap).items()})
        if not predictions["test"]["path"].equals(main_test["path"]):
            raise SystemExit(f"compare_report: {name}'s test images differ from "
                             f"{main_backbone}'s; rerun compare@{name}")
        paired = mcnemar(predictions["test"]["correct"].to_numpy(), main_right,
                         p.evaluate.significance)
        rows.append({**row, f"test_only_{name}_right": paired["only_a_right"],
                     f"test_only_{main_backbone}_right": paired["only_b_right"],
                     f"test_vs_{main_backbone}_p_value": paired["p_value"],
                     f"test_vs_{main_backbone}_significant": paired["significant"]})

    write_text(OUT / "compare.md", table(rows, main_backbone, p.evaluate.confidence))
    write_json(OUT / "metrics.json", {r["backbone"]: r for r in rows})
    plots.comparison(OUT / "compare.png", rows)
    print((OUT / "compare.md").read_text())


def table(rows, main_backbone, confidence):
    def interval(row, split):
        return (f"{row[f'{split}_accuracy']:.3f} ({row[f'{split}_accuracy_low']:.3f} to "
                f"{row[f'{split}_accuracy_high']:.3f})")

    def against_main(row):
        versus = f"test_vs_{main_backbone}_"
        if versus + "p_value" not in row:
            return "-"
        only_it, only_main = (row[f"test_only_{name}_right"]
                              for name in (row["backbone"], main_backbone))
        return (f"{only_it} / {only_main}, p = {row[versus + 'p_value']:.2g} "
                f"({verdicts.difference(row[versus + 'significant'], short=True)})")

    lines = [f"| backbone | val acc ({confidence:.0%} interval) | test acc ({confidence:.0%} "
             f"interval) | val loss | test loss | train acc (last epoch) | params | trainable "
             f"(fine-tune) | test: only it / only {main_backbone} right, McNemar |",
             "|" + " --- |" * 9]
    lines += [f"| {r['backbone']} | {interval(r, 'val')} | {interval(r, 'test')} | "
              f"{r['val_loss']:.3f} | {r['test_loss']:.3f} | {r['train_accuracy']:.3f} | "
              f"{r['params_total']:,} | {r['params_trainable_finetune']:,} | {against_main(r)} |"
              for r in rows]
    lines += ["", f"{main_backbone} (model.backbone) comes from the train_head, finetune and "
              "evaluate stages; the others from compare@<backbone>, with the same recipe. "
              "Intervals: bootstrap over the split's images. McNemar: exact test on the test "
              "images only one of the two models gets right; 'noise' means the difference is "
              "within chance. Training times: benchmarks/results/training_time.md."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
