"""How wall time and peak memory grow with the data: the pipeline's data and training stages
at 1x, 4x and 16x the real dataset, on synthetic photo-like JPEGs.

    KERAS_HOME=/path/to/keras_home nice -n 10 python benchmarks/scale.py [--sizes 1 4 16]
        [--workdir DIR] [--keep] [--out benchmarks/results] [--note "what else ran"]
        [--before GIT_REF]

The real dataset (cats_and_dogs_filtered) holds 1,000 train and 500 validation images per
class, JPEGs of 190-500 px sides, 22 KB on average (65 MB in all). This script generates
N times that many (deterministically from --seed, on every core, once for the largest N: a
smaller N uses the first images of each class, hard-linked into its own source folder), then
for each N builds a project from this repo's catsdogs/, stages/, dvc.yaml and params.yaml
with fetch.url null, fetch.path the synthetic folder and one epoch per training phase
(ImageNet weights, the real image size and batch size), and runs the stages finetune needs
(read from dvc.yaml: fetch, validate, split, decode, pretrained, train_head, finetune
today), in dvc.yaml's order, each as dvc.yaml's command in its own process from the project
folder: wall time, and peak resident memory from the kernel (os.wait4: the largest process
of the stage's tree). DVC itself is not run, so its hashing and caching are not counted.
With --before REF, each N also runs the data stages (up to decode) of the code at git REF,
in a project of its own on the same images, right after this code's: the data stages'
speed-up measured in one run, on one machine state.

Writes <out>/scale.json and scale.md: stage x N seconds and MiB, and the ratios to the
smallest N. Generated data and projects go to --workdir (a temporary folder by default),
deleted at the end unless --keep.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import chdir
from pathlib import Path

import numpy as np
from dvc.repo import Repo
import yaml
from PIL import Image

from pipeline_time import machine, timed  # this folder is on sys.path when a script here runs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PROJECT_FILES = ["catsdogs", "stages", "dvc.yaml", "params.yaml"]
TARGET = "finetune"  # the stages run: this one and every stage it needs, from dvc.yaml
DATA_TARGET = "decode"  # with --before: this one and the stages it needs, old code and new
COMPARED = ["validate", "decode"]  # the data work whose speed-up --before reports
# The real dataset, per class: images in its train/ and validation/ folders.
REAL_COUNTS = {"train": 1000, "validation": 500}
CLASSES = {"cats": (150, 120, 100), "dogs": (110, 115, 130)}  # a mild mean tint per class
CHUNK = 250  # images per generation task


# ---- synthetic photos ------------------------------------------------------------------

def photo(rng, width, height, tint):
    """A photo-like RGB image: smooth random shapes at three scales plus sensor-like noise,
    so that JPEG compresses it about as much as a real photo of that size."""
    pixels = np.zeros((height, width, 3), np.float32)
    for cells, amplitude in ((3, 70.0), (10, 40.0), (40, 20.0)):
        grid = rng.normal(0, 1, (cells, max(2, round(cells * width / height)), 3))
        layer = Image.fromarray((grid * 40 + 128).clip(0, 255).astype(np.uint8))
        layer = np.asarray(layer.resize((width, height), Image.Resampling.BICUBIC), np.float32)
        pixels += (layer - 128) * (amplitude / 40)
    pixels += np.asarray(tint, np.float32) + rng.normal(0, 4, pixels.shape).astype(np.float32)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def photo_size(rng):
    """(width, height) as in the real dataset: the longer side usually 500 px, else 190-499;
    the shorter one 55-100% of it."""
    longer = 500 if rng.random() < 0.6 else int(rng.integers(190, 500))
    shorter = max(150, int(longer * rng.uniform(0.55, 1.0)))
    return (longer, shorter) if rng.random() < 0.7 else (shorter, longer)


def write_photos(task):
    """Write images [start, stop) of one split and class; each from its own seed."""
    folder, seed, split_id, class_id, class_name, start, stop = task
    tint = CLASSES[class_name]
    written = 0
    for i in range(start, stop):
        path = Path(folder) / f"{class_name[:-1]}.{i}.jpg"
        if path.exists():  # a kept --workdir: already generated
            continue
        rng = np.random.default_rng([seed, split_id, class_id, i])
        image = photo(rng, *photo_size(rng), tint)
        partial = path.with_suffix(".partial")
        image.save(partial, format="JPEG", quality=int(rng.integers(70, 91)))
        os.replace(partial, path)
        written += 1
    return written


def generate(pool, largest, seed):
    """pool/<split>/<class>/<class>.<i>.jpg for i < count(largest); a kept pool is reused
    (only missing images are made) if it was made from the same seed."""
    marker = pool / "seed"
    if pool.exists() and (not marker.exists() or marker.read_text() != str(seed)):
        shutil.rmtree(pool)
    pool.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(seed))
    tasks = []
    for split_id, (split, real) in enumerate(REAL_COUNTS.items()):
        for class_id, class_name in enumerate(CLASSES):
            folder = pool / split / class_name
            folder.mkdir(parents=True, exist_ok=True)
            count = count_for(real, largest)
            tasks += [(str(folder), seed, split_id, class_id, class_name, start,
                       min(start + CHUNK, count)) for start in range(0, count, CHUNK)]
    total = sum(task[6] - task[5] for task in tasks)
    start, done, written, shown = time.perf_counter(), 0, 0, 0
    with ProcessPoolExecutor(os.cpu_count()) as workers:
        for task, new in zip(tasks, workers.map(write_photos, tasks)):
            done += task[6] - task[5]
            written += new
            if done >= shown + total / 10 or done == total:
                shown = done
                print(f"  {done:,}/{total:,} images, {time.perf_counter() - start:.0f} s",
                      flush=True)
    seconds = time.perf_counter() - start
    megabytes = sum(f.stat().st_size for f in pool.rglob("*.jpg")) / 2**20
    print(f"  {total:,} images ({written:,} new), {megabytes:,.0f} MB, in {seconds:.0f} s")
    return {"images": total, "new": written, "megabytes": round(megabytes, 1),
            "seconds": round(seconds, 1)}


def count_for(real, multiple):
    return max(1, round(real * multiple))


def subset(pool, source, multiple):
    """source/: the first count_for(multiple) images of each split and class of the pool,
    hard-linked (fetch copies regular files; it refuses symbolic links)."""
    shutil.rmtree(source, ignore_errors=True)
    counts = {}
    for split, real in REAL_COUNTS.items():
        for class_name in CLASSES:
            folder = source / split / class_name
            folder.mkdir(parents=True)
            count = count_for(real, multiple)
            for i in range(count):
                name = f"{class_name[:-1]}.{i}.jpg"
                os.link(pool / split / class_name / name, folder / name)
            counts[f"{split}/{class_name}"] = count
    return counts


# ---- projects and stages ---------------------------------------------------------------

def make_project(project, source, smallest_class, source_mb, ref=None):
    """A copy of the project (this working tree's, or git ref's) reading source, one epoch
    per training phase."""
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    if ref:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, *PROJECT_FILES],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(project)], input=archive, check=True)
    else:
        for name in PROJECT_FILES:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, project / name,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(ROOT / name, project / name)
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["fetch"].update(url=None, path=str(source), sha256=None)
    # A safety limit (zip bombs), not a knob measured here: room for the largest sizes.
    raw["fetch"]["max_total_mb"] = max(raw["fetch"]["max_total_mb"], int(source_mb * 1.5) + 1)
    for phase in ("train_head", "finetune"):
        raw[phase]["epochs"] = 1
    # Only a check at a tiny fraction of the data needs this: the real one keeps the value.
    validate = raw["validate"]
    validate["min_images_per_class"] = min(validate["min_images_per_class"], smallest_class)
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    Repo.init(str(project), no_scm=True).close()  # for DVC's graph of the stages (commands)
    return raw


def commands(project, target, wanted=None):
    """{stage: its command, ${...} filled in}, in dvc.yaml's order: target and the stages whose
    outputs it needs, directly or not (or the wanted ones), as DVC's own graph has them."""
    with chdir(project), Repo() as repo:  # stage names are relative to the working folder
        if wanted is None:
            wanted = {stage.addressing for stage in repo.stage.collect(target, with_deps=True)}
        stages = [stage for stage in repo.index.stages if stage.addressing in wanted]
    for name in sorted(set(wanted) - {stage.addressing for stage in stages}):
        print(f"  note: dvc.yaml has no stage {name}: skipped")
    return {stage.addressing: " && ".join(stage.cmd) if isinstance(stage.cmd, list)
            else stage.cmd for stage in stages}


