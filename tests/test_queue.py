"""Experiments in parallel: `dvc exp run --queue` then `dvc queue start -j 2`, on tiny data:
a training variant (train_head's learning rate) beside a comparison variant (one more
backbone in compare.backbones).

The workers inherit the environment of `dvc queue start`, so TF_NUM_INTRAOP_THREADS and
TF_NUM_INTEROP_THREADS set there cap each worker's TensorFlow thread pools (TensorFlow reads
them at start-up) and two workers do not oversubscribe the cores.
"""
import json
import subprocess
import sys
import time

import pytest

from conftest import dvc, project_env, run

pytestmark = pytest.mark.slow

DVC = [sys.executable, "-m", "dvc"]

THREADS_PER_WORKER = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
                      "OMP_NUM_THREADS": "1"}
# name: (target, -S override); the session's project compares efficientnet_b0 alone.
VARIANTS = {"lr-high": ("train_head", "train_head.learning_rate=0.01"),
            "with-mobilenet": ("compare_report", "compare.backbones=[efficientnet_b0,mobilenet]")}
TIMEOUT = 300  # seconds for both queued experiments, from `dvc queue start`


def queue_tasks(project):
    """({task id: status}, the output) from `dvc queue status`."""
    result = run([*DVC, "queue", "status"], project, check=False)
    out = result.stdout + result.stderr
    tasks = {}
    for line in out.splitlines():
        fields = line.split()
        status = fields[-1] if fields else ""
        if status in ("Queued", "Running", "Success", "Failed"):
            tasks[fields[0]] = status
    return tasks, out


def start_workers(project, jobs):
    """`dvc queue start -j jobs`. Its output goes to a file, not a pipe: the workers it
    leaves running keep its stdout and stderr open, so reading a pipe to its end (as
    subprocess.run(capture_output=True) does) would wait for them to finish."""
    log = project.parent / "queue_start.log"
    with open(log, "w") as out:
        subprocess.run([*DVC, "queue", "start", "-j", str(jobs)], cwd=project,
                       env=project_env(project), stdout=out, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, check=True, timeout=120)
    return log.read_text()


def experiments(shown):
    """{name: (params, metrics)} of the experiments in `dvc exp show --json` output."""
    found = {}
    for entry in shown:
        for experiment in entry.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                data = rev.get("data") or {}
                params = data.get("params", {}).get("params.yaml", {}).get("data", {})
                metrics = {path: file.get("data") for path, file in
                           (data.get("metrics") or {}).items()}
                found[rev.get("name") or experiment.get("name")] = (params, metrics)
    return found


def test_queued_experiments_run_two_at_a_time(reproduced_copy, monkeypatch):
    # What both variants share ran once, in the session's reproduced project (committed; this
    # is a copy): the queued runs check it out from the cache and rerun only what changed.
    project, setup = reproduced_copy, time.monotonic()
    assert "up to date" in dvc(project, "status", "compare_report")
    for name, (target, override) in VARIANTS.items():
        dvc(project, "exp", "run", "--queue", "--name", name, target, "-S", override)

    for variable, value in THREADS_PER_WORKER.items():  # inherited by the queue workers
        monkeypatch.setenv(variable, value)
    start, both_running, seen, history = time.monotonic(), False, "", []
    try:
        started = start_workers(project, 2)
        assert "Started '2'" in started, started
        while time.monotonic() - start < TIMEOUT:
            tasks, seen = queue_tasks(project)
            history.append(f"{time.monotonic() - start:.0f} s: {tasks}")
            both_running |= list(tasks.values()).count("Running") == 2
            if len(tasks) == len(VARIANTS) and all(s in ("Success", "Failed")
                                                   for s in tasks.values()):
                break
            time.sleep(2)
        else:
            raise AssertionError(f"queue not done after {TIMEOUT} s:\n{seen}")
    finally:
        run([*DVC, "queue", "stop", "--kill"], project, check=False)
    elapsed = time.monotonic() - start
    logs = {task: run([*DVC, "queue", "logs", task], project, check=False).stdout[-3000:]
            for task in tasks}
    assert set(tasks.values()) == {"Success"}, f"{seen}\n{logs}"
    assert both_running, "the two experiments never ran at once:\n" + "\n".join(history)

    shown = experiments(json.loads(dvc(project, "exp", "show", "--json")))
    assert set(VARIANTS) <= set(shown), shown.keys()
    params, by_file = shown["lr-high"]
    assert params["train_head"]["learning_rate"] == 0.01
    head = by_file["reports/train_head/metrics.json"]
    assert {"train", "eval"} <= set(head or {}), by_file  # dvclive's summary
    params, by_file = shown["with-mobilenet"]
    assert params["compare"]["backbones"] == ["efficientnet_b0", "mobilenet"]
    compared = by_file["reports/compare/metrics.json"]
    assert {"efficientnet_b0", "mobilenet"} <= set(compared or {}), by_file
    # Each variant changed what it targets, and only that: the comparison kept train_head's
    # metrics.
    committed = json.loads((project / "reports/compare/metrics.json").read_text())
    assert "mobilenet" not in committed
    assert shown["with-mobilenet"][1]["reports/train_head/metrics.json"] == json.loads(
        (project / "reports/train_head/metrics.json").read_text())
    assert head != shown["with-mobilenet"][1]["reports/train_head/metrics.json"]
    print("\n".join(history))
    print(f"queueing {start - setup:.0f} s; two queued experiments {elapsed:.0f} s "
          f"(2 workers, 1 TF thread each)")
