"""Stage export: the artifact models/export/, everything needed to classify photos elsewhere
(write_artifact), each format scored on the decoded test images beside the Keras model (so a
difference is the conversion's alone). Params that moved on since training stop the stage."""
import hashlib
import json
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import fingerprint_pb2

from catsdogs import params, paths, serving
from catsdogs.data import decode_image, resize
from catsdogs.decoded import load_decoded
from catsdogs.evaluation import calibration, predicted
from catsdogs.files import replaced, require
from catsdogs.reports import write_json, write_timing

# Each format's name in the artifact folder; keras first, the one the others are compared to.
FORMATS = {"keras": paths.EXPORT_MODEL.name, "saved_model": paths.SAVED_MODEL.name,
           "tflite_float32": paths.TFLITE_FLOAT32.name, "tflite_int8": paths.TFLITE_INT8.name}


def main():
    p = params.load()
    knobs = p.export
    model, backbone = checked_model(p)  # every input checked before anything is written
    for split in ("train", "test"):
        require(paths.DECODED / f"{split}.images.npy", "export", "decode")
    (train_images, _), (images, labels) = load_decoded("train"), load_decoded("test")
    if images.shape[1] != p.model.image_size:
        raise SystemExit(f"export: {paths.DECODED}/ holds {images.shape[1]} px images, the "
                         f"model takes {p.model.image_size} px: rerun stage decode")

    start = time.perf_counter()
    with replaced(paths.EXPORT) as folder:  # the whole artifact appears at once, or none of it
        folder.mkdir()
        write_artifact(model, backbone, sorted(p.classes), p.evaluate.threshold, folder,
                       representative(train_images, knobs))
        timing = {"export_seconds": round(time.perf_counter() - start, 1)}
        probabilities, threshold = {}, serving.read_description(folder)["threshold"]
        for name, file in FORMATS.items():
            print(f"export: scoring {name} ({paths.EXPORT / file})")
            probabilities[name], timing[name] = measure(
                serving.load(folder / file, knobs.tflite_threads), images, knobs.batch_size,
                knobs.latency_runs)
        metrics = {name: format_metrics(probabilities[name], probabilities["keras"], labels,
                                        threshold, folder / file)
                   for name, file in FORMATS.items()}
    for name in FORMATS:
        print(f"export: {name}: {metrics[name]}, {timing[name]}")
    float32, int8 = metrics["tflite_float32"], metrics["tflite_int8"]
    drop, ratio = float32["accuracy"] - int8["accuracy"], float32["size_bytes"] / int8["size_bytes"]
    metrics["int8_goals"] = {
        "accuracy_drop": drop, "accuracy_drop_max": knobs.int8_accuracy_drop_max,
        "accuracy_met": drop <= knobs.int8_accuracy_drop_max,
        "size_ratio": ratio, "size_ratio_min": knobs.int8_size_ratio_min,
        "size_met": ratio >= knobs.int8_size_ratio_min}
    metrics["test_images"] = len(labels)
    write_json(paths.EXPORT_REPORTS / "metrics.json", metrics)
    timing["tflite_threads"] = serving.tflite_threads(knobs.tflite_threads)
    write_timing(paths.EXPORT_REPORTS, timing)


def checked_model(p):
    """(models/final.keras, its backbone) if params describe it: the backbone (build_classifier
    names the model after it), the image size and the number of classes."""
    require(paths.FINAL_MODEL, "export", "finetune")
    try:
        model = serving.load_keras(paths.FINAL_MODEL)
    except serving.BadModel as error:
        raise SystemExit(f"export: {error}: rerun stage finetune") from None
    backbone, size = model.name.removesuffix("_classifier"), model.input_shape[1]
    units, classes = model.output_shape[-1], len(p.classes)
    if (backbone, size, units) != (p.model.backbone, p.model.image_size,
                                   1 if classes == 2 else classes):
        raise SystemExit(
            f"export: {paths.FINAL_MODEL} is a {backbone} model at {size} px for "
            f"{2 if units == 1 else units} classes, but params.yaml has model.backbone "
            f"{p.model.backbone}, model.image_size {p.model.image_size} and {classes} classes: "
            f"rerun the pipeline (dvc repro) or set params back to the model's")
    return model, backbone


def representative(train_images, knobs):
    """The train images (a seeded draw, in file order) that calibrate the int8 model's ranges."""
    draw = np.random.default_rng(knobs.representative_seed).choice(
        len(train_images), min(knobs.representative_images, len(train_images)), replace=False)
    return train_images[np.sort(draw)]


def write_artifact(model, backbone, classes, threshold, folder, representative_images):
    """model.keras, classifier.json, labels.txt, the SavedModel, then both TFLite models."""
    model_file = folder / paths.EXPORT_MODEL.name
    shutil.copyfile(paths.FINAL_MODEL, model_file)
    description = describe(model, backbone, classes, threshold, model_file)
    (folder / paths.DESCRIPTION.name).write_text(json.dumps(description, indent=2) + "\n")
    (folder / paths.LABELS.name).write_text("".join(f"{name}\n" for name in classes))
    saved_model = folder / paths.SAVED_MODEL.name
    export_saved_model(model, description, saved_model)
    # From the SavedModel (from_keras_model fails on Keras 3 models), one converter for both:
    # a converter reads the SavedModel when made and again per convert(), seconds each time.
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model), signature_keys=[serving.RESIZED_ENDPOINT])
    (folder / paths.TFLITE_FLOAT32.name).write_bytes(converter.convert())
    (folder / paths.TFLITE_INT8.name).write_bytes(
        quantized(converter, representative_images).convert())


