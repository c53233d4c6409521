"""Stage export on tiny projects (32 px, random-weights backbone, head trained on tinted
images; two classes and three): the artifact folder alone, copied outside the project and
read by plain Keras and TensorFlow, answers as the pipeline does on raw uint8 photos in
every format; its metrics are right; a second export writes the same bytes (dvc.lock must
not change on a rerun); params that no longer describe the model stop it, nothing lost."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import stages.export
from catsdogs import params as P
from catsdogs import paths, serving
from catsdogs.data import decode_image, eval_dataset
from catsdogs.decoded import load_decoded, save_decoded
from catsdogs.evaluation import calibration, class_probabilities, predicted
from catsdogs.models import build_classifier, compile_classifier, find_base, save_model
from catsdogs.models import seed_everything
from conftest import CLASS_TINT, ROOT, decode_files, write_image

pytestmark = pytest.mark.slow

# Float formats do the same arithmetic in another order: probabilities within 1e-5 of the
# Keras model's for the real one, a little more for this sharper tiny one.
FLOAT_TOLERANCE, REAL_FLOAT_TOLERANCE = 5e-5, 1e-5
# A random backbone quantizes poorly (wide, arbitrary activation ranges): int8 must agree
# with Keras on this much more than chance (1 / K: where a broken conversion lands); the real
# model's test below asks for 95%, and stage export measures it on the real test split.
INT8_OVER_CHANCE = 0.25
HEAD_EPOCHS = 10         # the head fits the tinted train images
HEAD_LEARNING_RATE = 0.01
TINTS = {**CLASS_TINT, "birds": (60, 200, 60)}
THREE_CLASSES = sorted(TINTS)  # birds, cats, dogs
PER_CLASS = {"train": 12, "validation": 6}


def make_exported_project(root, write_params, classes=None):
    """root as a project folder after stage export: params.yaml (tiny; classes if given),
    data/decoded/, a small trained models/final.keras and everything export writes."""
    root.mkdir(parents=True)
    raw = write_params(root, **({"classes": classes} if classes else {}))
    size, backbone, classes = raw["model"]["image_size"], raw["model"]["backbone"], \
        sorted(raw["classes"])
    rng = np.random.default_rng(0)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(root)
        for split, folder in (("train", "train"), ("test", "validation")):
            files = []
            for label, name in enumerate(classes):
                for i in range(PER_CLASS[folder]):
                    files.append((root / "images" / folder / name / f"{name}.{i}.jpg", label))
                    write_image(files[-1][0], TINTS[name], rng)
            save_decoded(split, decode_files([f for f, _ in files], size), [l for _, l in files])
        seed_everything(raw["train"]["seed"])
        model = build_classifier(backbone, size, None, raw["train_head"]["dropout"],
                                 raw["train"]["seed"], len(classes))
        pixels, labels = (np.asarray(a, "float32") for a in load_decoded("train"))
        set_batchnorm_statistics(find_base(model), model.get_layer("preprocess")(pixels))
        compile_classifier(model, HEAD_LEARNING_RATE)
        model.fit(pixels, labels, epochs=HEAD_EPOCHS, verbose=0)
        save_model(model, paths.FINAL_MODEL)
    export(root)
    return root


def export(root):
    """Stage export in a process of its own, as DVC runs it (Keras numbers some variables
    by what the process created before, so only a fresh process exports the same bytes)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "stages.export"], cwd=root, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def set_batchnorm_statistics(base, inputs):
    """Every BatchNorm's moving statistics := those of `inputs`, layer after layer. A random
    backbone's initial statistics (mean 0, variance 1) shrink its features to ~1e-13, too
    little for a head to learn from, and too little for int8 to quantize."""
    base.trainable = True  # a frozen BatchNorm ignores training=True
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0  # moving statistics := this batch's
    base(inputs, training=True)
    base.trainable = False


@pytest.fixture(scope="module", params=[2, 3], ids=["2_classes", "3_classes"])
def project(request, tmp_path_factory):
    """A copy of conftest's exported project of two classes (exported_project) or three
    (exported_three_classes), both made by make_exported_project."""
    made = request.getfixturevalue("exported_project" if request.param == 2
                                   else "exported_three_classes")
    return shutil.copytree(made, tmp_path_factory.mktemp("export") / "project")


@pytest.fixture
def in_project(project, monkeypatch):
    monkeypatch.chdir(project)
    return project


