"""Every script under scripts/ and benchmarks/ answers --help with its usage and writes nothing
(issue 22: `training_time.py --help` once rewrote three committed files), and whichever loads
TensorFlow does it after catsdogs, which drops its CUDA-probe lines."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "scripts").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
SKIPPED = {".git", ".venv", "__pycache__", ".pytest_cache"}


def snapshot():
    """{path: (size, mtime_ns)} of every file in the project but git's, the venv's and caches."""
    files = {}
    for folder, subfolders, names in os.walk(ROOT):
        subfolders[:] = [s for s in subfolders if s not in SKIPPED]
        for name in names:
            status = os.lstat(os.path.join(folder, name))
            files[os.path.join(folder, name)] = (status.st_size, status.st_mtime_ns)
    return files


def test_every_script_is_found():
    assert {"model_card.py", "readme_results.py", "pipeline_time.py",
            "training_time.py"} <= {script.name for script in SCRIPTS}


@pytest.mark.slow
def test_help_prints_usage_and_changes_no_file():
    before = snapshot()
    runs = {script: subprocess.Popen([sys.executable, script, "--help"], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for script in SCRIPTS}
    for script, run in runs.items():
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, f"{script.name} --help: {err[-2000:]}"
        assert out.startswith("usage:"), f"{script.name} --help printed {out[:200]!r}"
        assert "cudart_stub" not in err, f"{script.name}: TensorFlow before catsdogs:\n{err}"
    after = snapshot()
    changed = sorted(path for path in before.keys() | after.keys()
                     if before.get(path) != after.get(path))
    assert changed == [], f"--help changed {changed}"
