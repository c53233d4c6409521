"""Write the figures of README.md and docs/ from the committed reports and benchmark results,
between <!-- NAME:BEGIN --> and <!-- NAME:END --> markers, in whichever file holds each block.

    python scripts/readme_results.py          # rewrite README.md, docs/results.md, docs/speed.md
    python scripts/readme_results.py --check  # exit 1 if any of them is out of date

The tables are the pipeline's own reports and benchmarks/results/; the files only quote them.
The story table puts side by side, from those reports, what the old runs claimed, their
reproductions (studies/legacy), the baseline, the recipe and the other backbones. The other
blocks word single figures (the recipe's params, measured times, what the tables say) from
the same files. The words are scripts/templates/{readme,results,speed}_*.md
(string.Template); the verdicts are catsdogs.verdicts'. Outside the blocks these files hold
no figure of their own (tests/test_readme.py checks it).
"""
import argparse
import re
import sys
import textwrap
from pathlib import Path
from string import Template

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from catsdogs import params, paths, verdicts  # noqa: E402
from catsdogs.reports import read_json, write_text  # noqa: E402
from studies.legacy.params import (REPORTS as LEGACY_REPORTS, RUNS as LEGACY_RUNS,  # noqa: E402
                                   check as check_legacy)

README = Path("README.md")
RESULTS_DOC = Path("docs/results.md")
SPEED_DOC = Path("docs/speed.md")
BENCHMARKS = Path("benchmarks/results")
FRESH_CLONE = BENCHMARKS / "fresh_clone.json"      # benchmarks/fresh_clone.py writes it
PIPELINE_TIME = BENCHMARKS / "pipeline_time.json"  # benchmarks/pipeline_time.py
TRAINING_TIME = BENCHMARKS / "training_time.json"  # benchmarks/training_time.py
THROUGHPUT = BENCHMARKS / "throughput.json"        # benchmarks/throughput.py
EPOCH_PROFILE = BENCHMARKS / "epoch_profile-{}.json"  # benchmarks/epoch_profile.py --label
SCALE = BENCHMARKS / "scale.json"                  # benchmarks/scale.py
TEMPLATES = Path(__file__).resolve().parent / "templates"
WIDTH = 92  # the files' line length, to which worded blocks are wrapped
STORY_SOURCE = "the metrics files of evaluate, compare_report and studies/legacy"
TABLES = {  # block: the file that holds it, and the tables it quotes (title, source)
    "STORY": (README, [("Before and after, one definition per column", "story")]),
    "RESULTS": (RESULTS_DOC, [("Before / after", "reports/evaluate/summary.md"),
                              ("The old setup, one factor at a time (studies/legacy)",
                               "reports/legacy/legacy.md"),
                              ("Backbones, same two-phase recipe", "reports/compare/compare.md")]),
    "SPEED": (SPEED_DOC, [("Wall time and peak memory per stage, full default run",
                           "benchmarks/results/pipeline_time.md"),
                          ("Training time per backbone, last full run",
                           "benchmarks/results/training_time.md"),
                          ("Training throughput by input pipeline",
                           "benchmarks/results/throughput.md"),
                          ("Where one training epoch's time goes, before and after issue 23",
                           "benchmarks/results/epoch_profile.md"),
                          ("Scale: the data at several sizes, one epoch per training phase",
                           "benchmarks/results/scale.md")]),
}
# The goals the benchmarks are judged by, and the issues that set them.
FULL_RUN_MINUTES_MAX = 15.0       # issue 4: a full default `dvc repro` on 2 cores
NOOP_SECONDS_MAX = 10.0           # issue 4: `dvc repro` with everything up to date
THROUGHPUT_GOALS = {              # issue 4, as benchmarks/throughput.py judges them: the
    "limit": "project_time_over_limit", "old": "project_time_over_old",  # project's epoch
    "tutorial": "project_time_over_tutorial"}                            # time over theirs,
THROUGHPUT_GOAL_MAX = {"limit": 1.10, "old": 0.5, "tutorial": 1.0}      # at most this
SCALE_MEMORY_RATIO_MAX = 1.3      # issue 13: peak memory at the largest N, over the smallest's
SCALE_TIME_OVER_LINEAR_MAX = 1.2  # issue 13: wall time within this of linear growth
DATA_SPEEDUP_MIN = 1.6            # issue 13: validate + decode against the code before, at
DATA_SPEEDUP_AT = 4               # this multiple of the real dataset
TRAINING_STAGES = ("baseline", "train_head", "finetune", "compare@")  # dvc.yaml names (prefixes)
LIGHT_STAGES = ("split", "compare_report")  # stages that do not load TensorFlow
RATIO_TOLERANCE = 0.03  # a project / limit round this far below 1 is the machine, not the code
PHASES = {"head": "head", "finetune": "fine-tune"}  # throughput.json's phases, as worded


