"""Copy the committed result tables into README.md, between the STORY, RESULTS and SPEED markers.

    python scripts/readme_results.py          # rewrite README.md
    python scripts/readme_results.py --check  # exit 1 if README.md is out of date

The tables are the pipeline's own reports; the README only quotes them. The story table
puts side by side, from those reports, what the old runs claimed, their reproductions
(studies/legacy), the baseline, the recipe and the other backbones. The words are
scripts/templates/readme_*.md (string.Template); the verdicts are catsdogs.verdicts'.
"""
import argparse
import sys
from pathlib import Path
from string import Template

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from catsdogs import params, paths, verdicts  # noqa: E402
from catsdogs.reports import read_json, write_text  # noqa: E402
from studies.legacy.params import REPORTS as LEGACY_REPORTS, check as check_legacy  # noqa: E402

README = Path("README.md")
TEMPLATES = Path(__file__).resolve().parent / "templates"
STORY_SOURCE = "the metrics files of evaluate, compare_report and studies/legacy"
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


def fill(template, values):
    return Template((TEMPLATES / template).read_text()).substitute(values)


def numbers(train, val, clean_val, test, low, high):
    """A story row's cells: train acc | val acc | val acc, clean | test acc (interval)."""
    return f"{train:.3f} | {val:.3f} | {clean_val:.3f} | {test:.3f} ({low:.3f} to {high:.3f})"


def claimed(p, name):
    """What an old run reported (params.yaml's legacy.reported, checked by the study's own
    schema when the section is there)."""
    said = check_legacy(p.legacy).reported.get(name) if p.legacy is not None else None
    if said is None:
        return "- | - | - | -"
    return f"{said.train_accuracy:.2f} | {said.val_accuracy:.2f} | - | -"


def reproduced(study, name):
    """A studies/legacy variant's row (once `dvc repro studies/legacy/dvc.yaml` has run)."""
    if name not in study:
        return "- | - | - | - (run `dvc repro studies/legacy/dvc.yaml`)"
    r = study[name]
    return numbers(r["keras_accuracy"], r["keras_val_accuracy"], r["clean_val_accuracy"],
                   r["test_accuracy"], r["test_accuracy_low"], r["test_accuracy_high"])


def evaluated_row(m, live):
    """The recipe or the baseline, from evaluate's metrics and its training's last epoch."""
    keras_val = read_json(live / "metrics.json")["eval"]["accuracy"]
    return numbers(m["train_accuracy"], keras_val, m["val"]["accuracy"], m["test"]["accuracy"],
                   m["test"]["accuracy_low"], m["test"]["accuracy_high"])


def compared_row(backbone, r):
    """Another backbone, from compare_report's metrics and its fine-tuning's last epoch."""
    keras_val = read_json(paths.COMPARE_RUNS / backbone / "finetune" / "metrics.json")
    return (f"| the recipe with {backbone} | "
            + numbers(r["train_accuracy"], keras_val["eval"]["accuracy"], r["val_accuracy"],
                      r["test_accuracy"], r["test_accuracy_low"], r["test_accuracy_high"])
            + " |")


def story():
    """The table of the README's story, from the metrics files (the study's rows only once
    `dvc repro studies/legacy/dvc.yaml` has run)."""
    p = params.load()
    evaluated = read_json(paths.EVALUATE_REPORTS / "metrics.json")
    compared = read_json(paths.COMPARE_REPORTS / "metrics.json")
    study_file = LEGACY_REPORTS / "metrics.json"
    study = read_json(study_file) if study_file.is_file() else {}
    said, targets = verdicts.recipe(evaluated), evaluated["targets"]
    return fill("readme_story.md", {
        **{f"claimed_{name}": claimed(p, name) for name in ("old_setup", "seed_solution")},
        **{f"reproduced_{name}": reproduced(study, name)
           for name in ("old_setup", "seed_solution")},
        "confidence": f"{p.evaluate.confidence:.0%}",
        "baseline_learning_rate": f"{p.baseline.learning_rate:g}",
        "baseline": evaluated_row(evaluated["baseline"], paths.BASELINE_LIVE),
        "backbone": p.model.backbone, "unfreeze_last": p.finetune.unfreeze_last,
        "recipe": evaluated_row(evaluated["final"], paths.FINETUNE_LIVE),
        "compared_rows": "\n".join(compared_row(name, compared[name])
                                   for name in p.compare.backbones),
        "val_accuracy_min": targets["val_accuracy_min"], "val_target": said["val_target"],
        "train_accuracy_max": targets["train_accuracy_max"],
        "train_target": said["train_target"]})


def section(title, path):
    if path == "story":
        text, source = story(), STORY_SOURCE
    elif Path(path).is_file():
        text, source = Path(path).read_text(), f"`{path}`"
    else:  # the study is a separate pipeline: a project may not have run it
        text, source = f"(not produced yet: `{path}` does not exist)", f"`{path}`"
    return fill("readme_section.md", {"title": title, "source": source, "text": text.strip()})


def updated(readme):
    """The README's text with every marked block rewritten."""
    for name, sources in BLOCKS.items():
        begin, end = f"<!-- {name}:BEGIN -->", f"<!-- {name}:END -->"
        if begin not in readme or end not in readme:
            raise SystemExit(f"{README}: markers {begin} / {end} not found")
        head, rest = readme.split(begin, 1)
        block = "\n".join([begin, *(section(title, path) for title, path in sources), end])
        readme = head + block + rest.split(end, 1)[1]
    return readme


def write_or_check(path, make_text, command, description, argv=None):
    """main() of a script (command; description its --help) that regenerates path: writes it,
    or with --check exits 1 if path is out of date. scripts/model_card.py's too."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 if {path} is out of date; write nothing")
    check, path = parser.parse_args(argv).check, Path(path)
    text = make_text()
    if path.is_file() and path.read_text() == text:
        return
    if check:
        raise SystemExit(f"{path} is out of date: run {command}")
    write_text(path, text)


def main(argv=None):
    write_or_check(README, lambda: updated(README.read_text()), "python scripts/readme_results.py",
                   __doc__, argv)

if __name__ == "__main__":
    main()
