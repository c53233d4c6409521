"""The predict command on generated images, with every model format of a tiny exported
project, and on real photos with the real model when the seeded Keras cache is there."""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from catsdogs import paths, predict, serving
from catsdogs.data import decode_image
from conftest import CLASS_TINT, ROOT, write_image
from test_export import REAL_FLOAT_TOLERANCE

MODELS = [paths.FINAL_MODEL, paths.SAVED_MODEL, paths.TFLITE_FLOAT32, paths.TFLITE_INT8]
# Each line the command prints, rounded as printed.
PRINTED_DECIMALS = 3


@pytest.fixture(scope="module")
def project(exported_project, tmp_path_factory):
    """An exported tiny project (a copy of conftest's exported_project, which
    test_export.make_exported_project made), and photos/: JPEG, PNG, BMP, GIF, one grayscale,
    one large."""
    root = shutil.copytree(exported_project, tmp_path_factory.mktemp("predict") / "project")
    rng = np.random.default_rng(3)
    photos = root / "photos"
    for i, (fmt, suffix, size) in enumerate([("JPEG", ".jpg", (48, 40)), ("PNG", ".png", (64, 64)),
                                             ("BMP", ".bmp", (33, 50)), ("GIF", ".gif", (40, 40)),
                                             ("JPEG", ".JPG", (640, 480))]):
        class_name = sorted(CLASS_TINT)[i % 2]
        write_image(photos / class_name / f"{i}{suffix}", CLASS_TINT[class_name], rng, size, fmt)
    Image.new("L", (50, 50), 128).save(photos / "gray.png")
    return root


@pytest.fixture
def in_project(project, monkeypatch):
    monkeypatch.chdir(project)
    return project


def photos(project):
    return sorted(predict.image_files(project / "photos"))


@pytest.mark.parametrize("model", MODELS, ids=lambda path: path.name)
def test_every_image_of_files_and_folders_gets_its_class_and_p_dog(in_project, capsys, model):
    single = in_project / "images" / "validation" / "dogs" / "dog.0.jpg"
    status = predict.main([str(in_project / "photos"), str(single), "--model", str(model)])
    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    files = [*photos(in_project), single]
    assert len(files) == 7 and len(lines) == len(files)
    classifier = serving.load(model)
    for line, path in zip(lines, files):
        # What the model says on the image as the pipeline decodes it.
        image = decode_image(path.read_bytes(), classifier.image_size)
        probability = float(classifier(image[None].numpy())[0])
        label = "dogs" if probability >= 0.5 else "cats"
        assert line == f"{path}: {label} (p_dogs = {probability:.{PRINTED_DECIMALS}f})"


def test_json_gives_the_same_answers_in_every_float_format(in_project, capsys):
    answers = {}
    for model in MODELS:
        assert predict.main([str(in_project / "photos"), "--json", "--model", str(model)]) == 0
        answers[model] = json.loads(capsys.readouterr().out)
    keras_answers = answers[paths.FINAL_MODEL]
    assert [a["path"] for a in keras_answers] == [str(p) for p in photos(in_project)]
    for model in (paths.SAVED_MODEL, paths.TFLITE_FLOAT32):
        assert [a["class"] for a in answers[model]] == [a["class"] for a in keras_answers]
        np.testing.assert_allclose([a["p_dogs"] for a in answers[model]],
                                   [a["p_dogs"] for a in keras_answers], atol=5e-5)
    assert all(set(a) == {"path", "class", "p_dogs"} for a in answers[paths.TFLITE_INT8])