def fill(template, values):
    return Template((TEMPLATES / template).read_text()).substitute(values)


def reflowed(text, width=WIDTH):
    """Markdown prose (paragraphs, bullets, numbered items) wrapped at width, as the files are;
    code blocks and tables are left alone."""
    out = []
    for paragraph in text.strip().split("\n\n"):
        if paragraph.startswith(("```", "|", "    ")):
            out.append(paragraph)
            continue
        items = []  # (first-line indent, item text)
        for line in paragraph.splitlines():
            item = re.match(r"(\s*(?:[-*]|\d+\.) )", line)
            if item or not items:
                items.append([item.group(1) if item else "", line[len(item.group(1)):]
                              if item else line.strip()])
            else:
                items[-1][1] += " " + line.strip()
        out.append("\n".join(  # a figure stays on the line of the word after it (its unit)
            textwrap.fill(re.sub(r"(?<=[\d%°]) (?=\w)", "\0", words), width, initial_indent=lead,
                          subsequent_indent=" " * len(lead), break_long_words=False,
                          break_on_hyphens=False).replace("\0", " ")
            for lead, words in items))
    return "\n\n".join(out)


def rate(value):
    """A learning rate or another small param as params.yaml would write it: 0.001, 1e-5."""
    return re.sub(r"e-0*(\d)", r"e-\1", f"{value:g}")


def minutes(seconds):
    return f"{seconds / 60:.1f} min"


def as_ratio(ratio):  # 1.24x
    return f"{ratio:.2f}x"


def numbers(train, val, clean_val, test, low, high):
    """A story row's cells: train acc | val acc | val acc, clean | test acc (interval)."""
    return f"{train:.3f} | {val:.3f} | {clean_val:.3f} | {test:.3f} ({low:.3f} to {high:.3f})"


def reported(p, name):
    """What an old run reported (params.yaml's legacy.reported, checked by the study's own
    schema when the section is there), or None."""
    return check_legacy(p.legacy).reported.get(name) if p.legacy is not None else None


def claimed(p, name):
    said = reported(p, name)
    if said is None:
        return "- | - | - | -"
    return f"{said.train_accuracy:.2f} | {said.val_accuracy:.2f} | - | -"


def claimed_pair(p, name):
    """'claimed train / val' of an old run, as its prose quotes it."""
    said = reported(p, name)
    if said is None:
        return "claimed: not in params.yaml's legacy.reported"
    return f"claimed {said.train_accuracy:.2f} / {said.val_accuracy:.2f}"


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


def legacy_study():
    """studies/legacy's metrics, {} until `dvc repro studies/legacy/dvc.yaml` has run."""
    study_file = LEGACY_REPORTS / "metrics.json"
    return read_json(study_file) if study_file.is_file() else {}


def story():
    """The table of the README's story, from the metrics files (the study's rows only once
    `dvc repro studies/legacy/dvc.yaml` has run)."""
    p = params.load()
    evaluated = read_json(paths.EVALUATE_REPORTS / "metrics.json")
    compared = read_json(paths.COMPARE_REPORTS / "metrics.json")
    study = legacy_study()
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


def recipe():
    """The README's opening: what the old setup claimed (params.yaml's legacy.reported), on
    how many photos (split's counts), and the recipe that replaces it (params.yaml)."""
    p = params.load()
    said, pool = reported(p, "old_setup"), read_json(paths.SPLIT_METRICS)
    a = p.augment
    moves = ["flip"] * a.horizontal_flip + [f"{a.rotation_degrees:g}° rotation",
                                            f"{a.shift_fraction:g} shift"]
    return fill("readme_recipe.md", {
        "pool_images": f"{pool['train_images'] + pool['val_images']:,}",
        "claimed_train": f"{said.train_accuracy:.0%}" if said else "high",
        "claimed_val": f"{said.val_accuracy:.0%}" if said else "far lower",
        "backbone": p.model.backbone, "image_size": p.model.image_size,
        "head_epochs": p.train_head.epochs, "dropout": f"{p.train_head.dropout:g}",
        "output": ("one sigmoid unit" if len(p.classes) == 2
                   else f"a softmax over the {len(p.classes)} classes"),
        "head_learning_rate": rate(p.train_head.learning_rate),
        "batch_size": p.train.batch_size, "augmentation": " / ".join(moves),
        "unfreeze_last": p.finetune.unfreeze_last,
        "finetune_learning_rate": rate(p.finetune.learning_rate),
        "finetune_epochs": p.finetune.epochs,
        "compared": ", ".join(p.compare.backbones) or "none"})


