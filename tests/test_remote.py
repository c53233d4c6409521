"""A DVC remote holds what a fresh clone needs: a local directory remote and an S3-compatible
one (moto's server, on loopback only, started and stopped here). The project is reproduced
once on tiny data, pushed with its run-cache, and a fresh git clone pulls it back.
"""
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import dvc, make_dataset, make_project, run

BUCKET = "dvc-remote"
CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}
# What a remote's run-cache can restore: DVC pushes and pulls run-cache entries, but not the
# git-kept (cache: false) metrics, plots and reports their stages wrote, so only a stage whose
# outputs are all in the cache comes back from it; the others rerun, deterministically.
RUN_CACHED = ["decode"]


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory, write_params):
    root = tmp_path_factory.mktemp("remote")
    repo = make_project(root / "project", make_dataset(root / "images"), write_params)
    dvc(repo, "repro")
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "results"], repo)
    return repo


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


def test_an_s3_remote_restores_stages_from_its_run_cache(reproduced, s3_endpoint, tmp_path):
    settings = {"endpointurl": s3_endpoint, **CREDENTIALS}
    use_remote(reproduced, f"s3://{BUCKET}/cats-dogs", **settings)
    assert "testing" not in (reproduced / ".dvc/config").read_text()  # secrets stay local
    dvc(reproduced, "push", "--run-cache")
    clone = fresh_clone(reproduced, tmp_path / "clone")
    use_remote(clone, f"s3://{BUCKET}/cats-dogs", **settings)
    # Without dvc.lock, DVC can only know the results through the run-cache.
    (clone / "dvc.lock").unlink()
    output = dvc(clone, "repro", "--pull")
    assert [s for s in RUN_CACHED if f"Stage '{s}' is cached - skipping run" not in output] == []
    # The same results as the original run: the lock file comes back as it was committed.
    assert run(["git", "status", "--porcelain", "--", "dvc.lock"], clone).stdout == ""
    assert (clone / "models/final.keras").read_bytes() == \
        (reproduced / "models/final.keras").read_bytes()


def test_the_final_model_is_a_dvc_artifact(reproduced, tmp_path):
    # The repository as committed, without the remotes the tests above configured.
    run(["git", "checkout", "--", ".dvc/config"], reproduced)
    (reproduced / ".dvc/config.local").unlink(missing_ok=True)
    run(["git", "tag", "-a", "cats-vs-dogs-classifier@v0.1.0", "-m", "first model"], reproduced)
    target = tmp_path / "model.keras"
    dvc(tmp_path, "artifacts", "get", str(reproduced), "cats-vs-dogs-classifier",
        "--rev", "v0.1.0", "-o", str(target))
    assert target.read_bytes() == (reproduced / "models/final.keras").read_bytes()
