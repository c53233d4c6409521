"""Stage export on a tiny project (32 px, random-weights backbone, head trained on tinted
images): the SavedModel and TFLite files answer as the Keras model does on the pipeline's own
decoded inputs, the SavedModel resizes raw images exactly as data.decode_image does, and a
second export writes the same bytes (dvc.lock must not change on a rerun)."""
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
from catsdogs import paths, serving
from catsdogs.data import decode_image
from catsdogs.decoded import load_decoded, save_decoded
from catsdogs.models import (BACKBONES, build_classifier, compile_binary, find_base,
                             save_model, seed_everything)
from conftest import ROOT, decode_files, make_dataset, tiny_params, write_image

# Float formats do the same arithmetic in another order: p(dog) within 1e-5 of the Keras
# model's for the real one, a little more for this sharper tiny one.
FLOAT_TOLERANCE, REAL_FLOAT_TOLERANCE = 5e-5, 1e-5
HEAD_EPOCHS = 10         # the head fits the tinted train images
HEAD_LEARNING_RATE = 0.01
EXPORTED = [paths.SAVED_MODEL, paths.TFLITE_FLOAT32, paths.TFLITE_INT8]


def make_exported_project(root, write_params):
    """root as a project folder after stage export: params.yaml (tiny), data/decoded/, a
    small trained models/final.keras and everything export writes."""
    root.mkdir(parents=True)
    raw = write_params(root)
    size, backbone = raw["model"]["image_size"], raw["model"]["backbone"]
    images = make_dataset(root / "images", per_class={"train": 12, "validation": 6})
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(root)
        for split, folder in (("train", "train"), ("test", "validation")):
            files = sorted(str(f) for f in (images / folder).rglob("*.jpg"))
            save_decoded(split, decode_files(files, size), [float("/dogs/" in f) for f in files])
        seed_everything(raw["train"]["seed"])
        model = build_classifier(backbone, size, None, raw["train_head"]["dropout"],
                                 raw["train"]["seed"])
        train_images, train_labels = load_decoded("train")
        inputs = BACKBONES[backbone].preprocess(train_images[:].astype("float32"))
        set_batchnorm_statistics(find_base(model), inputs)
        compile_binary(model, HEAD_LEARNING_RATE)
        model.fit(inputs, train_labels, epochs=HEAD_EPOCHS, verbose=0)
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


@pytest.fixture(scope="module")
def project(exported_project, tmp_path_factory):
    """A copy of conftest's exported_project (made by make_exported_project)."""
    return shutil.copytree(exported_project, tmp_path_factory.mktemp("export") / "project")


@pytest.fixture
def in_project(project, monkeypatch):
    monkeypatch.chdir(project)
    return project


def test_float_formats_match_the_keras_model_and_int8_mostly_agrees(in_project):
    images, labels = load_decoded("test")
    images = images[:]  # all rows, read from disk
    keras_p = serving.load(paths.FINAL_MODEL)(images)
    assert 0 < keras_p.min() < 0.5 < keras_p.max() < 1  # a model that tells them apart
    for path in (paths.SAVED_MODEL, paths.TFLITE_FLOAT32):
        np.testing.assert_allclose(serving.load(path)(images), keras_p, atol=FLOAT_TOLERANCE)
    # A random backbone quantizes poorly (wide, arbitrary activation ranges): int8 must agree
    # on most images here (a broken conversion lands near chance); the real model's test
    # below asks for 95%, and stage export measures it on the real test split.
    int8_p = serving.load(paths.TFLITE_INT8)(images)
    assert np.mean((int8_p >= 0.5) == (keras_p >= 0.5)) >= 0.75