def format_metrics(probabilities, keras_probabilities, labels, threshold, path):
    """One format's test accuracy, calibration, agreement with the Keras model and size."""
    says, keras_says = predicted(probabilities, threshold), predicted(keras_probabilities,
                                                                      threshold)
    return {"accuracy": float(np.mean(says == labels.astype(int))),
            "agreement_with_keras": float(np.mean(says == keras_says)),
            "max_probability_difference": float(np.max(np.abs(probabilities -
                                                              keras_probabilities))),
            "ece": calibration(labels, probabilities, threshold)["ece"],
            "size_bytes": size_bytes(path)}


def measure(classifier, images, batch_size, latency_runs):
    """(probabilities of every image, batch_size at a time; timings of that and of one image)."""
    classifier(images[:1])  # warm-up: the first call builds the graph or allocates the tensors
    start = time.perf_counter()
    probabilities = np.concatenate([classifier(images[i:i + batch_size])
                                    for i in range(0, len(images), batch_size)])
    batch_seconds = time.perf_counter() - start
    latencies = []
    for i in range(latency_runs):
        start = time.perf_counter()
        classifier(images[i % len(images)][None])
        latencies.append(time.perf_counter() - start)
    return probabilities, {"latency_ms_median": round(1000 * float(np.median(latencies)), 2),
                           "batch_images_per_second": round(len(images) / batch_seconds, 1)}


def describe(model, backbone, classes, threshold, model_file):
    """classifier.json: what a user needs beside the model file. No git commit or date: the
    bytes change only with the model (dvc.lock compares them); MODEL_CARD.md has those."""
    softmax = model.output_shape[-1] > 1
    return {"classes": list(classes), "image_size": int(model.input_shape[1]),
            "backbone": backbone, "output": "softmax" if softmax else "sigmoid",
            "threshold": None if len(classes) > 2 else threshold, "input": serving.INPUT,
            "weights": {"file": model_file.name,
                        "sha256": hashlib.sha256(model_file.read_bytes()).hexdigest()}}


def export_saved_model(model, description, path):
    """A model taking RGB 0-255 as a SavedModel of three endpoints; same model, same bytes."""
    classes, size, threshold = (description[key] for key in ("classes", "image_size",
                                                               "threshold"))

    pixels = tf.TensorSpec([None, size, size, 3], tf.uint8, "images")

    # One tf.function that every endpoint calls: the model is traced, saved and loaded once.
    @tf.function(input_signature=[pixels], autograph=False)
    def resized(images):  # (the graph's function names come from these functions' names)
        outputs = model(tf.cast(images, tf.float32), training=False)
        if outputs.shape[-1] == 1:  # one sigmoid unit: p(second class), as class_probabilities
            outputs = tf.concat([1 - outputs, outputs], axis=1)
        return {"probabilities": outputs}

    def named(images):  # as evaluation.predicted: two classes by the threshold, else arg-max
        probabilities = resized(images)["probabilities"]
        label = (tf.cast(probabilities[:, 1] >= threshold, tf.int32) if len(classes) == 2
                 else tf.argmax(probabilities, axis=1, output_type=tf.int32))
        return {"class": tf.gather(tf.constant(classes), label), "probabilities": probabilities}

    def any_size(images):
        return named(resize(images, size))

    def encoded(images):
        return named(tf.map_fn(lambda data: decode_image(data, size), images,
                               fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8)))

    archive = keras.export.ExportArchive()
    archive.track(model)
    # The first endpoint is also `serving_default`, what TF Serving calls.
    for name, function, spec in [
            (serving.PIXELS_ENDPOINT, any_size, tf.TensorSpec([None, None, None, 3], tf.uint8, "images")),
            (serving.BYTES_ENDPOINT, encoded, tf.TensorSpec([None], tf.string, "images")),
            (serving.RESIZED_ENDPOINT, resized, pixels)]:
        archive.add_endpoint(name, function, input_signature=[spec])
    _in_name_order(archive)
    archive.write_out(str(path), verbose=False)
    # Drop the fingerprint's random uuid; its graph and checkpoint hashes stay for reloads.
    fingerprint_file = Path(path) / "fingerprint.pb"
    fingerprint = fingerprint_pb2.FingerprintDef.FromString(fingerprint_file.read_bytes())
    fingerprint.ClearField("uuid")
    fingerprint_file.write_bytes(fingerprint.SerializeToString(deterministic=True))


def _in_name_order(archive):
    """Sort the variables by name before Keras writes: its order, and the bytes, vary by run."""
    list_variables = archive._filter_and_track_resources

    def listed_in_name_order():
        list_variables()
        trackable = archive._tf_trackable
        trackable._all_variables = sorted(trackable._all_variables, key=lambda v: v.name)
    archive._filter_and_track_resources = listed_in_name_order


def quantized(converter, representative_images):
    """The TFLite converter set to int8, its ranges calibrated on representative_images:
    uint8 pixels in, probabilities out in 1/256 steps."""
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([im[None]] for im in representative_images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    return converter


def size_bytes(path):
    """A file's size, or a folder's (every file below it)."""
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


if __name__ == "__main__":
    main()