def is_training(stage):
    return stage.startswith(TRAINING_STAGES)


def times():
    """The README's measured times: `make pipeline` then `make test` on a fresh clone
    (benchmarks/fresh_clone.py), a forced full run and a no-op one (benchmarks/pipeline_time.py)."""
    if FRESH_CLONE.is_file():
        f = read_json(FRESH_CLONE)
        fresh = (f"{minutes(f['make_pipeline_seconds'])}, then {minutes(f['make_test_seconds'])} "
                 f"({f['machine']}, {f['date']}; `{FRESH_CLONE}`)")
    else:
        fresh = f"not measured yet (`python benchmarks/fresh_clone.py` writes `{FRESH_CLONE}`)"
    if PIPELINE_TIME.is_file():
        t = read_json(PIPELINE_TIME)
        training = sum(s["seconds"] for s in t["stages"] if is_training(s["stage"]))
        forced = (f"{minutes(t['full_seconds'])} on {t['cores']} cores, "
                  f"{training / t['full_seconds']:.0%} of it in the training stages; with "
                  f"nothing changed, `dvc repro` returns in {t['noop_seconds']:.1f} s "
                  f"(`{PIPELINE_TIME}`)")
    else:
        forced = (f"not measured yet (`python benchmarks/pipeline_time.py` writes "
                  f"`{PIPELINE_TIME}`)")
    return fill("readme_times.md", {"fresh_clone": fresh, "forced_run": forced})


def changes(legacy, name):
    """What a studies/legacy variant changes in the old setup: 'factor old → new, ...'."""
    def value(v):
        return f"{v:g}" if isinstance(v, float) else str(v)
    return ", ".join(f"{factor} {value(getattr(legacy.old_setup, factor))} → {value(new)}"
                     for factor, new in legacy.changes(name).items())


def single_changes(legacy, study):
    """{variant: 'factor old → new'} of the study's variants that change one factor and ran."""
    return {name: changes(legacy, name) for name in legacy.variants
            if len(legacy.changes(name)) == 1 and name in study}


def old_setup_finding(p, study):
    if "old_setup" not in study:
        return "Not run in this project yet: `dvc repro studies/legacy/dvc.yaml`."
    r, legacy = study["old_setup"], check_legacy(p.legacy)
    text = (f"Run as the old code runs in Keras 3, it reports train {r['keras_accuracy']:.3f} / "
            f"val {r['keras_val_accuracy']:.3f} ({claimed_pair(p, 'old_setup')}); in inference "
            f"mode it gets {r['clean_train_accuracy']:.3f} on its own training images and "
            f"{r['test_accuracy']:.3f} on test.")
    single = single_changes(legacy, study)
    if single:
        best = max(single, key=lambda name: study[name]["test_accuracy"])
        b = study[best]
        text += (f" Of the single changes, {best} ({single[best]}) does the most alone: test "
                 f"{b['test_accuracy']:.3f} ({b['test_accuracy'] - r['test_accuracy']:+.3f}, "
                 f"p = {b['test_p_vs_old_setup']:.2g}: "
                 f"{verdicts.difference(b['test_differs_from_old_setup'])}).")
    return text


def seed_solution_finding(p, study, recipe_test):
    if "seed_solution" not in study:
        return "has not run in this project yet: `dvc repro studies/legacy/dvc.yaml`."
    r = study["seed_solution"]
    return (f"reports train {r['keras_accuracy']:.3f} / val {r['keras_val_accuracy']:.3f} "
            f"({claimed_pair(p, 'seed_solution')}) and reaches {r['test_accuracy']:.3f} on test, "
            f"against the recipe's {recipe_test:.3f} ({r['test_accuracy'] - recipe_test:+.3f}; "
            f"McNemar: the study's last bullet above).")


