"""The predict command with the artifact alone, copied out of tiny exported projects (two
classes and three) and run elsewhere: every format, text, JSON and CSV, batches, the
installed command from another working directory, and real photos with the real artifact
when it is there. Bad input: test_predict_safety.py."""
import ast
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from importlib.metadata import packages_distributions

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import catsdogs
from catsdogs import paths, predict, serving
from catsdogs.data import decode_image
from conftest import CLASS_TINT, ROOT, write_image
from test_deps import code_of
from test_export import REAL_FLOAT_TOLERANCE, TINTS

pytestmark = pytest.mark.slow

# The artifact folder (its default: float32 TFLite) and each model in it.
MODELS = ["artifact", *(f"artifact/{name}" for name in
                        ("model.keras", "saved_model", "model_float32.tflite",
                         "model_int8.tflite"))]
FLOAT_MODELS = MODELS[:4]
PRINTED_DECIMALS = 3  # each text line's probability, rounded as printed


@pytest.fixture(scope="module", params=[2, 3], ids=["2_classes", "3_classes"])
def place(request, tmp_path_factory):
    """A folder outside any project: artifact/ (a tiny exported project's models/export) and
    photos/: JPEG, PNG, BMP, GIF, one grayscale, one large."""
    made = request.getfixturevalue("exported_project" if request.param == 2
                                   else "exported_three_classes")
    root = tmp_path_factory.mktemp("elsewhere")
    shutil.copytree(made / paths.EXPORT, root / "artifact")
    classes = serving.read_description(root / "artifact")["classes"]
    rng = np.random.default_rng(3)
    photos = root / "photos"
    for i, (fmt, suffix, size) in enumerate([("JPEG", ".jpg", (48, 40)), ("PNG", ".png", (64, 64)),
                                             ("BMP", ".bmp", (33, 50)), ("GIF", ".gif", (40, 40)),
                                             ("JPEG", ".JPG", (640, 480))]):
        name = classes[i % len(classes)]
        write_image(photos / name / f"{i}{suffix}", TINTS[name], rng, size, fmt)
    Image.new("L", (50, 50), 128).save(photos / "gray.png")
    write_image(root / "single.png", TINTS[classes[-1]], rng, fmt="PNG")
    return root


@pytest.fixture
def elsewhere(place, monkeypatch):
    monkeypatch.chdir(place)
    return place


def photos(place):
    return [path for path, _ in predict.photos(place / "photos")]


def answers(capsys, *args):
    """predict's JSON answers for args (it must succeed)."""
    assert predict.main([*args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("model", MODELS)
def test_every_photo_of_files_and_folders_gets_its_class_and_probability(elsewhere, capsys,
                                                                        model):
    single = elsewhere / "single.png"
    # Batches of 2: several full batches and a last one cut short.
    status = predict.main(["photos", str(single), "--model", model, "--batch-size", "2"])
    output = capsys.readouterr()
    files = [*photos(elsewhere), single]
    assert status == 0 and len(files) == 7
    lines = output.out.splitlines()
    assert len(lines) == len(files)
    assert re.fullmatch(r"predict: 7 photos classified, 0 not; start-up \d+\.\d s \(TensorFlow "
                        r"and the model\), \d+\.\d ms per photo \(batches of 2\)\n", output.err)
    classifier = serving.load(model)
    for line, path in zip(lines, files):
        # What the model says on the image as the pipeline decodes it, alone in its batch.
        probabilities = classifier(decode_image(path.read_bytes(), 32)[None].numpy())
        name = classifier.classes_of(probabilities)[0]
        p = probabilities[0, classifier.classes.index(name)]
        shown = path.relative_to(elsewhere) if path != single else path
        assert line == f"{shown}: {name} (p_{name} = {p:.{PRINTED_DECIMALS}f})"


def test_json_gives_every_class_probability_the_same_in_every_float_format(elsewhere, capsys):
    given = {model: answers(capsys, "photos", "--model", model) for model in MODELS}
    classes = serving.read_description("artifact")["classes"]
    keys = {"path", "class", *(f"p_{name}" for name in classes)}
    first = given["artifact"]
    assert [a["path"] for a in first] == [str(p.relative_to(elsewhere)) for p in photos(elsewhere)]
    for model in MODELS:
        assert all(set(a) == keys for a in given[model]), model
        if model in FLOAT_MODELS:  # (int8's agreement: test_export)
            np.testing.assert_allclose([[a[f"p_{c}"] for c in classes] for a in given[model]],
                                       [[a[f"p_{c}"] for c in classes] for a in first],
                                       atol=5e-5)
        for answer in given[model]:
            assert sum(answer[f"p_{c}"] for c in classes) == pytest.approx(1, abs=0.02)
    for model in FLOAT_MODELS:
        assert [a["class"] for a in given[model]] == [a["class"] for a in first], model
    # One model call per photo answers as one per batch.
    assert answers(capsys, "photos", "--model", "artifact", "--batch-size", "1") == first


def test_csv_parses_with_pandas_and_holds_what_json_does(elsewhere, capsys, tmp_path):
    odd = tmp_path / 'a, "quoted"\nname.png'
    shutil.copy(elsewhere / "photos" / "gray.png", odd)
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    assert predict.main(["photos", str(odd), str(broken), "--model", "artifact",
                         "--format", "csv"]) == 1
    table = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"path": str, "class": str})
    classes = serving.read_description("artifact")["classes"]
    assert list(table.columns) == ["path", "class", "error", *(f"p_{c}" for c in classes)]
    given = answers(capsys, "photos", str(odd), "--model", "artifact")
    assert list(table["path"]) == [a["path"] for a in given] + [str(broken)]
    assert len(given) == 7 and table["path"][6] == str(odd)  # newline and quotes came through
    rows = table.iloc[:7]
    assert list(rows["class"]) == [a["class"] for a in given] and rows["error"].isna().all()
    for name in classes:
        assert list(rows[f"p_{name}"]) == [a[f"p_{name}"] for a in given]  # exact: repr
    last = table.iloc[7]
    assert "Unknown image file format" in last["error"] and pd.isna(last["class"])
    assert all(pd.isna(last[f"p_{name}"]) for name in classes)


