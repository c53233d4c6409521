"""The README quotes the committed reports; it must not drift from them."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "readme_results.py"


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
    readme = (ROOT / "README.md").read_text()
    assert "make pipeline" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci/run").read_text()