def baseline_finding(evaluated):
    final, baseline = evaluated["final"], evaluated["baseline"]
    versus = evaluated["final_vs_baseline_test"]
    text = (f"test {baseline['test']['accuracy']:.3f} against {final['test']['accuracy']:.3f}, "
            f"{verdicts.difference(versus['significant'])} (McNemar: the summary above).")
    if not versus["significant"]:
        losses = [read_json(live / "metrics.json")["train"]["loss"]
                  for live in (paths.FINETUNE_LIVE, paths.BASELINE_LIVE)]
        text += (" What the recipe buys on this data is not accuracy but a model that does not "
                 f"memorise its training images: its last training loss is {losses[0]:.2g}, "
                 f"the baseline's {losses[1]:.2g}.")
    return text


def backbones_finding(p):
    """Other backbones' training time and prediction rate against model.backbone's."""
    rows = {r["backbone"]: r for r in read_json(TRAINING_TIME)} if TRAINING_TIME.is_file() else {}
    main = rows.get(p.model.backbone)
    if main is None:
        return f"not measured yet (`python benchmarks/training_time.py` writes `{TRAINING_TIME}`)."

    def training(r):
        return r["head_seconds"] + r["finetune_seconds"]
    return "; ".join(
        f"{name} takes {as_ratio(training(r) / training(main))} {main['backbone']}'s "
        f"training time and predicts at "
        f"{as_ratio(r['predict_images_per_second'] / main['predict_images_per_second'])} "
        f"its rate" for name, r in rows.items() if name != main["backbone"]) + "."


def in_short():
    """docs/results.md's reading of the tables: every figure from the same metrics files."""
    p = params.load()
    evaluated = read_json(paths.EVALUATE_REPORTS / "metrics.json")
    study, said = legacy_study(), verdicts.recipe(evaluated)
    return fill("results_in_short.md", {
        "old_setup": old_setup_finding(p, study),
        "seed_solution": seed_solution_finding(p, study, evaluated["final"]["test"]["accuracy"]),
        "val_target": said["val_target"], "train_target": said["train_target"],
        "val_accuracy_min": evaluated["targets"]["val_accuracy_min"],
        "train_accuracy_max": evaluated["targets"]["train_accuracy_max"],
        "regularization": (" Stronger regularization tried with `dvc exp` "
                           "([reports/experiments.md](../reports/experiments.md), an earlier "
                           "run) did not bring the reported training accuracy below the cap, so "
                           "the user's params stay and the target is reported as missed."
                           if said["cap_missed"] else ""),
        "baseline_learning_rate": f"{p.baseline.learning_rate:g}",
        "baseline": baseline_finding(evaluated), "backbones": backbones_finding(p),
        "training_time": f"`{TRAINING_TIME}`"})


def noise():
    """How wide the intervals are, from params.evaluate, the split's counts and the recipe's."""
    p = params.load()
    final = read_json(paths.EVALUATE_REPORTS / "metrics.json")["final"]
    counts = read_json(paths.SPLIT_METRICS)

    def interval(split):
        m = final[split]
        return (f"{m['accuracy_low']:.3f} to {m['accuracy_high']:.3f} around {m['accuracy']:.3f} "
                f"(about ±{(m['accuracy_high'] - m['accuracy_low']) / 2:.3f})")
    return fill("results_noise.md", {
        "confidence": f"{p.evaluate.confidence:.0%}",
        "resamples": f"{p.evaluate.bootstrap_resamples:,}",
        "significance": f"{p.evaluate.significance:g}",
        "val_images": f"{counts['val_images']:,}", "val_interval": interval("val"),
        "test_images": f"{counts['test_images']:,}", "test_interval": interval("test")})