def pipeline_probabilities(pixels):
    """What the pipeline's evaluate computes: models/final.keras on float batches, (N, K)."""
    model = keras.models.load_model(paths.FINAL_MODEL)
    batches = eval_dataset(pixels, np.zeros(len(pixels), "float32"), 8)
    return class_probabilities(model.predict(batches, verbose=0))


def project_classes():
    """The classes of the project in the working directory, sorted (label order)."""
    return sorted(P.read(paths.PARAMS)["classes"])


def test_the_artifact_holds_the_model_and_describes_it(in_project):
    description = json.loads(paths.DESCRIPTION.read_text())
    classes = project_classes()
    model_bytes = paths.EXPORT_MODEL.read_bytes()
    assert model_bytes == paths.FINAL_MODEL.read_bytes()
    assert description == {
        "classes": classes, "image_size": 32, "backbone": "mobilenet_v2",
        "output": "sigmoid" if len(classes) == 2 else "softmax",
        "threshold": 0.5 if len(classes) == 2 else None, "input": serving.INPUT,
        "weights": {"file": "model.keras", "sha256": hashlib.sha256(model_bytes).hexdigest()}}
    assert paths.LABELS.read_text().splitlines() == classes
    assert sorted(p.name for p in paths.EXPORT.iterdir()) == sorted(
        [*stages.export.FORMATS.values(), paths.DESCRIPTION.name, paths.LABELS.name])


# The user's side: plain Keras and TensorFlow, in a folder outside the project, with no
# catsdogs to import; classes from classifier.json (Keras, SavedModel) or labels.txt (TFLite).
OUTSIDE = r'''
import importlib.util, json
import numpy as np, keras, tensorflow as tf
assert importlib.util.find_spec("catsdogs") is None, "the project is importable"
description = json.load(open("export/classifier.json"))
labels = open("export/labels.txt").read().splitlines()
photos = json.load(open("photos.json"))
pixels = np.load("pixels.npy")  # uint8, the photos resized to image_size
data = [open(photo, "rb").read() for photo in photos]

def names(p):  # two classes: p(second) >= threshold; more: the arg-max
    labels_of = (p[:, 1] >= description["threshold"]) if p.shape[1] == 2 else p.argmax(1)
    return [labels[int(i)] for i in labels_of]

answers, classes = {}, {}
p = keras.models.load_model("export/model.keras").predict(pixels, verbose=0)
answers["keras"] = np.column_stack([1 - p, p]) if description["output"] == "sigmoid" else p
loaded = tf.saved_model.load("export/saved_model")
for name, inputs in [("serve", [tf.io.decode_image(d, channels=3, expand_animations=False)[None]
                                for d in data]),
                     ("serve_bytes", [tf.constant([d]) for d in data])]:
    out = [loaded.signatures[name](images=tf.constant(x)) for x in inputs]
    answers[name] = np.concatenate([o["probabilities"].numpy() for o in out])
    classes[name] = [c.decode() for o in out for c in o["class"].numpy()]
for name in ("model_float32", "model_int8"):
    interpreter = tf.lite.Interpreter(model_path=f"export/{name}.tflite")
    given, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(given["index"], pixels.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(given["index"], pixels)
    interpreter.invoke()
    p = interpreter.get_tensor(out["index"]).astype("float32")
    scale, zero = out["quantization"]
    answers[name] = (p - zero) * scale if scale else p
for name, p in answers.items():
    classes.setdefault(name, names(p))
np.savez("answers.npz", **answers)
json.dump(classes, open("classes.json", "w"))
'''


