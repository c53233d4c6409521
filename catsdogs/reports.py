"""Report helpers (no TensorFlow): whole-or-nothing files, Markdown templates, wall times."""
import argparse
import json
import string
from pathlib import Path

from catsdogs import paths
from catsdogs.files import replaced


def read_json(path):
    return json.loads(Path(path).read_text())


def write_text(path, text):
    with replaced(path) as partial:  # whole or not at all: a temporary file, then a rename
        partial.write_text(text)


def write_json(path, data):
    write_text(path, json.dumps(data, indent=2) + "\n")


class _NoneAsNan(string.Formatter):
    def format_field(self, value, format_spec):  # roc_auc is None with one class
        return super().format_field(float("nan") if value is None else value, format_spec)


def fill(template, **values):
    """A catsdogs/templates/ file through str.format: the numbers' formats are in the template."""
    text = (Path(__file__).resolve().parent / "templates" / template).read_text()
    return _NoneAsNan().format(text, **values)


def write_timing(name, timing):
    """Wall times and throughput: reports/timing/, outside the metrics (they change run to run)."""
    write_json(paths.TIMING / f"{paths.slug(name)}.json", timing)


def write_or_check(path, make_text, command, description, argv=None):
    """main() of a script (command; description its --help) that regenerates path: writes it,
    or with --check exits 1 if path is out of date."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 if {path} is out of date; write nothing")
    check, path = parser.parse_args(argv).check, Path(path)
    text = make_text()
    if path.is_file() and path.read_text() == text:
        return
    if check:
        raise SystemExit(f"{path} is out of date: run {command}")
    write_text(path, text)