def study_setup():
    """docs/results.md's description of studies/legacy, from params.yaml and its wall times."""
    p = params.load()
    legacy = check_legacy(p.legacy)
    seconds = [read_json(f)["seconds"]
               for f in sorted(paths.TIMING.glob(f"{paths.slug(LEGACY_RUNS)}_*.json"))]
    ran = (f"their training phases took {minutes(sum(seconds))} in the last run "
           f"(`{paths.TIMING}/{paths.slug(LEGACY_RUNS)}_*.json`)" if seconds
           else "not run in this project yet")
    variants = [name for name in legacy.variants if name != "old_setup"]
    said = reported(p, "seed_solution")
    return fill("results_study_setup.md", {
        "networks": len(legacy.variants) + len(legacy.recipe_variants), "ran": ran,
        "backbone": p.model.backbone,
        "old_learning_rate": f"{legacy.old_setup.learning_rate:g}",
        "batch_size": p.train.batch_size, "epochs": legacy.epochs,
        "variants": "; ".join(f"**{name}**: {changes(legacy, name)}" for name in variants),
        "unfreeze_last": p.finetune.unfreeze_last,
        "seed_claimed": (f"{said.train_accuracy:.0%} / {said.val_accuracy:.0%}" if said
                         else "(not in params.yaml)")})


def verdict_of(values, goal):
    """'met', 'NOT met', or which phases met it: every value against an upper bound."""
    met = [phase for phase, value in values.items() if value <= goal]
    if len(met) == len(values):
        return "met"
    return "NOT met" if not met else f"met for {', '.join(met)} only"


def per_phase(values, suffix=""):
    return ", ".join(f"{value:.2f}{suffix} ({phase})" for phase, value in values.items())


def not_measured(path, script):
    return f"Not measured yet: `python benchmarks/{script}` writes `{path}`."


def speed_findings():
    """docs/speed.md's reading of the pipeline-time and throughput tables."""
    if not (PIPELINE_TIME.is_file() and THROUGHPUT.is_file()):
        return not_measured(f"{PIPELINE_TIME}` and `{THROUGHPUT}",
                            "pipeline_time.py` and `python benchmarks/throughput.py")
    t, speed = read_json(PIPELINE_TIME), read_json(THROUGHPUT)
    stages = {s["stage"]: s for s in t["stages"]}
    training = sum(s["seconds"] for name, s in stages.items() if is_training(name))
    ratios = {against: {PHASES[phase]: r[key] for phase, r in speed["ratios"].items()}
              for against, key in THROUGHPUT_GOALS.items()}
    by_round = {PHASES[phase]: r["project_time_over_limit_by_round"]
                for phase, r in speed["ratios"].items()}
    per_second = speed["images_per_second"]
    limit_over_old = {PHASES[phase]: per_second[f"{phase}/old"] / per_second[f"{phase}/limit"]
                      for phase in speed["ratios"]}
    light = [name for name in LIGHT_STAGES if name in stages]
    full_minutes = t["full_seconds"] / 60
    return fill("speed_findings.md", {
        "full_run": minutes(t["full_seconds"]), "full_run_goal": f"{FULL_RUN_MINUTES_MAX:g} min",
        "full_run_verdict": verdicts.met(full_minutes <= FULL_RUN_MINUTES_MAX),
        "noop_run": f"{t['noop_seconds']:.1f} s", "noop_goal": f"{NOOP_SECONDS_MAX:g} s",
        "noop_verdict": verdicts.met(t["noop_seconds"] <= NOOP_SECONDS_MAX),
        "training_share": f"{training / t['full_seconds']:.0%}",
        "longest_stage": max(stages.values(), key=lambda s: s["seconds"])["stage"],
        "light_stages": " and ".join(f"`{name}` {'peaks ' * (name == light[0])}at "
                                     f"{stages[name]['peak_mib']} MiB" for name in light),
        **{f"{against}_ratios": per_phase(ratios[against], "x") for against in THROUGHPUT_GOALS},
        **{f"{against}_goal": f"{goal:g}" for against, goal in THROUGHPUT_GOAL_MAX.items()},
        **{f"{against}_verdict": verdict_of(ratios[against], THROUGHPUT_GOAL_MAX[against])
           for against in THROUGHPUT_GOALS if against != "limit"},
        "rounds": len(next(iter(by_round.values()))),
        "limit_rounds": "; ".join(f"{', '.join(f'{r:.2f}' for r in rounds)} ({phase})"
                                  for phase, rounds in by_round.items()),
        "limit_verdict": verdict_of({phase: max(rounds) for phase, rounds in by_round.items()},
                                    THROUGHPUT_GOAL_MAX["limit"]),
        "limit_steadiness": steadiness(by_round), "pairing": pairing(speed["setup"]),
        "limit_over_old": per_phase(limit_over_old), **epoch_profile_figures()})