def test_the_artifact_alone_outside_the_project_answers_as_the_pipeline(in_project, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.copytree(paths.EXPORT, outside / "export")
    rng = np.random.default_rng(1)
    photos = []
    for i, (name, shape, fmt) in enumerate(zip(project_classes() * 2,
                                               [(48, 40), (17, 90), (32, 32), (301, 203)],
                                               ["JPEG", "PNG", "PNG", "JPEG"])):
        photos.append(f"photo{i}.{fmt.lower()}")
        write_image(outside / photos[-1], TINTS[name], rng, size=shape, fmt=fmt)
    pixels = np.stack([decode_image((outside / p).read_bytes(), 32).numpy() for p in photos])
    np.save(outside / "pixels.npy", pixels)
    (outside / "photos.json").write_text(json.dumps(photos))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-I", "-c", OUTSIDE], cwd=outside, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

    expected = pipeline_probabilities(pixels)
    description = serving.read_description(paths.EXPORT)
    expected_classes = [description["classes"][i]
                        for i in predicted(expected, description["threshold"])]
    answers = np.load(outside / "answers.npz")
    classes = json.loads((outside / "classes.json").read_text())
    assert set(answers) == {"keras", "serve", "serve_bytes", "model_float32", "model_int8"}
    for name in ("keras", "serve", "serve_bytes", "model_float32"):
        np.testing.assert_allclose(answers[name], expected, atol=FLOAT_TOLERANCE, err_msg=name)
        assert classes[name] == expected_classes, name
    # int8 as this project's loader runs it (its agreement with Keras: the next test)
    int8 = serving.load(paths.TFLITE_INT8)
    np.testing.assert_array_equal(answers["model_int8"], int8(pixels))
    assert classes["model_int8"] == int8.classes_of(int8(pixels))
    assert expected.shape == (len(photos), len(description["classes"]))


def test_every_format_loads_and_answers_as_the_keras_model_on_the_test_images(in_project):
    images = load_decoded("test")[0][:]
    keras_p = pipeline_probabilities(images)
    assert len(set(predicted(keras_p, 0.5))) == keras_p.shape[1]  # it tells them apart
    classifiers = {name: serving.load(paths.EXPORT / file)
                   for name, file in stages.export.FORMATS.items()}
    assert isinstance(serving.load(paths.EXPORT), serving.TFLiteClassifier)  # the default
    for name in ("keras", "saved_model", "tflite_float32"):
        np.testing.assert_allclose(classifiers[name](images), keras_p, atol=FLOAT_TOLERANCE)
    int8 = classifiers["tflite_int8"]
    assert np.mean(np.array(int8.classes_of(int8(images))) == int8.classes_of(keras_p)) >= \
        1 / keras_p.shape[1] + INT8_OVER_CHANCE


def test_metrics_hold_accuracy_agreement_calibration_and_size_per_format(in_project):
    metrics = json.loads((paths.EXPORT_REPORTS / "metrics.json").read_text())
    images, labels = load_decoded("test")
    images, labels = images[:], labels.astype(int)
    threshold = serving.read_description(paths.EXPORT)["threshold"]
    assert metrics["test_images"] == len(labels)
    keras_p = serving.load(paths.EXPORT_MODEL)(images)
    for name, file in stages.export.FORMATS.items():
        p = serving.load(paths.EXPORT / file)(images)
        assert metrics[name] == pytest.approx({
            "accuracy": np.mean(predicted(p, threshold) == labels),
            "agreement_with_keras": np.mean(predicted(p, threshold) ==
                                            predicted(keras_p, threshold)),
            "max_probability_difference": np.max(np.abs(p - keras_p)),
            "ece": calibration(labels, p, threshold)["ece"],
            "size_bytes": stages.export.size_bytes(paths.EXPORT / file)}, abs=1e-6), name
    assert metrics["keras"]["agreement_with_keras"] == 1
    assert metrics["tflite_float32"]["max_probability_difference"] < FLOAT_TOLERANCE
    goals = metrics["int8_goals"]
    assert goals["size_ratio"] == pytest.approx(
        metrics["tflite_float32"]["size_bytes"] / metrics["tflite_int8"]["size_bytes"])
    assert goals["size_ratio"] > 2  # int8 weights: a quarter of float32's, plus the graph
    assert "latency" not in json.dumps(metrics)
    timing = json.loads((paths.TIMING / "reports_export.json").read_text())
    for name in stages.export.FORMATS:
        assert timing[name]["latency_ms_median"] > 0
        assert timing[name]["batch_images_per_second"] > 0


def test_tflite_models_take_raw_uint8_pixels_of_the_model_size(in_project):
    classes = len(serving.read_description(paths.EXPORT)["classes"])
    for path in (paths.TFLITE_FLOAT32, paths.TFLITE_INT8):
        interpreter = tf.lite.Interpreter(model_path=str(path))
        given = interpreter.get_input_details()[0]
        assert given["dtype"] == np.uint8 and list(given["shape_signature"]) == [-1, 32, 32, 3]
        assert given["quantization"] == (0.0, 0)  # pixels as they are: no scale to apply
        assert list(interpreter.get_output_details()[0]["shape_signature"]) == [-1, classes]
    interpreter = tf.lite.Interpreter(model_path=str(paths.TFLITE_INT8))
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "CONV_2D" in ops and "DEQUANTIZE" not in ops  # integer all the way through
    assert any(t["dtype"] == np.int8 for t in interpreter.get_tensor_details())


def digests(*folders):
    files = [f for folder in folders for f in sorted(folder.rglob("*")) if f.is_file()]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_a_second_export_writes_the_same_bytes_and_metrics(in_project):
    before = digests(paths.EXPORT, paths.EXPORT_REPORTS)
    assert len(before) > 8  # the SavedModel's files too
    export(in_project)
    assert digests(paths.EXPORT, paths.EXPORT_REPORTS) == before


def truncate(path):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


DAMAGES = {  # what is changed -> what the one-line message must say
    "backbone": (dict(model__backbone="mobilenet", compare__backbones=["efficientnet_b0"]),
                 "is a mobilenet_v2 model at 32 px"),
    "image_size": (dict(model__image_size=48), "model.image_size 48"),
    "classes": (dict(classes=["apples", "birds", "cats", "dogs"]), "and 4 classes"),
    "final.keras cut short": (lambda: truncate(paths.FINAL_MODEL), "a damaged .keras file"),
    "final.keras missing": (lambda: paths.FINAL_MODEL.unlink(), "final.keras is missing"),
    "train split missing": (lambda: (paths.DECODED / "train.images.npy").unlink(),
                            "train.images.npy is missing"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_inputs_that_do_not_fit_stop_export_with_one_message_and_nothing_lost(
        project, tmp_path, monkeypatch, write_params, damage):
    """Issue 25: params moved on since training (export once exported at chance level), or
    a damaged input; nothing is removed or half-replaced."""
    copy = shutil.copytree(project, tmp_path / "project")
    monkeypatch.chdir(copy)
    change, message = DAMAGES[damage]
    if callable(change):
        change()
    else:
        write_params(copy, **{"classes": project_classes(), **change})
    before = digests(paths.EXPORT, paths.EXPORT_REPORTS), sorted(os.listdir("models"))
    with pytest.raises(SystemExit) as stopped:
        stages.export.main()
    assert message in str(stopped.value) and "\n" not in str(stopped.value)
    assert str(stopped.value).startswith("export: ")
    assert (digests(paths.EXPORT, paths.EXPORT_REPORTS), sorted(os.listdir("models"))) == before


def test_metrics_of_the_real_model_are_committed_for_the_three_formats():
    committed = ROOT / paths.EXPORT_REPORTS / "metrics.json"
    if not committed.is_file():
        pytest.skip(f"{committed} not there: run stage export (dvc repro export)")
    metrics = json.loads(committed.read_text())
    assert set(stages.export.FORMATS) <= set(metrics)
    assert metrics["tflite_float32"]["agreement_with_keras"] == 1
    assert metrics["int8_goals"]["accuracy_met"] and metrics["int8_goals"]["size_met"]


REAL_FILES = [ROOT / paths.DESCRIPTION, *(ROOT / paths.EXPORT / f
                                          for f in stages.export.FORMATS.values()),
              ROOT / paths.DECODED / "test.images.npy"]
REAL_MISSING = [str(path) for path in REAL_FILES if not path.exists()]


@pytest.mark.skipif(bool(REAL_MISSING), reason=f"the real artifact or the decoded test split "
                    f"is not in the workspace (dvc repro export); missing: "
                    f"{', '.join(REAL_MISSING)}")
def test_real_exports_answer_as_the_real_model_on_decoded_test_images(monkeypatch):
    monkeypatch.chdir(ROOT)
    images = load_decoded("test")[0][::25]  # 40 images, both classes
    keras_model = serving.load(paths.EXPORT_MODEL)
    keras_p = keras_model(images)
    for path in (paths.SAVED_MODEL, paths.TFLITE_FLOAT32):
        np.testing.assert_allclose(serving.load(path)(images), keras_p,
                                   atol=REAL_FLOAT_TOLERANCE)
    int8 = serving.load(paths.TFLITE_INT8)
    assert np.mean(np.array(int8.classes_of(int8(images))) ==
                   keras_model.classes_of(keras_p)) >= 0.95
