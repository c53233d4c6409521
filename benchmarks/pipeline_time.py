"""Wall time and peak memory of every stage of a full `dvc repro`, then of a no-op one.

    KERAS_HOME=/path/to/keras_home python benchmarks/pipeline_time.py

Reruns every stage, in dvc.yaml order, with `dvc repro --force --single-item <stage>`: a
full forced run, one stage per process so each is timed and its peak resident memory
read from the kernel (os.wait4 reports the largest process of the stage's tree). Then
times `dvc repro` with everything up to date. Writes benchmarks/results/pipeline_time.json
and pipeline_time.md (the README's table). Leaves dvc.lock and the reports of that run.
"""
import argparse
import contextlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
DVC = [sys.executable, "-m", "dvc"]


def timed(command, cwd=None, log=None):
    """(seconds, peak RSS in MiB, output) of a command: a list, or a shell line. Its output
    is returned, or with log (a path) written there. Stops the script if it fails, showing
    the output's last lines."""
    start = time.perf_counter()
    with open(log, "w") if log else contextlib.nullcontext() as out:
        process = subprocess.Popen(command, shell=isinstance(command, str), cwd=cwd,
                                   stdout=out or subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        output = "" if log else process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)  # usage: the largest process of its tree
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        output = Path(log).read_text() if log else output
        tail = "".join(output.splitlines(keepends=True)[-30:])
        shown = command if isinstance(command, str) else shlex.join(command)
        sys.exit(f"`{shown}` failed ({code}){f' in {cwd}' if cwd else ''}:\n{tail}")
    return seconds, usage.ru_maxrss / 1024, output  # Linux reports KiB


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    memory = next((int(line.split()[1]) / 2**20 for line in open("/proc/meminfo")
                   if line.startswith("MemTotal")), None)
    return {"cores": os.cpu_count(), "cpu": cpu,
            "memory_gib": round(memory, 1) if memory else None,
            "python": platform.python_version(), "platform": platform.platform()}


def cpu_times():
    """The machine's CPU time so far (/proc/stat): user ... steal, in clock ticks."""
    return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]


def busy_and_stolen(before):
    """Shares of the CPU time since cpu_times() gave `before` that was busy, and that the
    host took from this virtual machine (steal): other work on the machine shows in them."""
    spent = [now - then for now, then in zip(cpu_times(), before)]
    idle = spent[3] + spent[4]  # idle, iowait
    return {"busy_share": round(1 - idle / sum(spent), 3),
            "steal_share": round(spent[7] / sum(spent), 3)}


def started():
    """The machine's counters as a measurement starts: (cpu_times(), os.getloadavg())."""
    return cpu_times(), os.getloadavg()


def while_it_ran(start):
    """The machine's state since started() gave `start`: busy and steal shares, load before
    and after."""
    before, load_before = start
    return {**busy_and_stolen(before), "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()]}


def main(argv=None):
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    # The stages run `python`: make it this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    stages = subprocess.run(DVC + ["stage", "list", "--name-only"], check=True,
                            capture_output=True, text=True).stdout.split()
    rows, start = [], started()
    for stage in stages:
        print(f"{stage} ...", flush=True)
        seconds, peak_mib, _ = timed(DVC + ["repro", "--force", "--single-item", stage])
        rows.append({"stage": stage, "seconds": round(seconds, 1), "peak_mib": round(peak_mib)})
        print(f"  {seconds:.0f} s, peak {peak_mib:.0f} MiB", flush=True)
    noop_seconds, _, output = timed(DVC + ["repro"])
    if "didn't change" not in output and "up to date" not in output.lower():
        print(f"warning: the no-op repro did something:\n{output}")
    total = sum(r["seconds"] for r in rows)
    # The state of the machine while it ran: its CPU, the load before, what it used and lost.
    state = {**machine(), **while_it_ran(start)}
    report = {"stages": rows, "full_seconds": round(total, 1),
              "noop_seconds": round(noop_seconds, 1), "cores": os.cpu_count(), "machine": state}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline_time.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["| stage | wall time (s) | peak memory (MiB) |", "| --- | ---: | ---: |"]
    lines += [f"| {r['stage']} | {r['seconds']:.0f} | {r['peak_mib']} |" for r in rows]
    lines += [f"| **full `dvc repro`** | **{total:.0f}** ({total / 60:.1f} min) | |",
              f"| no-op `dvc repro` (all up to date) | {noop_seconds:.1f} | |"]
    (RESULTS / "pipeline_time.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
