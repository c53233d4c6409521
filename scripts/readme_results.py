"""Copy the committed result tables into README.md, between the RESULTS and SPEED markers.

    python scripts/readme_results.py          # rewrite README.md
    python scripts/readme_results.py --check  # exit 1 if README.md is out of date

The tables are the pipeline's own reports; the README only quotes them. The story table
puts side by side, from those reports, what the old runs claimed, their reproductions
(studies/legacy), the baseline, the recipe and the other backbones.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from catsdogs import params, paths  # noqa: E402
from catsdogs.evaluation import read_json  # noqa: E402

README = Path("README.md")
BLOCKS = {
    "STORY": [("Before and after, one definition per column", "story")],
    "RESULTS": [("Before / after", "reports/evaluate/summary.md"),
                ("The old setup, one factor at a time (studies/legacy)",
                 "reports/legacy/legacy.md"),
                ("Backbones, same two-phase recipe", "reports/compare/compare.md")],
    "SPEED": [("Wall time and peak memory per stage, full default run",
               "benchmarks/results/pipeline_time.md"),
              ("Training time per backbone, last full run", "benchmarks/results/training_time.md"),
              ("Training throughput by input pipeline", "benchmarks/results/throughput.md"),
              ("Scale: 1x, 4x and 16x the data, one epoch per training phase",
               "benchmarks/results/scale.md")],
}


def story():
    """The table of the README's story, from the metrics files (the study's rows only once
    `dvc repro studies/legacy/dvc.yaml` has run)."""
    p = params.load()
    evaluated = read_json(paths.EVALUATE_REPORTS / "metrics.json")
    compared = read_json(paths.COMPARE_REPORTS / "metrics.json")
    study_file = paths.LEGACY_REPORTS / "metrics.json"
    study = read_json(study_file) if study_file.is_file() else {}

    def numbers(train, val, clean_val, test, low, high):
        return f"{train:.3f} | {val:.3f} | {clean_val:.3f} | {test:.3f} ({low:.3f} to {high:.3f})"

    def claimed(name):
        said = p.legacy.reported[name]
        return f"{said.train_accuracy:.2f} | {said.val_accuracy:.2f} | - | -"

    def reproduced(name):
        if name not in study:
            return "- | - | - | - (run `dvc repro studies/legacy/dvc.yaml`)"
        r = study[name]
        return numbers(r["keras_accuracy"], r["keras_val_accuracy"], r["clean_val_accuracy"],
                       r["test_accuracy"], r["test_accuracy_low"], r["test_accuracy_high"])

    def evaluated_row(model, live):
        m = evaluated[model]
        keras_val = read_json(live / "metrics.json")["eval"]["accuracy"]
        return numbers(m["train_accuracy"], keras_val, m["val"]["accuracy"],
                       m["test"]["accuracy"], m["test"]["accuracy_low"],
                       m["test"]["accuracy_high"])

    def compared_row(backbone):
        r = compared[backbone]
        keras_val = read_json(paths.COMPARE_RUNS / backbone / "finetune" / "metrics.json")
        return numbers(r["train_accuracy"], keras_val["eval"]["accuracy"], r["val_accuracy"],
                       r["test_accuracy"], r["test_accuracy_low"], r["test_accuracy_high"])

    rows = [("the user's old setup, as reported", claimed("old_setup")),
            ("the old setup, reproduced (studies/legacy: old_setup)", reproduced("old_setup")),
            ("the seed's solution, as reported", claimed("seed_solution")),
            ("the seed's solution as written, reproduced (seed_solution)",
             reproduced("seed_solution")),
            (f"the project's baseline: every layer but BatchNorm trainable, preprocess_input, "
             f"Adam {p.baseline.learning_rate:g}, no augmentation, no dropout",
             evaluated_row("baseline", paths.BASELINE_LIVE)),
            (f"**the recipe: {p.model.backbone}, frozen head, then top "
             f"{p.finetune.unfreeze_last} layers fine-tuned**",
             evaluated_row("final", paths.FINETUNE_LIVE))]
    rows += [(f"the recipe with {name}", compared_row(name)) for name in p.compare.backbones]
    targets = evaluated["targets"]
    lines = [f"| run | train acc | val acc | val acc, clean | test acc "
             f"({p.evaluate.confidence:.0%} interval) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {name} | {values} |" for name, values in rows]
    lines += ["", "train / val acc: the last epoch as Keras reports it (training batches "
              "augmented and dropout active where the run has them; validation augmented "
              "where the old setup's generator augmented it, else clean). clean: no augmentation, "
              "inference mode (BatchNorm on its moving statistics). test: the dataset's "
              "validation folder, clean. Targets, for the recipe: val accuracy "
              f"> {targets['val_accuracy_min']}: "
              f"{'met' if targets['val_accuracy_met'] else 'NOT met'}; train accuracy < "
              f"{targets['train_accuracy_max']}: "
              f"{'met' if targets['train_accuracy_met'] else 'NOT met'}."]
    return "\n".join(lines)


def block(name, sources):
    parts = [f"<!-- {name}:BEGIN -->"]
    for title, path in sources:
        if path == "story":
            text = story()
        elif Path(path).is_file():
            text = Path(path).read_text().strip()
        else:  # the study is a separate pipeline: a project may not have run it
            text = f"(not produced yet: `{path}` does not exist)"
        source = ("the metrics files of evaluate, compare_report and studies/legacy"
                  if path == "story" else f"`{path}`")
        parts += [f"#### {title}", f"_From {source}._", "", text, ""]
    parts.append(f"<!-- {name}:END -->")
    return "\n".join(parts)


def main():
    text = updated = README.read_text()
    for name, sources in BLOCKS.items():
        begin, end = f"<!-- {name}:BEGIN -->", f"<!-- {name}:END -->"
        if begin not in updated or end not in updated:
            raise SystemExit(f"{README}: markers {begin} / {end} not found")
        head, rest = updated.split(begin, 1)
        updated = head + block(name, sources) + rest.split(end, 1)[1]
    if "--check" in sys.argv:
        if updated != text:
            raise SystemExit(f"{README} results are out of date: run python scripts/readme_results.py")
        return
    README.write_text(updated)


if __name__ == "__main__":
    main()
