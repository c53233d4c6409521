"""A DVC remote holds what a fresh clone needs: a local directory remote and an S3-compatible
one (moto's server, on loopback only, started and stopped here). The project, reproduced once
on tiny data (a copy of conftest's reproduced_project), is pushed (with
scripts/push_results.py: every stage's run-cache), and fresh git clones pull it back, or
reproduce a pull request's change as .github/workflows does.
"""
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, copy_project, dvc, project_env, run

pytestmark = pytest.mark.slow

BUCKET = "dvc-remote"
CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}


@pytest.fixture(scope="module")
def reproduced(reproduced_project, tmp_path_factory):
    """A tiny project reproduced and committed: this module's copy of the session's."""
    return copy_project(reproduced_project.path, tmp_path_factory.mktemp("remote") / "project")


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server on a free loopback port, with one bucket; stopped afterwards."""
    pytest.importorskip("dvc_s3", reason="dvc-s3 is not installed (requirements.txt has it)")
    boto3 = pytest.importorskip("boto3", reason="moto[server] is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1",
                               "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1)
                break
            except OSError:
                assert server.poll() is None, "moto_server exited"
                assert time.monotonic() < deadline, "moto_server did not answer in 30 s"
                time.sleep(0.2)
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


def use_remote(repo, url, **settings):
    """What each team member does once: the remote's URL in .dvc/config, anything secret
    (credentials) only in .dvc/config.local, which git ignores."""
    dvc(repo, "remote", "add", "--force", "--default", "storage", url)
    for key, value in settings.items():
        dvc(repo, "remote", "modify", "--local", "storage", key, value)


def push_results(repo):
    """What the team runs instead of `dvc push`: every stage's run-cache, with its outputs."""
    return run([sys.executable, str(ROOT / "scripts/push_results.py")], repo).stdout


def stages(repo):
    return dvc(repo, "stage", "list", "--name-only", "dvc.yaml").split()


def fresh_clone(repo, directory):
    run(["git", "clone", "-q", str(repo), str(directory)], repo)
    assert not (directory / "data/raw").exists()
    assert not (directory / "models/final.keras").exists()
    return directory


def test_a_fresh_clone_pulls_every_output_from_a_local_remote(reproduced, tmp_path):
    use_remote(reproduced, str(tmp_path / "storage"))
    dvc(reproduced, "push")
    clone = fresh_clone(reproduced, tmp_path / "clone")
    use_remote(clone, str(tmp_path / "storage"))
    dvc(clone, "pull")
    assert (clone / "models/final.keras").read_bytes() == \
        (reproduced / "models/final.keras").read_bytes()
    assert "up to date" in dvc(clone, "status", "dvc.yaml")
    assert "Running stage" not in dvc(clone, "repro")


def workflow_steps(context):
    """(name, shell script, step env) of .github/workflows/pr-report.yaml's `run:` steps, with
    ${{ ... }} taken from context (a name missing there fails), `if: A == B` / `A != B` decided
    (each side '', env.X or a context name), and what cannot run here left out: pip install
    (the venv is set) and `cml` (not installed)."""
    job = yaml.safe_load((ROOT / ".github/workflows/pr-report.yaml").read_text())["jobs"]["report"]
    expand = lambda text: re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}", lambda m: context[m[1]], text)
    env = {key: expand(str(value)) for key, value in job.get("env", {}).items()}
    for step in job["steps"]:
        if "run" not in step or step["run"].startswith("pip install"):
            continue
        step_env = {**env, **{k: expand(str(v)) for k, v in step.get("env", {}).items()}}
        if "if" in step:
            left, operator, right = re.fullmatch(r"(\S+) (!=|==) (\S+)", step["if"]).groups()
            value = lambda side: ("" if side == "''" else step_env.get(side[4:], "")
                                  if side.startswith("env.") else context[side])
            if (value(left) == value(right)) != (operator == "=="):
                continue
        script = "\n".join(line for line in expand(step["run"]).splitlines()
                           if not line.lstrip().startswith("cml "))
        yield step["name"], script, step_env


