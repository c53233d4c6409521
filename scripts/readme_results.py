"""Copy the committed result tables into README.md, between the RESULTS markers.

    python scripts/readme_results.py          # rewrite README.md
    python scripts/readme_results.py --check  # exit 1 if README.md is out of date

The tables are the pipeline's own reports; the README only quotes them.
"""
import sys
from pathlib import Path

README = Path("README.md")
BEGIN, END = "<!-- RESULTS:BEGIN -->", "<!-- RESULTS:END -->"
SOURCES = [("Before / after", "reports/evaluate/summary.md"),
           ("Backbones, same two-phase recipe", "reports/compare/compare.md")]


def results_block():
    parts = [BEGIN]
    for title, path in SOURCES:
        parts += [f"#### {title}", f"_From `{path}`._", "", Path(path).read_text().strip(), ""]
    parts.append(END)
    return "\n".join(parts)


def main():
    text = README.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{README}: markers {BEGIN} / {END} not found")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    updated = head + results_block() + tail
    if "--check" in sys.argv:
        if updated != text:
            raise SystemExit(f"{README} results are out of date: run python scripts/readme_results.py")
        return
    README.write_text(updated)


if __name__ == "__main__":
    main()