def test_folders_give_their_images_only_and_the_wrong_paths_an_error(elsewhere, tmp_path,
                                                                     capsys):
    rng = np.random.default_rng(5)
    write_image(tmp_path / "a" / "b" / "deep.jpeg", CLASS_TINT["dogs"], rng)
    write_image(tmp_path / ".cache" / "hidden.jpg", CLASS_TINT["dogs"], rng)
    write_image(tmp_path / "a" / ".hidden.jpg", CLASS_TINT["dogs"], rng)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("not an image")
    assert predict.photos(tmp_path) == [(tmp_path / "a" / "b" / "deep.jpeg", None)]
    assert predict.main([str(tmp_path / "docs"), str(tmp_path / "a"), "--model", "artifact"]) == 1
    output = capsys.readouterr()
    assert output.err.startswith(f"error: {tmp_path / 'docs'}: a folder without image files "
                                 f"(.bmp, .gif, .jpeg, .jpg, .png)\n")
    assert output.out.startswith(f"{tmp_path / 'a' / 'b' / 'deep.jpeg'}: ")
    assert predict.main([str(tmp_path), "--model", "models/none"]) == 2
    assert capsys.readouterr().err == "error: models/none does not exist (stage export " \
                                      "writes the artifact folder, models/export/)\n"


def installed(tmp_path):
    """The package as pip installs it from pyproject.toml (a copy: the build writes beside
    it), into a prefix of its own: (its bin/ folder, the environment that finds it there).
    Its dependencies are this interpreter's, which the console script's first line names."""
    source = tmp_path / "source"
    shutil.copytree(ROOT / "catsdogs", source / "catsdogs",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", source)
    prefix = tmp_path / "prefix"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
                    "--no-build-isolation", "--no-index", "--no-cache-dir",
                    "--prefix", str(prefix), str(source)], check=True, capture_output=True)
    site = sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)})
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": site}
    return prefix / "bin", env


