"""Fixtures: tiny, learnable image folders made on the fly, params files, a copy of the project,
and one tiny project reproduced once per session (`dvc repro` is most of the suite's time)."""
import colorsys
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import yaml
from filelock import FileLock
from PIL import Image

from catsdogs import params as P

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["catsdogs", "stages", "studies", "dvc.yaml", "params.yaml"]
PLOTS_PAGE = "plots/page.html"  # .dvc/config's plots.html_template (relative to .dvc/)
# Cats are reddish, dogs bluish: a signal even a randomly initialised network can pick up.
CLASS_TINT = {"cats": (200, 60, 60), "dogs": (60, 60, 200)}


def write_image(path, tint, rng, size=(48, 40), fmt="JPEG"):
    noise = rng.integers(-50, 50, size=(size[1], size[0], 3))
    pixels = np.clip(np.array(tint) + noise, 0, 255).astype("uint8")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)


def decode_files(files, image_size):
    """Each file's uint8 image at image_size, as validate decodes it: (N, size, size, 3)."""
    from catsdogs.data import image_decoder  # TensorFlow: only for the tests that decode
    decode = image_decoder(image_size)
    return np.stack([decode(Path(file).read_bytes()).numpy() for file in files])


def class_tints(count):
    """{class name: tint} for `count` classes (class0, class1, ...: sorted as numbered, up to
    10), their hues spread around the colour wheel."""
    return {f"class{i}": tuple(round(40 + 180 * c) for c in colorsys.hsv_to_rgb(i / count, 1, 1))
            for i in range(count)}


def make_dataset(root, per_class={"train": 12, "validation": 6}, seed=0, tints=CLASS_TINT):
    """root/<split>/<class>/<class>.<i>.jpg, the layout of cats_and_dogs_filtered; tints:
    {class name: tint} (default cats and dogs)."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for class_name, tint in tints.items():
            for i in range(count):
                write_image(root / split / class_name / f"{class_name[:-1]}.{i}.jpg", tint, rng)
    return root


@pytest.fixture
def tiny_dataset(tmp_path):
    return make_dataset(tmp_path / "tiny_dataset")


@pytest.fixture(params=[3, 5], ids=lambda count: f"{count}_classes")
def multiclass_dataset(request, tmp_path):
    """(dataset folder, its class names) of a tiny dataset of 3, then 5, tinted classes."""
    tints = class_tints(request.param)
    return make_dataset(tmp_path / "multiclass_dataset", tints=tints), sorted(tints)


def tiny_params(source="unused", **changes):
    """The committed params with source as fetch.url (a URL) or fetch.path, shrunk (tiny data, random weights, 32 px, one epoch per phase),
    then `changes`: section__key=value, e.g. train_head__epochs=3 (classes=... for the top)."""
    raw = P.read(ROOT / "params.yaml")
    if "://" in str(source):
        raw["fetch"]["url"] = str(source)
    else:
        raw["fetch"].update(url=None, path=str(source))
    raw["validate"]["min_images_per_class"] = 3
    raw["model"].update(weights=None, image_size=32)
    raw["train"]["batch_size"] = 8
    for stage in ("baseline", "train_head", "finetune"):
        raw[stage]["epochs"] = 1
    raw["evaluate"]["misclassified_shown"] = 4
    return changed(raw, **changes)


def changed(raw, **changes):
    """raw (a params dict) with section__key=value (or top_level_key=value) set."""
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            raw[section][name] = value
        else:
            raw[section] = value
    return raw


@pytest.fixture(scope="session")
def write_params():
    """write_params(directory, source="unused", **changes): tiny_params(...) written to
    directory/params.yaml (YAML that both PyYAML and DVC read alike); returns the dict."""
    def write(directory, source="unused", **changes):
        raw = tiny_params(source, **changes)
        Path(directory, "params.yaml").write_text(
            yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
        return raw
    return write


@pytest.fixture
def project(tmp_path, tiny_dataset, write_params):
    """A copy of the project in a fresh git + DVC repo, with tiny params."""
    return make_project(tmp_path / "project", tiny_dataset, write_params)


def make_project(repo, dataset, write_params):
    repo.mkdir()
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name,
                            ignore=shutil.ignore_patterns("__pycache__", "dvc.lock"))
        else:
            shutil.copy(source, repo / name)
    write_params(repo, dataset)
    run(["git", "init", "-q"], repo)
    run(["git", "config", "user.email", "tests@example.com"], repo)
    run(["git", "config", "user.name", "tests"], repo)
    run([sys.executable, "-m", "dvc", "init", "-q"], repo)
    # The plots' template and page, as the committed .dvc/ has them (not its config: a
    # developer's remote there is no test's business).
    shutil.copytree(ROOT / ".dvc/plots", repo / ".dvc/plots")
    with open(repo / ".dvc/config", "a") as config:  # what `dvc config` writes, no process
        config.write(f"[plots]\n    html_template = {PLOTS_PAGE}\n")
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "project"], repo)
    return repo


# What the session's reproduced project changes in tiny_params: efficientnet_b0 (weights=None)
# is the one compare backbone; it goes through the same code path as the others.
REPRODUCED_CHANGES = {"compare__backbones": ["efficientnet_b0"]}


class Reproduced(NamedTuple):
    path: Path     # the project: git + DVC repo, its results committed
    dataset: Path  # its fetch.path
    output: str    # what `dvc repro` printed


def built_once(tmp_path_factory, name, build):
    """build(folder) -> str, run once per test run: under pytest-xdist (make test) the workers
    share the folder, built by the first that needs it while the others wait for it. Returns
    (folder, what build returned)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # this run's folder, above every worker's own
    folder, done, failed = base / name, base / f"{name}.built", base / f"{name}.failed"
    with FileLock(base / f"{name}.lock"):
        if failed.exists():  # once is enough: the first worker's error, not a second build
            raise AssertionError(f"building {name} failed in another worker:\n"
                                 f"{failed.read_text()}")
        if not done.exists():
            folder.mkdir()
            try:
                done.write_text(build(folder))
            except BaseException as error:
                failed.write_text(repr(error)[-5000:])
                raise
    return folder, done.read_text()