def run_stages(project, target, wanted=None):
    """Each stage's row (seconds, peak MiB, the load before it), run in dvc.yaml's order."""
    rows = []
    for stage, command in commands(project, target, wanted).items():
        print(f"  {stage} ...", end=" ", flush=True)
        load = os.getloadavg()[0]
        seconds, peak, _ = timed(command, project, project / f"{stage}.log")
        rows.append({"stage": stage, "seconds": round(seconds, 1), "peak_mib": round(peak),
                     "load_1min_before": round(load, 2)})
        print(f"{seconds:.1f} s, peak {peak:.0f} MiB", flush=True)
    return rows


# ---- report ----------------------------------------------------------------------------

def label(multiple):
    return f"{multiple:g}x"


def table(report):
    sizes = [run["multiple"] for run in report["runs"]]
    base = sizes[0]
    ratios = sizes[1:]
    head = ["stage"] + [f"{label(m)} s" for m in sizes] + [f"{label(m)} MiB" for m in sizes]
    head += [f"time {label(m)}/{label(base)}" for m in ratios]
    head += [f"memory {label(m)}/{label(base)}" for m in ratios]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    by_size = {run["multiple"]: {row["stage"]: row for row in run["stages"]}
               for run in report["runs"]}
    names = list(dict.fromkeys(row["stage"] for run in report["runs"] for row in run["stages"]))

    for m in sizes:  # the whole run: sum of the times, largest peak
        rows = by_size[m].values()
        by_size[m]["total"] = {"seconds": sum(r["seconds"] for r in rows),
                               "peak_mib": max(r["peak_mib"] for r in rows)}

    def cell(m, name, key, fmt):
        row = by_size[m].get(name)
        return fmt.format(row[key]) if row else "–"

    def ratio(m, name, key):
        row, first = by_size[m].get(name), by_size[base].get(name)
        return f"{row[key] / first[key]:.1f}" if row and first and first[key] else "–"

    for name in names + ["total"]:
        cells = [f"**{name}**" if name == "total" else name]
        cells += [cell(m, name, "seconds", "{:.0f}" if name == "total" else "{:.1f}")
                  for m in sizes]
        cells += [cell(m, name, "peak_mib", "{:.0f}") for m in sizes]
        cells += [ratio(m, name, "seconds") for m in ratios]
        cells += [ratio(m, name, "peak_mib") for m in ratios]
        lines.append("| " + " | ".join(cells) + " |")
    counts = ", ".join(f"{label(run['multiple'])}: {run['images']:,} images "
                       f"({run['source_mb']:,.0f} MB)" for run in report["runs"])
    m = report["machine"]
    notes = [
        "",
        f"Synthetic JPEGs, N times the real dataset's 1,000 + 1,000 train and 500 + 500 "
        f"validation images ({counts}). One epoch of each training phase "
        f"(train_head, finetune) at model.image_size {report['image_size']}, batch "
        f"{report['batch_size']}, ImageNet weights; each stage its own process, run as "
        f"dvc.yaml's command without DVC. Peak memory: the largest process of the stage "
        f"(os.wait4). total: sum of the times, largest peak."
        + (" The older code's data stages run right after this code's, on the same images."
           if report.get("before") else ""),
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB RAM; load average "
        f"{report['load_before']} before, {report['load_after']} after."
        + (f" {report['note']}" if report.get("note") else ""),
    ]
    return "\n".join(lines + notes + speedup(report)) + "\n"