def test_the_installed_command_classifies_a_folder_from_another_directory(elsewhere, capsys,
                                                                          tmp_path):
    bin_folder, env = installed(tmp_path)
    site = env["PYTHONPATH"]
    assert sorted(os.listdir(os.path.join(site, "catsdogs"))) == sorted(
        f for f in os.listdir(ROOT / "catsdogs") if f.endswith(".py"))  # no templates
    assert not any(name in os.listdir(site) for name in ("stages", "studies", "tests"))
    elsewhere_too = tmp_path / "somewhere"
    elsewhere_too.mkdir()
    where = subprocess.run([sys.executable, "-c", "import catsdogs; print(catsdogs.__file__)"],
                           cwd=elsewhere_too, env=env, capture_output=True, text=True)
    assert where.stdout.startswith(site)  # the installed copy, not the checkout
    result = subprocess.run([str(bin_folder / "catsdogs-predict"), str(elsewhere / "photos"),
                             "--model", str(elsewhere / "artifact"), "--format", "json"],
                            cwd=elsewhere_too, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    given = answers(capsys, str(elsewhere / "photos"), "--model", "artifact")
    assert json.loads(result.stdout) == given and len(given) == 6


def third_party(path):
    """The top-level names of what a file imports that is not the standard library's."""
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                 [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
        for name in names:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top != "catsdogs":
                yield top


def test_the_package_declares_what_the_command_imports_and_nothing_more():
    declared = {re.split(r"[<>=!~ ;\[]", dependency)[0].lower() for dependency in
                tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    imported = {name for file in code_of(ROOT / "catsdogs/predict.py")
                for name in third_party(ROOT / file)}
    distributions = packages_distributions()
    assert {distributions[name][0].lower() for name in imported} == declared


ZIP = paths.keras_cache() / "datasets" / "cats_and_dogs_filtered.zip"
REAL_MISSING = [str(path) for path in (ZIP, ROOT / paths.DESCRIPTION) if not path.is_file()]
REAL_PER_CLASS = 10


@pytest.mark.skipif(bool(REAL_MISSING), reason=f"the real artifact or the seeded Keras cache "
                    f"is absent (dvc repro; KERAS_HOME); missing: {', '.join(REAL_MISSING)}")
def test_real_photos_with_the_real_artifact_in_every_format(tmp_path, capsys):
    """The first photos of each class in the dataset's validation folder (the test split)."""
    with zipfile.ZipFile(ZIP) as archive:
        for class_name in ("cats", "dogs"):
            prefix = f"cats_and_dogs_filtered/validation/{class_name}/"
            for name in sorted(n for n in archive.namelist()
                               if n.startswith(prefix) and n.endswith(".jpg"))[:REAL_PER_CLASS]:
                (tmp_path / class_name).mkdir(exist_ok=True)
                (tmp_path / class_name / name.rsplit("/", 1)[1]).write_bytes(archive.read(name))
    models = [ROOT / paths.EXPORT / name for name in ("", "model.keras", "saved_model",
                                                       "model_float32.tflite",
                                                       "model_int8.tflite")]
    given = {}
    for model in models:
        given[model] = answers(capsys, str(tmp_path), "--model", str(model))
        right = [a["class"] in a["path"].split(os.sep)[-2] for a in given[model]]
        assert len(right) == 2 * REAL_PER_CLASS and np.mean(right) >= 0.9, model
    for model in models[2:4]:
        np.testing.assert_allclose([a["p_dogs"] for a in given[model]],
                                   [a["p_dogs"] for a in given[models[1]]],
                                   atol=REAL_FLOAT_TOLERANCE)


def test_tensorflow_start_up_prints_no_cuda_probe_lines_but_every_other_line():
    """catsdogs (imported first by predict and by every stage through stages/__init__.py)
    drops the lines TensorFlow's CUDA probe writes to fd 2, which TF_CPP_MIN_LOG_LEVEL cannot
    hide; any other line written meanwhile still reaches stderr, in order."""
    probes = (catsdogs.ABSL_PRE_INIT, catsdogs.NO_CUDA_DRIVERS, catsdogs.CUINIT_FAILED)
    start_up = "import tensorflow as tf; tf.constant(1); print('done')"
    quiet = subprocess.run([sys.executable, "-c", f"import stages; {start_up}"], cwd=ROOT,
                           capture_output=True, text=True, check=True)
    assert quiet.stdout == "done\n"
    assert [line for line in quiet.stderr.splitlines()
            if any(probe.search(line) for probe in probes)] == []
    no_drivers = (b"I0000 00:00:1.2 9 cudart_stub.cc:31] Could not find cuda drivers on your "
                  b"machine, GPU will not be used.\n")
    cuinit = b"E0000 00:00:1.3 9 cuda_platform.cc:52] failed call to cuInit: INTERNAL: 303\n"
    script = ("import os, catsdogs\nwith catsdogs.cuda_probe_lines_dropped():\n"
              f"    os.write(2, b'first real line\\n' + {cuinit!r} + {no_drivers!r} + "
              f"b'second real line\\n' + {cuinit!r})\n"
              "    raise SystemExit('the error itself')\n")
    held = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True)
    assert held.returncode == 1
    # A cuInit failure with drivers present (before "no drivers") is a real error: kept.
    assert held.stderr == (b"first real line\n" + cuinit + b"second real line\n"
                           b"the error itself\n")
