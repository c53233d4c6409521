"""Report helpers (no TensorFlow): whole-or-nothing files, Markdown templates, wall times."""
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

