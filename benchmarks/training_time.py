"""Training time per backbone, from the wall times the last `dvc repro` left in reports/timing/.

    python benchmarks/training_time.py

The pipeline keeps wall times out of its metrics (they differ on every run and would make
`dvc metrics diff` noisy); each training phase writes them to reports/timing/. This script
puts model.backbone (train_head, finetune, evaluate) beside every compare@<backbone> run,
with the accuracies of reports/compare/metrics.json, and writes
benchmarks/results/training_time.{json,md,png}, which the README quotes. Runs are one after
the other on the same machine: compare them as ratios.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from catsdogs import params, paths  # noqa: E402
from catsdogs.plots import plt, save  # noqa: E402
from catsdogs.reports import read_json  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def timing(live_dir):
    return read_json(paths.TIMING / f"{paths.slug(live_dir)}.json")


def main(argv=None):
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    p = params.load()
    main_predict = timing(paths.EVALUATE_REPORTS)["final_predict_images_per_second"]
    runs = [(p.model.backbone, paths.HEAD_LIVE, paths.FINETUNE_LIVE, main_predict)]
    runs += [(name, paths.COMPARE_RUNS / name / "head", paths.COMPARE_RUNS / name / "finetune",
              timing(paths.COMPARE_RUNS / name)["predict_images_per_second"])
             for name in p.compare.backbones]
    accuracy = read_json(paths.COMPARE_REPORTS / "metrics.json")
    rows = []
    for backbone, head_dir, finetune_dir, predict in runs:
        head, finetune = timing(head_dir), timing(finetune_dir)
        rows.append({"backbone": backbone,
                     **{key: accuracy[backbone][key] for key in
                        ("val_accuracy", "test_accuracy", "test_accuracy_low",
                         "test_accuracy_high")},
                     "head_seconds": head["seconds"],
                     "finetune_seconds": finetune["seconds"],
                     "head_train_images_per_second": head["train_images_per_second"],
                     "finetune_train_images_per_second": finetune["train_images_per_second"],
                     "predict_images_per_second": predict})
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "training_time.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| backbone | val acc | test acc | head s | fine-tune s | head img/s | "
             "fine-tune img/s | predict img/s |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['backbone']} | {r['val_accuracy']:.3f} | {r['test_accuracy']:.3f} | "
              f"{r['head_seconds']:.0f} | {r['finetune_seconds']:.0f} | "
              f"{r['head_train_images_per_second']:.0f} | "
              f"{r['finetune_train_images_per_second']:.0f} | {r['predict_images_per_second']:.0f} |"
              for r in rows]
    lines += ["", f"Each backbone: {p.train_head.epochs} head + {p.finetune.epochs} fine-tuning "
              f"epochs, batch {p.train.batch_size}, from the last run that trained it. Seconds "
              f"include per-epoch validation; img/s counts training images; predict img/s is "
              f"on the test split, input pipeline included. Accuracy intervals and McNemar "
              f"tests: reports/compare/compare.md. Figure: training_time.png."]
    (RESULTS / "training_time.md").write_text("\n".join(lines) + "\n")
    accuracy_vs_time(RESULTS / "training_time.png", rows)
    print("\n".join(lines))


def accuracy_vs_time(path, rows):
    """Per backbone: test accuracy (with its interval) against training wall time, and the
    training throughput of each phase."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for row in rows:
        seconds = row["head_seconds"] + row["finetune_seconds"]
        accuracy = row["test_accuracy"]
        left.errorbar(seconds, accuracy, capsize=3, marker="o", label=row["backbone"],
                      yerr=[[accuracy - row["test_accuracy_low"]],
                            [row["test_accuracy_high"] - accuracy]])
        left.annotate(row["backbone"], (seconds, accuracy), textcoords="offset points",
                      xytext=(6, 4), fontsize=9)
    left.set(xlabel="training wall time, head + fine-tuning (s)", ylabel="test accuracy",
             title="accuracy vs training time (bars: bootstrap interval)")
    names = [row["backbone"] for row in rows]
    for offset, phase in ((-0.2, "head"), (0.2, "finetune")):
        bars = right.bar([i + offset for i in range(len(rows))],
                         [row[f"{phase}_train_images_per_second"] for row in rows], 0.4,
                         label={"head": "frozen head", "finetune": "fine-tuning"}[phase])
        right.bar_label(bars, fmt="%.0f", fontsize=8)
    right.set(xticks=list(range(len(rows))), xticklabels=names,
              ylabel="training images / s", title="training throughput")
    right.legend(loc="lower right")
    save(fig, path)


if __name__ == "__main__":
    main()