def speedup(report):
    """With --before: the compared stages' seconds and peak MiB, old code and this code,
    and the speed-up of their sum."""
    runs = [run for run in report["runs"] if "before" in run]
    if not runs:
        return []
    lines = ["", f"Data work against `{report['before']}` (same images, same run): "
             f"{' + '.join(COMPARED)}, seconds (peak MiB).", "",
             f"| N | images | {report['before']} | this code | speed-up |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for run in runs:
        cells = []
        for rows in (run["before"], run["stages"]):
            chosen = [row for row in rows if row["stage"] in COMPARED]
            cells.append((sum(row["seconds"] for row in chosen),
                          " + ".join(f"{row['seconds']:.1f} ({row['peak_mib']})"
                                     for row in chosen)))
        (old, old_text), (new, new_text) = cells
        lines.append(f"| {label(run['multiple'])} | {run['images']:,} | {old_text} = "
                     f"{old:.1f} | {new_text} = {new:.1f} | {old / new:.2f} |")
    return lines


def run_multiple(workdir, multiple, report, args):
    """The stages on `multiple` times the real dataset (and --before's data stages)."""
    source = workdir / "sources" / label(multiple)
    counts = subset(workdir / "pool", source, multiple)
    images = sum(counts.values())
    source_mb = sum(f.stat().st_size for f in source.rglob("*.jpg")) / 2**20
    project = workdir / "projects" / label(multiple)
    before = workdir / "projects" / f"{label(multiple)}-before"  # with --before
    raw = make_project(project, source, min(counts.values()), source_mb)
    report.update(image_size=raw["model"]["image_size"], batch_size=raw["train"]["batch_size"])
    print(f"{label(multiple)}: {images:,} images, {source_mb:,.0f} MB, project {project}",
          flush=True)
    run = {"multiple": multiple, "images": images, "per_class": counts,
           "source_mb": round(source_mb, 1), "stages": run_stages(project, TARGET, args.stages)}
    if args.before:
        make_project(before, source, min(counts.values()), source_mb, args.before)
        print(f"{label(multiple)}, the data stages of {args.before}:", flush=True)
        run["before"] = run_stages(before, DATA_TARGET)
    if not args.keep:  # its data/ and models/ can be GBs
        for folder in (project, before):
            shutil.rmtree(folder, ignore_errors=True)
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 4, 16],
                        help="multiples of the real dataset (default 1 4 16)")
    parser.add_argument("--workdir", type=Path, help="generated data and projects "
                        "(default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep --workdir's contents")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help=f"where scale.json and scale.md go (default {RESULTS})")
    parser.add_argument("--stages", nargs="+", help=f"stages to run (default: {TARGET} and "
                        f"the stages it needs)")
    parser.add_argument("--seed", type=int, default=0, help="of the synthetic images")
    parser.add_argument("--note", default="", help="what else ran on the machine, for the table")
    parser.add_argument("--before", metavar="GIT_REF", help="also run the data stages of this "
                        "commit's code, for their speed-up (e.g. the last commit before a change)")
    args = parser.parse_args()
    sizes = sorted(set(args.sizes))
    if sizes[0] <= 0:
        parser.error("--sizes must be positive")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    # dvc.yaml's commands call `python`: make it this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    if not os.environ.get("KERAS_HOME"):
        print("warning: KERAS_HOME is not set: the ImageNet weights come from ~/.keras")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="catsdogs-scale-"))
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # Without --keep, what this script made goes at the end; a given --workdir itself stays.
    made = [workdir] if args.workdir is None else [workdir / n for n in ("pool", "sources",
                                                                         "projects")]
    print(f"workdir {workdir}")
    if args.before and subprocess.run(  # a bad ref stops here, not after the generation
            ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet",
             f"{args.before}^{{commit}}"], stdout=subprocess.DEVNULL).returncode != 0:
        parser.error(f"--before {args.before}: not a commit of {ROOT}")
    report = {"sizes": sizes, "seed": args.seed, "machine": machine(), "note": args.note,
              "before": args.before,
              "load_before": [round(x, 2) for x in os.getloadavg()], "runs": []}
    try:
        print(f"generating {label(sizes[-1])} the real dataset ...", flush=True)
        report["generation"] = generate(workdir / "pool", sizes[-1], args.seed)
        for multiple in sizes:
            report["runs"].append(run_multiple(workdir, multiple, report, args))
    finally:
        if not args.keep:
            for path in made:
                shutil.rmtree(path, ignore_errors=True)
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = table(report)
    (args.out / "scale.md").write_text(markdown)
    print(markdown)
    print(f"wrote {args.out / 'scale.json'} and {args.out / 'scale.md'}")


if __name__ == "__main__":
    main()