def steadiness(by_round):
    """What the rounds' spread says: the project cannot beat the limit on a steady machine."""
    lowest = min(min(rounds) for rounds in by_round.values())
    if lowest >= 1 - RATIO_TOLERANCE:
        return ""
    return (f" A round at {lowest:.2f} (the project faster than the limit, which does less "
            f"work) means the machine's speed changed within that round: other work on the "
            f"host (the table's heading gives the busy and steal shares while it ran). These "
            f"rounds measure the host as much as the code.")


def pairing(setup):
    """How throughput.py timed the project against the limit."""
    return (f" The two take turns on one model every {setup['block']} steps (each turn after a "
            f"few untimed steps), so a change in the host's speed falls on both alike.")


def epoch_profile_figures():
    """The fine-tuning epoch's input cost, and epoch / limit before and after issue 23."""
    profiles = {label: read_json(path).get("phases") for label in ("before", "after")
                if (path := Path(str(EPOCH_PROFILE).format(label))).is_file()}
    if "after" not in profiles:
        return {"input_alone": "(not measured)", "input_not_hidden": "(not measured)",
                "epoch_seconds": "(not measured)",
                "profile_change": not_measured(EPOCH_PROFILE, "epoch_profile.py --label after")}
    parts = profiles["after"]["finetune"]["parts_seconds"]
    ratios = {label: per_phase({PHASES[phase]: phases[phase]["epoch_over_limit"]
                                for phase in PHASES}, "x") for label, phases in profiles.items()}
    return {"input_alone": f"{parts['reading rows'] + parts['augmentation']:.1f} s",
            "input_not_hidden": f"{parts['input not hidden']:.1f} s",
            "epoch_seconds": f"{profiles['after']['finetune']['measured_seconds']['epoch']:.1f} s",
            "profile_change": (f"{ratios['before']} before, {ratios['after']} after"
                               if "before" in ratios else
                               f"{ratios['after']} (the code before it: not measured yet)")}


def scale_findings():
    """docs/speed.md's reading of the scale table: memory, time and the data stages' speed-up."""
    if not SCALE.is_file():
        return not_measured(SCALE, "scale.py")
    s = read_json(SCALE)
    runs = sorted(s["runs"], key=lambda r: r["multiple"])
    small, large = runs[0], runs[-1]
    n = f"{large['multiple'] / small['multiple']:g}x"
    mine = {r["multiple"]: {st["stage"]: st for st in r["stages"]} for r in runs}
    before = {r["multiple"]: {st["stage"]: st for st in r.get("before", [])} for r in runs}
    lo, hi = mine[small["multiple"]], mine[large["multiple"]]
    memory = {name: hi[name]["peak_mib"] / lo[name]["peak_mib"] for name in lo}
    time = {name: hi[name]["seconds"] / lo[name]["seconds"] for name in lo}
    total = sum(st["seconds"] for st in hi.values()) / sum(st["seconds"] for st in lo.values())
    growth = large["multiple"] / small["multiple"]
    slowest = max(time, key=time.get)
    bytes_per_image = s["image_size"] ** 2 * 3

    def data_work(stages, multiple):
        return stages[multiple]["validate"]["seconds"] + stages[multiple]["decode"]["seconds"]
    compared = [r["multiple"] for r in runs
                if {"validate", "decode"} <= before[r["multiple"]].keys()]
    speedup = {m: data_work(before, m) / data_work(mine, m) for m in compared}
    at = DATA_SPEEDUP_AT if DATA_SPEEDUP_AT in speedup else (compared[0] if compared else None)
    if at is None:
        data = "not measured: the scale run had no `--before` commit."
    else:
        was = before[at]
        data = fill("speed_scale_data.md", {
            "speedup": as_ratio(speedup[at]), "at": f"{at:g}x",
            "goal": f"{DATA_SPEEDUP_MIN:g}x",
            "verdict": verdicts.met(speedup[at] >= DATA_SPEEDUP_MIN),
            "others": ", ".join(f"{as_ratio(v)} at {m:g}x" for m, v in speedup.items()
                                if m != at),
            "before": s["before"],
            "decode_now": f"{mine[at]['decode']['seconds']:.1f} s",
            "decode_was": f"{was['decode']['seconds']:.1f} s",
            "validate": ", ".join(
                f"{mine[m]['validate']['seconds']:.1f} s against "
                f"{before[m]['validate']['seconds']:.1f} s at {m:g}x"
                for m in compared if m != small["multiple"]),
            "decode_before_memory": (f"{before[small['multiple']]['decode']['peak_mib']:,} → "
                                     f"{before[large['multiple']]['decode']['peak_mib']:,} MiB "
                                     f"at {n}")})
    return fill("speed_scale.md", {
        "multiples": ", ".join(f"{r['multiple']:g}x" for r in runs),
        "images": " / ".join(f"{r['images']:,}" for r in runs),
        "n": n, "memory_worst": as_ratio(max(memory.values())),
        "memory_goal": f"{SCALE_MEMORY_RATIO_MAX:g}x",
        "memory_verdict": verdicts.met(max(memory.values()) <= SCALE_MEMORY_RATIO_MAX),
        "memory": ", ".join(f"{name} {lo[name]['peak_mib']:,} → {hi[name]['peak_mib']:,} MiB"
                            for name in lo),
        "image_kb": f"{bytes_per_image / 1000:.0f} KB", "image_size": s["image_size"],
        "scratch": f"{large['images'] * bytes_per_image / 1e9:.1f} GB",
        "total_time": as_ratio(total), "slowest": slowest,
        "slowest_time": as_ratio(time[slowest]),
        "time_goal": f"{SCALE_TIME_OVER_LINEAR_MAX:g}x",
        "time_verdict": verdicts.met(time[slowest] <= SCALE_TIME_OVER_LINEAR_MAX * growth),
        "data": data})