@pytest.fixture(scope="session")
def reproduced_project(tmp_path_factory, write_params):
    """A tiny project (tiny_params with REPRODUCED_CHANGES) after ONE full `dvc repro`, its
    results committed. Shared by the whole run: read it, never change it; a test that runs
    anything in a project works on copy_project(reproduced_project.path, ...)."""
    def build(root):
        dataset = make_dataset(root / "tiny_dataset")
        repo = make_project(root / "project", dataset, write_params)
        write_params(repo, dataset, **REPRODUCED_CHANGES)
        output = dvc(repo, "repro")
        run(["git", "add", "-A"], repo)
        run(["git", "commit", "-qm", "results of dvc repro"], repo)
        return output

    root, output = built_once(tmp_path_factory, "reproduced", build)
    repo = root / "project"
    yield Reproduced(repo, root / "tiny_dataset", output)
    # A test that changed it would have changed what later tests start from. (No optional
    # locks: the other worker may be copying the repo meanwhile.)
    assert run(["git", "--no-optional-locks", "status", "--porcelain"], repo).stdout == "", \
        "a test changed it"


def copy_project(source, target):
    """source (a project folder) copied whole to target: workspace, .git, .dvc/cache and the
    run-cache; not .dvc/tmp (locks, DVC's scratch). DVC rehashes the copied files."""
    skip_tmp = lambda folder, names: ["tmp"] if Path(folder) == Path(source, ".dvc") else []
    shutil.copytree(source, target, symlinks=True, ignore=skip_tmp)
    return Path(target)


@pytest.fixture
def reproduced_copy(reproduced_project, tmp_path):
    """A copy of the session's reproduced project, this test's to change."""
    return copy_project(reproduced_project.path, tmp_path / "project")


@pytest.fixture(scope="session")
def exported_project(tmp_path_factory, write_params):
    """test_export.make_exported_project's folder, made once: test_export and test_predict
    each work on a copy (shutil.copytree) of it."""
    from test_export import make_exported_project
    build = lambda root: str(make_exported_project(root / "project", write_params))  # noqa: E731
    return Path(built_once(tmp_path_factory, "exported", build)[1])


@pytest.fixture(scope="session")
def exported_three_classes(tmp_path_factory, write_params):
    """The same with three classes (test_export.THREE_CLASSES)."""
    from test_export import THREE_CLASSES, make_exported_project
    build = lambda root: str(make_exported_project(root / "project", write_params,  # noqa: E731
                                                   THREE_CLASSES))
    return Path(built_once(tmp_path_factory, "exported3", build)[1])


def project_env(project):
    """The environment commands run with in a project: its code importable, no analytics,
    and this interpreter first on PATH (the stages call `python`)."""
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(project),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def run(command, cwd, check=True):
    result = subprocess.run(command, cwd=cwd, env=project_env(cwd), capture_output=True,
                            text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def dvc(project, *args):
    return run([sys.executable, "-m", "dvc", *args], project).stdout