def test_metrics_hold_accuracy_agreement_and_size_per_format_and_no_timings(in_project):
    metrics = json.loads((paths.EXPORT_REPORTS / "metrics.json").read_text())
    images, labels = load_decoded("test")
    images = images[:]  # all rows, read from disk
    assert metrics["test_images"] == len(labels)
    keras_says_dog = serving.load(paths.FINAL_MODEL)(images) >= 0.5
    for name, path in stages.export.FORMATS.items():
        says_dog = serving.load(path)(images) >= 0.5
        assert metrics[name]["accuracy"] == pytest.approx(np.mean(says_dog == (labels == 1)))
        assert metrics[name]["agreement_with_keras"] == pytest.approx(
            np.mean(says_dog == keras_says_dog))
        assert metrics[name]["size_bytes"] == serving.size_bytes(path) > 0
    assert metrics["keras"]["agreement_with_keras"] == 1
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
    size = tiny_params()["model"]["image_size"]
    for path in (paths.TFLITE_FLOAT32, paths.TFLITE_INT8):
        interpreter = tf.lite.Interpreter(model_path=str(path))
        given = interpreter.get_input_details()[0]
        assert given["dtype"] == np.uint8 and list(given["shape_signature"]) == [-1, size, size, 3]
        assert given["quantization"] == (0.0, 0)  # pixels as they are: no scale to apply
    ops = {op["op_name"] for op in tf.lite.Interpreter(
        model_path=str(paths.TFLITE_INT8))._get_ops_details()}
    assert "CONV_2D" in ops and "DEQUANTIZE" not in ops  # integer all the way through
    convs = [t for t in tf.lite.Interpreter(model_path=str(paths.TFLITE_INT8)).get_tensor_details()
             if t["dtype"] == np.int8]
    assert convs, "no int8 tensors in the int8 model"


def test_the_saved_model_resizes_raw_images_of_any_size_as_decode_image_does(in_project,
                                                                            tmp_path):
    size = tiny_params()["model"]["image_size"]
    keras_model = serving.load(paths.FINAL_MODEL)
    saved_model = serving.load(paths.SAVED_MODEL)
    rng = np.random.default_rng(1)
    shapes = [((48, 40), "JPEG"), ((17, 90), "PNG"), ((size, size), "PNG"), ((301, 203), "JPEG")]
    for i, (shape, fmt) in enumerate(shapes):
        path = tmp_path / f"image{i}.{fmt.lower()}"
        write_image(path, (120, 90, 200), rng, size=shape, fmt=fmt)
        data = path.read_bytes()
        raw, resized = decode_image(data), decode_image(data, size)
        assert raw.shape[:2] == (shape[1], shape[0])
        np.testing.assert_allclose(saved_model(raw[None].numpy()),
                                   keras_model(resized[None].numpy()), atol=FLOAT_TOLERANCE)


def test_a_second_export_writes_the_same_bytes_and_metrics(in_project):
    def digests():
        files = [f for path in EXPORTED for f in sorted([path, *path.rglob("*")]) if f.is_file()]
        files.append(paths.EXPORT_REPORTS / "metrics.json")
        return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}

    before = digests()
    assert len(before) > 4  # the SavedModel's files too
    export(in_project)
    assert digests() == before


def test_metrics_of_the_real_model_are_committed_for_the_three_formats():
    committed = ROOT / paths.EXPORT_REPORTS / "metrics.json"
    if not committed.is_file():
        pytest.skip(f"{committed} not there: run stage export (dvc repro export)")
    metrics = json.loads(committed.read_text())
    assert set(stages.export.FORMATS) <= set(metrics)
    assert metrics["tflite_float32"]["agreement_with_keras"] == 1
    assert metrics["int8_goals"]["accuracy_met"] and metrics["int8_goals"]["size_met"]


REAL_FILES = [ROOT / paths.FINAL_MODEL, *(ROOT / path for path in EXPORTED),
              ROOT / paths.DECODED / "test.images.npy"]
REAL_MISSING = [str(path) for path in REAL_FILES if not path.exists()]


@pytest.mark.skipif(bool(REAL_MISSING), reason=f"the trained model, its exports or the decoded "
                    f"test split are not in the workspace (dvc repro export); missing: "
                    f"{', '.join(REAL_MISSING)}")
def test_real_exports_answer_as_the_real_model_on_decoded_test_images(monkeypatch):
    monkeypatch.chdir(ROOT)
    images = load_decoded("test")[0][::25]  # 40 images, both classes
    keras_p = serving.load(paths.FINAL_MODEL)(images)
    for path in (paths.SAVED_MODEL, paths.TFLITE_FLOAT32):
        np.testing.assert_allclose(serving.load(path)(images), keras_p,
                                   atol=REAL_FLOAT_TOLERANCE)
    int8_p = serving.load(paths.TFLITE_INT8)(images)
    assert np.mean((int8_p >= 0.5) == (keras_p >= 0.5)) >= 0.95