def test_the_pr_workflow_reruns_shares_and_reports_only_what_a_param_change_affects(
        reproduced, s3_endpoint, tmp_path):
    """The workflow's own shell steps on a pull request that changes one param: the base branch
    was reproduced and shared; CI reruns only the stages the param affects, shares them, and
    reports the changed param and metrics, nothing else; a later run then reruns nothing."""
    url = f"s3://{BUCKET}/pull-request"
    use_remote(reproduced, url, endpointurl=s3_endpoint, **CREDENTIALS)
    push_results(reproduced)
    developer = fresh_clone(reproduced, tmp_path / "developer")
    run(["git", "branch", "base-branch"], developer)
    params = yaml.safe_load((developer / "params.yaml").read_text())
    params["evaluate"]["val_accuracy_min"] = 0.25  # tiny data's 0.5 validation accuracy: met
    (developer / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "lower the validation target"], developer)

    ci = fresh_clone(developer, tmp_path / "ci")
    shutil.copytree(ROOT / "scripts", ci / "scripts")  # the tiny project has no scripts/
    context = {"vars.DVC_REMOTE_URL": url, "vars.PUBLISH_PLOTS": "",
               "secrets.DVC_ACCESS_KEY_ID": "testing", "secrets.DVC_SECRET_ACCESS_KEY": "testing",
               "secrets.GITHUB_TOKEN": "unused", "github.base_ref": "base-branch",
               "github.repository": "team/cats-dogs",  # not a fork: the comment step is kept
               "github.event.pull_request.head.repo.full_name": "team/cats-dogs"}
    summary = tmp_path / "step_summary.md"  # what GitHub shows on the run's page
    outputs = {}
    for name, script, step_env in workflow_steps(context):
        env = {**project_env(ci), **step_env, "GITHUB_STEP_SUMMARY": str(summary),
               "AWS_ENDPOINT_URL": s3_endpoint}  # moto standing in for AWS
        result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                                cwd=ci, env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"step {name!r}:\n{result.stdout}\n{result.stderr}"
        outputs[name.split(" (")[0]] = result.stdout
    assert "testing" not in (ci / ".dvc/config").read_text()  # credentials only in config.local
    # evaluate reads the param; compare_report reads evaluate's metrics (which record it).
    ran = re.findall(r"Running stage '([^']+)'", outputs["Reproduce what changed"])
    assert sorted(ran) == ["compare_report", "evaluate"]
    shared = re.search(r"up-to-date stages: (.*)", outputs["Share the new results"])[1]
    assert {"evaluate", "compare_report"} <= set(shared.split(", "))  # their results now shared

    report = (ci / "report.md").read_text()
    assert summary.read_text() == report
    metrics, params = report.split("## ")[1:3]
    names = lambda table: [line.split("|")[2].strip() for line in table.splitlines()
                           if line.startswith("| ")][1:]  # metric / param names, header dropped
    assert names(metrics) == ["targets.all_met", "targets.val_accuracy_met",
                              "targets.val_accuracy_min"]
    assert "| 0.85 " in metrics and "| 0.25 " in metrics
    assert names(params) == ["evaluate.val_accuracy_min"]
    assert "second" not in report.lower()  # no timings
    assert ("_Unchanged: `Accuracy, baseline vs frozen head`, `Loss, baseline vs frozen "
            "head`, `Accuracy, fine-tuning`, `Loss, fine-tuning`._") in report
    assert not (ci / "pr_report_plots").exists()
    assert "![learning curves](reports/evaluate/learning_curves.png)" in report  # its target line
    assert "![roc]" not in report  # the same image as the base's

    # The next run on the same commit (a re-run, another reviewer) computes nothing.
    again = fresh_clone(developer, tmp_path / "again")
    use_remote(again, url, endpointurl=s3_endpoint, **CREDENTIALS)
    output = dvc(again, "repro", "--pull", "--allow-missing")
    assert "Running stage" not in output
    assert "Stage 'evaluate' is cached - skipping run" in output


def test_an_s3_remote_restores_stages_from_its_run_cache(reproduced, s3_endpoint, tmp_path):
    settings = {"endpointurl": s3_endpoint, **CREDENTIALS}
    use_remote(reproduced, f"s3://{BUCKET}/cats-dogs", **settings)
    assert "testing" not in (reproduced / ".dvc/config").read_text()  # secrets stay local
    pushed = push_results(reproduced)
    assert "run-cache entries for the up-to-date stages: fetch, validate," in pushed
    clone = fresh_clone(reproduced, tmp_path / "clone")
    use_remote(clone, f"s3://{BUCKET}/cats-dogs", **settings)
    # Without dvc.lock, DVC can only know the results through the run-cache.
    (clone / "dvc.lock").unlink()
    output = dvc(clone, "repro", "--pull")
    assert "Running stage" not in output
    assert [s for s in stages(clone) if f"Stage '{s}' is cached - skipping run" not in output] == []
    # The same results as the original run: the lock file comes back as it was committed.
    assert run(["git", "status", "--porcelain", "--", "dvc.lock"], clone).stdout == ""
    assert (clone / "models/final.keras").read_bytes() == \
        (reproduced / "models/final.keras").read_bytes()


def test_the_final_model_is_a_dvc_artifact(reproduced, tmp_path):
    # The repository as committed, without the remotes the tests above configured.
    run(["git", "checkout", "--", ".dvc/config"], reproduced)
    (reproduced / ".dvc/config.local").unlink(missing_ok=True)
    run(["git", "tag", "-a", "cats-vs-dogs-classifier@v0.1.0", "-m", "first model"], reproduced)
    target = tmp_path / "export"
    dvc(tmp_path, "artifacts", "get", str(reproduced), "cats-vs-dogs-classifier",
        "--rev", "v0.1.0", "-o", str(target))
    # The artifact is the whole folder stage export wrote: the model and what names its classes.
    exported = reproduced / "models/export"
    files = sorted(f.relative_to(exported) for f in exported.rglob("*") if f.is_file())
    assert {"model.keras", "classifier.json", "labels.txt"} <= {str(f) for f in files}
    assert sorted(f.relative_to(target) for f in target.rglob("*") if f.is_file()) == files
    for name in files:
        assert (target / name).read_bytes() == (exported / name).read_bytes(), name
    assert (target / "model.keras").read_bytes() == \
        (reproduced / "models/final.keras").read_bytes()