def test_bad_files_get_one_error_line_each_and_the_others_their_answer(in_project, tmp_path):
    folder = tmp_path / "mixed"
    rng = np.random.default_rng(4)
    write_image(folder / "good.jpg", CLASS_TINT["cats"], rng)
    (folder / "text.jpg").write_text("not an image\n")
    good_png = folder / "cut.png"
    write_image(good_png, CLASS_TINT["dogs"], rng, fmt="PNG")
    good_png.write_bytes(good_png.read_bytes()[:40])  # truncated
    write_image(folder / "later.png", CLASS_TINT["dogs"], rng, fmt="PNG")
    missing = tmp_path / "missing.jpg"
    # A real process: the exit status and stderr as a shell sees them.
    result = subprocess.run([sys.executable, "-m", "catsdogs.predict", str(folder), str(missing)],
                            cwd=in_project, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert [line.split(": ")[1] for line in errors] == [
        str(folder / "cut.png"), str(folder / "text.jpg"), str(missing)]
    assert "Unknown image file format" in errors[1]
    printed = [line.split(": ")[0] for line in result.stdout.splitlines()]
    assert printed == [str(folder / "good.jpg"), str(folder / "later.png")]


def test_json_lists_errors_beside_the_answers(in_project, tmp_path, capsys):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    good = in_project / "images" / "train" / "cats" / "cat.0.jpg"
    assert predict.main([str(good), str(tmp_path / "broken.png"), "--json"]) == 1
    output = capsys.readouterr()
    answers = json.loads(output.out)
    assert [a["path"] for a in answers] == [str(good), str(tmp_path / "broken.png")]
    assert answers[0]["class"] in ("cats", "dogs") and 0 <= answers[0]["p_dogs"] <= 1
    assert set(answers[1]) == {"path", "error"} and "\n" not in answers[1]["error"]
    assert output.err.count("error: ") == 1


def test_folders_give_their_images_only_and_the_wrong_paths_an_error(in_project, tmp_path, capsys):
    rng = np.random.default_rng(5)
    write_image(tmp_path / "a" / "b" / "deep.jpeg", CLASS_TINT["dogs"], rng)
    write_image(tmp_path / ".cache" / "hidden.jpg", CLASS_TINT["dogs"], rng)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("not an image")
    assert predict.image_files(tmp_path) == [tmp_path / "a" / "b" / "deep.jpeg"]
    assert predict.main([str(tmp_path / "docs"), str(tmp_path / "a")]) == 1
    output = capsys.readouterr()
    assert output.err == (f"error: {tmp_path / 'docs'}: a folder without image files "
                          f"(.bmp, .gif, .jpeg, .jpg, .png)\n")
    assert output.out.startswith(f"{tmp_path / 'a' / 'b' / 'deep.jpeg'}: ")
    assert predict.main([str(tmp_path), "--model", "models/none.tflite"]) == 2
    assert capsys.readouterr().err.startswith("error: models/none.tflite does not exist")


ZIP = paths.keras_cache() / "datasets" / "cats_and_dogs_filtered.zip"
REAL_MISSING = [str(path) for path in (ZIP, ROOT / paths.FINAL_MODEL) if not path.is_file()]
REAL_PER_CLASS = 10


@pytest.mark.skipif(bool(REAL_MISSING), reason=f"the real model or the seeded Keras cache is "
                    f"absent (dvc repro; KERAS_HOME); missing: {', '.join(REAL_MISSING)}")
def test_real_photos_with_the_real_model_and_its_exports(tmp_path, monkeypatch, capsys):
    """The first photos of each class in the dataset's validation folder (the test split)."""
    with zipfile.ZipFile(ZIP) as archive:
        for class_name in ("cats", "dogs"):
            prefix = f"cats_and_dogs_filtered/validation/{class_name}/"
            for name in sorted(n for n in archive.namelist()
                               if n.startswith(prefix) and n.endswith(".jpg"))[:REAL_PER_CLASS]:
                (tmp_path / class_name).mkdir(exist_ok=True)
                (tmp_path / class_name / name.rsplit("/", 1)[1]).write_bytes(archive.read(name))
    monkeypatch.chdir(ROOT)
    models = [m for m in MODELS if m.exists()]
    answers = {}
    for model in models:
        assert predict.main([str(tmp_path), "--json", "--model", str(model)]) == 0
        answers[model] = json.loads(capsys.readouterr().out)
        right = [a["class"] in a["path"].split(os.sep)[-2] for a in answers[model]]
        assert len(right) == 2 * REAL_PER_CLASS and np.mean(right) >= 0.9, model
    for model in set(models) & {paths.SAVED_MODEL, paths.TFLITE_FLOAT32}:
        np.testing.assert_allclose([a["p_dogs"] for a in answers[model]],
                                   [a["p_dogs"] for a in answers[paths.FINAL_MODEL]],
                                   atol=REAL_FLOAT_TOLERANCE)
