"""Faults and reproducibility: identical reruns, and a training stage killed with -9 resumes.

Real subprocesses on tiny data: `dvc repro` of the train_head stage (shuffle, augmentation
and dropout all active), compared bit for bit through its dvclive history and saved weights.
"""
import os
import shutil
import signal
import subprocess
import sys
import time

import json

import numpy as np
import pytest
import yaml

from conftest import dvc, make_dataset, make_project, project_env

pytestmark = pytest.mark.slow

EPOCHS = 4
HISTORY = "reports/train_head/plots/metrics/train/loss.tsv"
TIMING = {"seconds", "train_images_per_second", "resumed_after_epoch"}


def train_head(project):
    return dvc(project, "repro", "train_head")


def outcome(project):
    """Everything the stage computed: final metrics (not timings), history, weights."""
    import keras

    summary = json.loads((project / "reports/train_head/metrics.json").read_text())
    histories = {p.relative_to(project).as_posix(): p.read_text()
                 for p in sorted((project / "reports/train_head/plots").rglob("*.tsv"))}
    model = keras.models.load_model(project / "models/head.keras")
    return ({k: v for k, v in summary.items() if k not in TIMING}, histories,
            [w.numpy() for w in model.weights])


def assert_same(first, second):
    assert first[0] == second[0]
    assert first[1] == second[1]
    assert len(first[2]) == len(second[2])
    for a, b in zip(first[2], second[2]):
        np.testing.assert_array_equal(a, b)


def forget_outputs(project):
    for path in ("reports/train_head", "models/head.keras"):
        target = project / path
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, write_params):
    """A tiny project (train_head: EPOCHS epochs at 48 px) after `dvc repro train_head`:
    (project, set_params(**changes), the outcome of that straight run). Both tests compare
    their runs to it, and each starts with set_params() and forget_outputs()."""
    root = tmp_path_factory.mktemp("faults")
    dataset = make_dataset(root / "tiny_dataset")
    project = make_project(root / "project", dataset, write_params)

    def set_params(**changes):
        write_params(project, dataset, train_head__epochs=EPOCHS, model__image_size=48,
                     **changes)

    set_params()
    train_head(project)
    return project, set_params, outcome(project)


@pytest.fixture(scope="module")
def other_seed(trained):
    """The outcome of train_head with another seed: the comparisons must tell it apart."""
    project, set_params, _ = trained
    set_params(train__seed=7)
    try:
        train_head(project)
        return outcome(project)
    finally:
        set_params()


def test_two_runs_give_identical_results_and_another_seed_does_not(trained, other_seed):
    project, set_params, straight = trained
    assert straight[0]["step"] == EPOCHS - 1
    set_params()
    forget_outputs(project)
    dvc(project, "repro", "--force", "train_head")  # --force: a run, not the run-cache
    assert_same(straight, outcome(project))

    # The comparison can fail: another seed changes the run.
    with pytest.raises(AssertionError):
        assert_same(straight, other_seed)


def logged_epochs(project):
    history = project / HISTORY
    return len(history.read_text().splitlines()) - 1 if history.exists() else 0


def test_killed_stage_resumes_from_its_last_epoch_and_ends_as_a_straight_run(trained,
                                                                           other_seed):
    project, set_params, straight = trained
    set_params()
    forget_outputs(project)
    # Nor its dvc.lock entry: DVC would check the outputs it records out of the cache.
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    del lock["stages"]["train_head"]
    (project / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))

    # --no-run-cache: these params ran before (the straight run), and DVC would restore
    # that run's outputs from its run-cache instead of training.
    repro = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "--no-run-cache", "train_head"],
                             cwd=project, env=project_env(project), start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while logged_epochs(project) < 2 and repro.poll() is None:
        assert time.monotonic() < deadline, "no epoch finished in 300 s"
        time.sleep(0.05)
    os.killpg(repro.pid, signal.SIGKILL)  # kill -9 of dvc and the stage together
    repro.wait()
    assert repro.returncode == -signal.SIGKILL, "the stage finished before it could be killed"
    assert not (project / "models/head.keras").exists()
    assert (project / ".backups/reports_train_head/state.json").exists()

    output = dvc(project, "repro", "--no-run-cache", "train_head")
    assert "resumed after epoch" in output
    resumed = outcome(project)
    assert_same(straight, resumed)
    with pytest.raises(AssertionError):  # the comparison can fail
        assert_same(other_seed, resumed)
    assert not (project / ".backups/reports_train_head").exists()
