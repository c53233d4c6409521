"""Wall time of the README's set-up commands on a fresh clone: `make pipeline`, then `make test`.

    KERAS_HOME=/path/to/keras_home python benchmarks/fresh_clone.py [--workdir DIR] [--keep]

Clones the current commit (HEAD; uncommitted changes are not part of it) into a temporary
folder, then runs there, one after the other, `make pipeline` (which creates .venv from
requirements.lock, then runs `dvc repro`) and `make test`, as a newcomer would, each timed
from start to end. Both use the Keras cache of the environment ($KERAS_HOME, else
~/.keras) for the dataset and the ImageNet weights. Stops at the first command that fails,
showing its last lines, and writes nothing then. Else writes
benchmarks/results/fresh_clone.json: {"machine", "make_pipeline_seconds",
"make_test_seconds", "date", "commit", "while_it_ran"} (the machine's busy and steal shares
and load over both commands), which scripts/readme_results.py quotes in the README.
Run it with nothing else on the machine: the README compares it with the other timed runs.
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pipeline_time  # this folder is on sys.path when a script here runs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "fresh_clone.json"
COMMANDS = (("make_pipeline_seconds", ["make", "pipeline"]),
            ("make_test_seconds", ["make", "test"]))


def machine():
    """'<cores> cores (<cpu>), <memory> GiB RAM'."""
    state = pipeline_time.machine()
    return f"{state['cores']} cores ({state['cpu']}), {state['memory_gib']} GiB RAM"


def timed(command, cwd, env, log):
    """Seconds that command took in cwd, its output written to log; stops the script if it
    fails (the clone and the log stay), showing the log's last lines."""
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run(command, cwd=cwd, env=env, stdout=out,
                              stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    if code != 0:
        tail = "".join(Path(log).read_text().splitlines(keepends=True)[-30:])
        sys.exit(f"`{' '.join(command)}` failed ({code}) in {cwd} after {seconds:.0f} s "
                 f"(log: {log}):\n{tail}")
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path,
                        help="where to clone (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the clone and the commands' logs (default: deleted)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                      check=True, capture_output=True, text=True).stdout.strip():
        print(f"note: uncommitted changes are not measured; the clone is {commit[:10]}")
    env = {key: value for key, value in os.environ.items()  # the clone's own .venv, not ours
           if key not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["DVC_NO_ANALYTICS"] = "1"
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fresh_clone_"))
    workdir.mkdir(parents=True, exist_ok=True)
    clone = workdir / "project"
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(ROOT), str(clone)],
                   check=True)
    subprocess.run(["git", "checkout", "--quiet", commit], cwd=clone, check=True)
    result = {"machine": machine()}
    start = pipeline_time.started()
    for key, command in COMMANDS:
        print(f"{' '.join(command)} ...", flush=True)
        result[key] = round(timed(command, clone, env, workdir / f"{command[-1]}.log"), 1)
        print(f"  {result[key] / 60:.1f} min", flush=True)
    result["date"] = datetime.date.today().isoformat()
    result["commit"] = commit
    result["while_it_ran"] = pipeline_time.while_it_ran(start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")
    if not args.keep:
        shutil.rmtree(clone)
        for log in workdir.glob("*.log"):
            log.unlink()
        if not args.workdir:
            workdir.rmdir()


if __name__ == "__main__":
    main()
