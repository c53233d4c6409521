"""The README and docs/ quote the committed reports; they must not drift from them, hold no
figure typed by hand, link only to what exists, and the README stays a five-minute read."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "readme_results.py"
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
README_LINES_MAX = 200

GENERATED = re.compile(r"<!-- ([A-Z_]+):BEGIN -->.*?<!-- \1:END -->", re.S)
CODE_BLOCK = re.compile(r"^```.*?^```", re.S | re.M)
NUMBER = r"\d[\d,]*(?:\.\d+)?"
UNIT = (r"(?:ms|s|sec|seconds?|min|minutes?|h|hours?|days?|[KMGT]i?B|px|img/s|images?|"
        r"photos?|epochs?|cores?|layers?|steps?|workers?|threads?|replicas?|files?|members?)")
FIGURE = re.compile(rf"""
    {NUMBER}\s?%                              # a share: 98%, 12.5 %
  | \b{NUMBER}\s?°                            # an angle: 20°
  | \b{NUMBER}\s?{UNIT}\b                     # with a unit: 15.6 min, 83 MiB, 3,000 images
  | \b{NUMBER}\s?x\b                          # a ratio: 2x, 1.24x, 160 x 160
  | \b\d+(?:\.\d+)?e[-+]?\d+\b                # scientific: 1e-5
  | \b\d+\.\d+\b                              # any other decimal: 0.93
  | \b\d{{1,2}}:\d{{2}}\b                     # a time of day or a duration: 12:05
""", re.X)
# Figures the docs state as references: the figure, and the file it is quoted from. The line
# that holds the figure must name that file, and the file must hold the figure.
REFERENCES = {  # figure: (its source, where in it: a regex)
    "3.11": ("requirements.lock", r"^# .*Python 3\.11\b"),  # the lock's Python (its header)
    "3.67": ("requirements.lock", r"^dvc==3\.67\."),  # DVC's version: its run-cache behaviour
    "3.15": ("requirements.lock", r"^keras==3\.15\."),  # Keras' version: no multi-worker fit
    "1.2": ("catsdogs/params.py", r"read as YAML 1\.2\b"),  # how params.read reads YAML
}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_readme_results_match_the_committed_reports():
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_help_prints_usage_and_writes_nothing(tmp_path):
    stale = "# stale\n<!-- STORY:BEGIN -->\nold\n<!-- STORY:END -->\n"
    (tmp_path / "README.md").write_text(stale)
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0 and "--check" in result.stdout, result.stderr
    assert (tmp_path / "README.md").read_text() == stale


def test_readme_has_the_two_setup_commands_and_ci_runs_the_test_one():
    readme = README.read_text()
    assert "make pipeline" in readme and "make test" in readme
    assert readme.index("make pipeline") < readme.index("make test")
    assert "make test" in (ROOT / ".ci/run").read_text()


def test_readme_is_a_five_minute_read():
    lines = len(README.read_text().splitlines())
    assert lines <= README_LINES_MAX, f"README.md: {lines} lines, at most {README_LINES_MAX}"


def blanked(pattern, text):
    """text with every match of pattern replaced by as many empty lines: line numbers stay."""
    return pattern.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def prose(text):
    """What a person typed: no generated block, code block, code span or link target."""
    text = blanked(CODE_BLOCK, blanked(GENERATED, text))
    text = re.sub(r"`[^`\n]*`", "", text)
    text = re.sub(r"\]\([^)\s]*\)", "]", text)
    return re.sub(r"https?://\S+", "", text)


def hand_typed(text):
    """[(line number, figure, line)] of the figures in text's prose that are not references
    naming their source on the same line."""
    found = []
    for number, (typed, line) in enumerate(zip(prose(text).splitlines(), text.splitlines()), 1):
        for match in FIGURE.finditer(typed):
            figure = match.group(0)
            source, _ = REFERENCES.get(figure, (None, None))
            if source is None or source not in line:
                found.append((number, figure, line.strip()))
    return found


def test_the_figure_scan_finds_hand_typed_figures():
    text = ("A full run took 15.6 min; split peaks at 83 MiB.\n"
            "EfficientNetB0 is 2x faster, at 98% and 0.93, lr 1e-5, 3,000 images.\n"
            "<!-- X:BEGIN -->\ngenerated 43.3 min\n<!-- X:END -->\n"
            "```\nmake pipeline  # 12 min\n```\n"
            "Run `--steps 50 s` as [issue 4](#issue-4).\n"
            "DVC 3.67 keeps it (`requirements.lock`).\nKeras 3.15 does not.\n")
    assert [(n, figure) for n, figure, _ in hand_typed(text)] == [
        (1, "15.6 min"), (1, "83 MiB"), (2, "2x"), (2, "98%"), (2, "0.93"), (2, "1e-5"),
        (2, "3,000 images"), (11, "3.15")]


def test_references_are_in_their_sources():
    for figure, (source, where) in REFERENCES.items():
        assert re.search(where, (ROOT / source).read_text(), re.M), f"{figure}: not in {source}"


def test_no_figure_is_typed_by_hand_in_readme_and_docs():
    """Every figure outside the generated blocks (scripts/readme_results.py writes them from
    the committed results) is a reference naming its source; else it would drift."""
    found = [f"{path.relative_to(ROOT)}:{number}: {figure!r} in {line!r}"
             for path in DOCS for number, figure, line in hand_typed(path.read_text())]
    assert found == [], ("figures typed by hand (generate them in scripts/readme_results.py, "
                         "or state them as references in REFERENCES):\n" + "\n".join(found))


def anchors(text):
    """GitHub's anchors of a markdown file's headings."""
    headings = re.findall(r"^#+\s+(.*?)\s*$", blanked(CODE_BLOCK, text), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_every_relative_link_points_to_an_existing_file_and_heading():
    broken = []
    for path in [*DOCS, ROOT / "MODEL_CARD.md"]:
        text = path.read_text()
        for number, line in enumerate(blanked(CODE_BLOCK, text).splitlines(), 1):
            for target in LINK.findall(line):
                if re.match(r"[a-z]+:", target):  # https:, mailto:
                    continue
                file, _, anchor = target.partition("#")
                linked = (path.parent / file).resolve() if file else path
                if not linked.exists():
                    broken.append(f"{path.relative_to(ROOT)}:{number}: {target} (no such file)")
                elif anchor and linked.suffix == ".md" and anchor not in anchors(
                        linked.read_text()):
                    broken.append(f"{path.relative_to(ROOT)}:{number}: {target} (no such heading)")
    assert broken == [], "\n".join(broken)


def test_readme_links_every_doc():
    readme = README.read_text()
    for path in DOCS[1:]:
        assert f"]({path.relative_to(ROOT)}" in readme, f"README.md does not link {path}"
