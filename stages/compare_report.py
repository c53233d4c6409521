"""Stage compare_report: model.backbone (from train_head, finetune and evaluate) beside every
compare@<backbone> run, with bootstrap intervals and McNemar's test against model.backbone."""
from catsdogs import params, paths, plots, verdicts
from catsdogs.evaluation import (Bootstrap, accuracy_interval, comparison_row, last_epoch,
                                 mcnemar, read_predictions)
from catsdogs.reports import fill, read_json, write_json, write_text

OUT = paths.COMPARE_REPORTS
SPLITS = ("val", "test")
ROW = ("| {backbone} | {val_accuracy:.3f} ({val_accuracy_low:.3f} to {val_accuracy_high:.3f}) | "
       "{test_accuracy:.3f} ({test_accuracy_low:.3f} to {test_accuracy_high:.3f}) | "
       "{val_loss:.3f} | {test_loss:.3f} | {train_accuracy:.3f} | {params_total:,} | "
       "{params_trainable_finetune:,} | {against_main} |")


def main():
    p = params.load()
    main_backbone, bootstrap = p.model.backbone, Bootstrap.of(p.evaluate)
    # model.backbone's row reuses train_head, finetune and evaluate (same recipe and bootstrap).
    final = read_json(paths.EVALUATE_REPORTS / "metrics.json")["final"]
    head, finetune = (last_epoch(read_json(live / "metrics.json"))
                      for live in (paths.HEAD_LIVE, paths.FINETUNE_LIVE))
    rows = [{**comparison_row(main_backbone, head, finetune, final),
             **{f"{split}_{key}": final[split][key] for split in SPLITS
                for key in ("accuracy_low", "accuracy_high")}}]
    against_main = ["-"]  # the table's McNemar cell, row by row
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
        against_main.append(f"{paired['only_a_right']} / {paired['only_b_right']}, p = "
                            f"{paired['p_value']:.2g} "
                            f"({verdicts.difference(paired['significant'], short=True)})")

    table = "\n".join(ROW.format(**row, against_main=cell) for row, cell in zip(rows, against_main))
    write_text(OUT / "compare.md", fill("compare_table.md", rows=table, main_backbone=main_backbone,
                                        confidence=p.evaluate.confidence))
    write_json(OUT / "metrics.json", {r["backbone"]: r for r in rows})
    plots.comparison(OUT / "compare.png", rows)
    print((OUT / "compare.md").read_text())


if __name__ == "__main__":
    main()
