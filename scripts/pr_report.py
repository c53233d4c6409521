"""Markdown report for a pull request: metric and param changes between two revisions, plus plots.

    python scripts/pr_report.py BASE_REV [HEAD_REV] [--plot PATH ...] [--out FILE]

HEAD_REV defaults to the workspace. Run it from the repository root. Metrics and params
come from `dvc metrics diff` / `dvc params diff` (only what changed); the plots are the
PNGs in the workspace, so run `dvc repro` (or `dvc checkout`) for HEAD first.
"""
import argparse
import os
import subprocess
import sys
from pathlib import Path

DEFAULT_PLOTS = [
    "reports/evaluate/learning_curves.png",
    "reports/evaluate/roc.png",
    "reports/evaluate/confusion_matrix.png",
    "reports/evaluate/misclassified.png",
    "reports/compare/compare.png",
]

def run(command, what):
    """(stdout, stderr) of command; SystemExit naming what failed and showing its stderr otherwise."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"pr_report: {what} failed (exit {result.returncode}):\n{result.stderr.strip()}")
    return result.stdout, result.stderr.strip()


def check_revision(rev):
    result = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"pr_report: git revision '{rev}' does not exist here "
                         f"(for a remote branch, fetch it first, e.g. checkout with fetch-depth: 0)")


def dvc(*args):
    return run([sys.executable, "-m", "dvc", *args], f"dvc {' '.join(args[:2])}")


def dvc_diff(kind, base_rev, head_rev):
    """Markdown of what `dvc <kind> diff` says changed, with any warnings it gave quoted below."""
    table, warnings = dvc(kind, "diff", "--md", base_rev, *([head_rev] if head_rev else []))
    rows = [line for line in table.splitlines() if line.strip()]
    text = table.strip() if len(rows) > 2 else f"No {kind} changed."  # header + separator only
    return "\n\n".join([text] + [f"> {line}" for line in warnings.splitlines()])


def image_markdown(plot, out_dir):
    """`![title](path)` with the path relative to where the report is written."""
    title = Path(plot).stem.replace("_", " ")
    return f"![{title}]({Path(os.path.relpath(plot, out_dir)).as_posix()})"


def report(base_rev, head_rev, plots, out_dir):
    sections = [f"# Pipeline report: `{base_rev}` → `{head_rev or 'workspace'}`"]
    for kind, title in (("metrics", "Metrics"), ("params", "Params")):
        sections.append(f"## {title}\n\n" + dvc_diff(kind, base_rev, head_rev))
    lines = [image_markdown(p, out_dir) if Path(p).is_file() else f"_{p}: not found, skipped._"
             for p in plots]
    if head_rev:
        lines.insert(0, f"_Images come from the workspace: they show `{head_rev}` "
                        "only if it is checked out and reproduced._")
    sections.append("## Plots\n\n" + ("\n\n".join(lines) if lines else "No plots given."))
    return "\n\n".join(sections) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base_rev", help="git revision to compare against, e.g. origin/main")
    parser.add_argument("head_rev", nargs="?", help="git revision to report on (default: the workspace)")
    parser.add_argument("--plot", action="append", metavar="PATH",
                        help="PNG to embed (repeatable; default: the usual reports/ plots)")
    parser.add_argument("--out", metavar="FILE", help="write the report here instead of stdout")
    args = parser.parse_args(argv)

    dvc("root")  # fails outside a DVC repository, where the diffs would just come out empty
    for rev in filter(None, (args.base_rev, args.head_rev)):
        check_revision(rev)
    out_dir = Path(args.out).resolve().parent if args.out else Path.cwd()
    text = report(args.base_rev, args.head_rev, args.plot or DEFAULT_PLOTS, out_dir)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
