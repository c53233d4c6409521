"""Copy the committed result tables into README.md, between the RESULTS and SPEED markers.

    python scripts/readme_results.py          # rewrite README.md
    python scripts/readme_results.py --check  # exit 1 if README.md is out of date

The tables are the pipeline's own reports; the README only quotes them.
"""
import sys
from pathlib import Path

README = Path("README.md")
BLOCKS = {
    "RESULTS": [("Before / after", "reports/evaluate/summary.md"),
                ("Backbones, same two-phase recipe", "reports/compare/compare.md")],
    "SPEED": [("Wall time and peak memory per stage, full default run",
               "benchmarks/results/pipeline_time.md"),
              ("Training time per backbone, last full run", "benchmarks/results/training_time.md"),
              ("Training throughput by input pipeline", "benchmarks/results/throughput.md")],
}


def block(name, sources):
    parts = [f"<!-- {name}:BEGIN -->"]
    for title, path in sources:
        parts += [f"#### {title}", f"_From `{path}`._", "", Path(path).read_text().strip(), ""]
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
