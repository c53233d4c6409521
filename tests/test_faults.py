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

from conftest import dvc

EPOCHS = 4
HISTORY = "reports/train_head/plots/metrics/train/loss.tsv"
TIMING = {"seconds", "train_images_per_second", "resumed_after_epoch"}


@pytest.fixture
def set_params(project, tiny_dataset, write_params):
    def set_params(**changes):
        write_params(project, tiny_dataset, train_head__epochs=EPOCHS, model__image_size=48,
                     **changes)
    return set_params


@pytest.fixture
def decoded_project(project, set_params):
    set_params()
    dvc(project, "repro", "decode")
    return project


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


def test_two_runs_give_identical_results_and_another_seed_does_not(decoded_project, set_params):
    train_head(decoded_project)
    first = outcome(decoded_project)
    assert first[0]["step"] == EPOCHS - 1
    forget_outputs(decoded_project)
    dvc(decoded_project, "repro", "--force", "train_head")
    assert_same(first, outcome(decoded_project))

    # The comparison can fail: another seed changes the run.
    set_params(train__seed=7)
    train_head(decoded_project)
    with pytest.raises(AssertionError):
        assert_same(first, outcome(decoded_project))


def logged_epochs(project):
    history = project / HISTORY
    return len(history.read_text().splitlines()) - 1 if history.exists() else 0


def test_killed_stage_resumes_from_its_last_epoch_and_ends_as_a_straight_run(decoded_project,
                                                                           set_params):
    train_head(decoded_project)
    straight = outcome(decoded_project)
    forget_outputs(decoded_project)
    set_params(train_head__learning_rate=0.002)  # changes the stage: it reruns
    train_head(decoded_project)
    other = outcome(decoded_project)
    set_params()
    forget_outputs(decoded_project)

    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(decoded_project)}
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env['PATH']}"
    # --no-run-cache: these params ran before (the straight run), and DVC would restore
    # that run's outputs from its run-cache instead of training.
    repro = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "--no-run-cache", "train_head"],
                             cwd=decoded_project, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while logged_epochs(decoded_project) < 2 and repro.poll() is None:
        assert time.monotonic() < deadline, "no epoch finished in 300 s"
        time.sleep(0.05)
    os.killpg(repro.pid, signal.SIGKILL)  # kill -9 of dvc and the stage together
    repro.wait()
    assert repro.returncode == -signal.SIGKILL, "the stage finished before it could be killed"
    assert not (decoded_project / "models/head.keras").exists()
    assert (decoded_project / ".backups/reports_train_head/state.json").exists()

    output = dvc(decoded_project, "repro", "--no-run-cache", "train_head")
    assert "resumed after epoch" in output
    resumed = outcome(decoded_project)
    assert_same(straight, resumed)
    with pytest.raises(AssertionError):  # the comparison can fail
        assert_same(other, resumed)
    assert not (decoded_project / ".backups/reports_train_head").exists()
