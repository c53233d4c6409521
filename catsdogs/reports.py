"""Small reporting helpers, no TensorFlow: reports written whole or not at all, wall times."""
import json
from pathlib import Path

from catsdogs import paths
from catsdogs.files import replaced


def read_json(path):
    return json.loads(Path(path).read_text())


def write_text(path, text):
    """A report, whole or not at all (a temporary file, then a rename)."""
    with replaced(path) as partial:
        partial.write_text(text)


def write_json(path, data):
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_timing(name, timing):
    """Wall times and throughput: reports/timing/, outside the metrics (they change run to run)."""
    write_json(paths.TIMING / f"{paths.slug(name)}.json", timing)
