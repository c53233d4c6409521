"""Markdown report for a pull request: what changed between two revisions, and only that.

    python scripts/pr_report.py BASE_REV [HEAD_REV] [--plot PATH ...] [--curve ID ...] [--out FILE]

HEAD_REV defaults to the workspace. Run it from the repository root. Metrics and params
come from `dvc metrics diff` / `dvc params diff`; the learning curves from
`dvc plots diff --json` (top-level plots of dvc.yaml), drawn as PNGs into a folder beside
the report (base dashed, head solid) when they differ; the stages' PNGs are embedded when
they differ from BASE_REV's. Those come from the workspace, so run `dvc repro` (or
`dvc checkout`) for HEAD first.
"""
import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

DEFAULT_PLOTS = [
    "reports/evaluate/learning_curves.png",
    "reports/evaluate/roc.png",
    "reports/evaluate/confusion_matrix.png",
    "reports/evaluate/misclassified.png",
    "reports/evaluate/calibration.png",
    "reports/compare/compare.png",
]
# dvc.yaml's top-level plots of the dvclive TSVs: one line per file, x and y named there.
DEFAULT_CURVES = ["Accuracy, baseline vs frozen head", "Loss, baseline vs frozen head",
                  "Accuracy, fine-tuning", "Loss, fine-tuning"]

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


def git_bytes(rev, path):
    """path as committed at rev, or None where rev has no such file."""
    result = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True)
    return result.stdout if result.returncode == 0 else None


def plots_section(base_rev, plots, out_dir):
    """The PNGs that differ from base_rev's (or are new), a line naming the unchanged ones."""
    lines, unchanged = [], []
    for plot in plots:
        if not Path(plot).is_file():
            lines.append(f"_{plot}: not found, skipped._")
        elif Path(plot).read_bytes() == git_bytes(base_rev, plot):
            unchanged.append(f"`{plot}`")
        else:
            lines.append(image_markdown(plot, out_dir))
    if unchanged:
        lines.append(f"_Unchanged: {', '.join(unchanged)}._")
    return "\n\n".join(lines) if lines else "No plots given."


def curve_lines(entry):
    """(x field, y field, {rev: {line: sorted [(x, y)]}}) of one `dvc plots diff --json` entry."""
    content = entry["content"]
    x = content["encoding"]["x"]["field"]
    y, lines = None, {}
    for row in content["data"]["values"]:
        y = y or next(k for k in row if k not in (x, "rev", "filename"))
        line = re.sub(rf"^reports/|/plots/metrics|(/{re.escape(y)})?\.tsv$", "",
                      row.get("filename", y))  # e.g. baseline/train, finetune/eval
        lines.setdefault(row["rev"], {}).setdefault(line, []).append(
            (float(row[x]), float(row[y])))
    return x, y, {rev: {line: sorted(points) for line, points in by_line.items()}
                  for rev, by_line in lines.items()}


def draw_curves(path, title, x, y, styles, by_rev):
    """One PNG: a colour per line (train, eval), dashed for base and solid for head."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = sorted({line for by_line in by_rev.values() for line in by_line})
    fig, ax = plt.subplots(figsize=(7, 4))
    for rev, (label, linestyle, marker) in styles.items():
        for line, points in sorted(by_rev.get(rev, {}).items()):
            ax.plot(*zip(*points), linestyle=linestyle, marker=marker, lw=2, ms=9,
                    mfc="none" if marker == "o" else None,  # base's open rings show under head
                    color=f"C{names.index(line)}", label=f"{line}, {label}")
    ax.set(title=title, xlabel=x, ylabel=y)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def curves_section(base_rev, head_rev, curves, image_dir, out_dir):
    """The learning curves that differ between the two revisions, drawn; the rest named."""
    revs = [base_rev] + ([head_rev] if head_rev else [])
    output, _ = dvc("plots", "diff", "--json", "--targets", *curves, "--", *revs)
    result = json.loads(output)
    head = head_rev or "workspace"
    styles = {base_rev: (f"base {base_rev}", "--", "o"), head: (f"head {head}", "-", ".")}
    lines, unchanged = [], []
    for curve in curves:
        entries = [e for e in result.get("data", {}).get(curve, []) if e["type"] == "vega"]
        if not entries:
            lines.append(f"_{curve}: no data at either revision._")
            continue
        x, y, by_rev = curve_lines(entries[0])
        if by_rev.get(base_rev) == by_rev.get(head):
            unchanged.append(f"`{curve}`")
            continue
        path = image_dir / (re.sub(r"[^a-z0-9]+", "_", curve.lower()).strip("_") + ".png")
        draw_curves(path, curve, x, y, styles, by_rev)
        lines.append(image_markdown(path, out_dir))
    if unchanged:
        lines.append(f"_Unchanged: {', '.join(unchanged)}._")
    lines += [f"> dvc plots diff, {e.get('rev', '?')}: {e.get('msg', e)}"
              for e in result.get("errors") or []]
    return "\n\n".join(lines) if lines else "No learning curves given."


def report(base_rev, head_rev, plots, out_dir, curves=(), image_dir=None):
    sections = [f"# Pipeline report: `{base_rev}` → `{head_rev or 'workspace'}`"]
    for kind, title in (("metrics", "Metrics"), ("params", "Params")):
        sections.append(f"## {title}\n\n" + dvc_diff(kind, base_rev, head_rev))
    if curves:
        sections.append("## Learning curves\n\n"
                        + curves_section(base_rev, head_rev, curves, image_dir, out_dir))
    plot_text = plots_section(base_rev, plots, out_dir)
    if head_rev:
        plot_text = (f"_Images come from the workspace: they show `{head_rev}` "
                     "only if it is checked out and reproduced._\n\n" + plot_text)
    sections.append("## Plots\n\n" + plot_text)
    return "\n\n".join(sections) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base_rev", help="git revision to compare against, e.g. origin/main")
    parser.add_argument("head_rev", nargs="?", help="git revision to report on (default: the workspace)")
    parser.add_argument("--plot", action="append", metavar="PATH",
                        help="PNG to embed (repeatable; default: the usual reports/ plots)")
    parser.add_argument("--curve", action="append", metavar="ID",
                        help="dvc.yaml plot id to diff and draw (repeatable; default: the "
                             "learning curves; --curve '' for none)")
    parser.add_argument("--out", metavar="FILE", help="write the report here instead of stdout")
    parser.add_argument("--images", metavar="DIR",
                        help="where the drawn curves go (default: pr_report_plots/ beside the report)")
    args = parser.parse_args(argv)

    dvc("root")  # fails outside a DVC repository, where the diffs would just come out empty
    for rev in filter(None, (args.base_rev, args.head_rev)):
        check_revision(rev)
    out_dir = Path(args.out).resolve().parent if args.out else Path.cwd()
    curves = [c for c in (args.curve or DEFAULT_CURVES) if c]
    image_dir = Path(args.images).resolve() if args.images else out_dir / "pr_report_plots"
    text = report(args.base_rev, args.head_rev, args.plot or DEFAULT_PLOTS, out_dir,
                  curves, image_dir)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