TEXTS = {  # block: the file that holds it, and the function that words it from the results
    "RECIPE": (README, recipe),
    "TIMES": (README, times),
    "IN_SHORT": (RESULTS_DOC, in_short),
    "NOISE": (RESULTS_DOC, noise),
    "STUDY_SETUP": (RESULTS_DOC, study_setup),
    "SPEED_FINDINGS": (SPEED_DOC, speed_findings),
    "SCALE_FINDINGS": (SPEED_DOC, scale_findings),
}


def holders():
    """The files that hold blocks, in TABLES' then TEXTS' order."""
    return list(dict.fromkeys(path for path, _ in [*TABLES.values(), *TEXTS.values()]))


def blocks(path):
    """{block: its generated text} of every block the file at path holds."""
    out = {name: "\n".join(section(title, source) for title, source in sources)
           for name, (holder, sources) in TABLES.items() if holder == path}
    out.update({name: reflowed(word()) for name, (holder, word) in TEXTS.items()
                if holder == path})
    return out


def rewritten(path):
    """The text of the file at path with its blocks regenerated."""
    if not path.is_file():
        raise SystemExit(f"{path} not found: it holds the blocks "
                         f"{sorted(n for n, (h, _) in {**TABLES, **TEXTS}.items() if h == path)}")
    return updated(path.read_text(), path, blocks(path))


def updated(text, path, generated):
    """text (the file at path) with every marked block rewritten; a block the file lacks, or
    one it holds that nothing generates, stops the script naming both."""
    held = set(re.findall(r"<!-- ([A-Z_]+):BEGIN -->", text))
    if unknown := sorted(held - generated.keys()):
        raise SystemExit(f"{path}: no generator writes the blocks {unknown} here "
                         f"(scripts/readme_results.py: TABLES, TEXTS)")
    for name, block in generated.items():
        begin, end = f"<!-- {name}:BEGIN -->", f"<!-- {name}:END -->"
        if begin not in text or end not in text:
            raise SystemExit(f"{path}: markers {begin} / {end} not found")
        head, rest = text.split(begin, 1)
        text = head + "\n".join([begin, block, end]) + rest.split(end, 1)[1]
    return text


def write_or_check(files, command, description, argv=None):
    """main() of a script (command; description its --help) that regenerates files
    ({path: a function returning its text}): writes them, or with --check exits 1 naming
    those out of date. scripts/model_card.py's too."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 if {', '.join(map(str, files))} is out of date; "
                             f"write nothing")
    check = parser.parse_args(argv).check
    stale = {}
    for path, make_text in files.items():
        path = Path(path)
        text = make_text()
        if not (path.is_file() and path.read_text() == text):
            stale[path] = text
    if stale and check:
        raise SystemExit(f"out of date: {', '.join(map(str, stale))}; run {command}")
    for path, text in stale.items():
        write_text(path, text)


def main(argv=None):
    write_or_check({path: lambda path=path: rewritten(path) for path in holders()},
                   "python scripts/readme_results.py", __doc__, argv)


if __name__ == "__main__":
    main()
