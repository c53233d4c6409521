"""Stage export: models/final.keras with its preprocessing inside, as a SavedModel (uint8 RGB
images of any size) and as TFLite float32 and full-integer int8 models (uint8 RGB at
model.image_size), each scored on the test split beside the Keras model.

Scored on the pipeline's own decoded test images (data/decoded/test.images.npy), so a
format that differs from the Keras model differs by its conversion alone. Metrics (accuracy,
agreement with the Keras model, size) go to reports/export/metrics.json; latency and
throughput, which change from run to run, go to reports/timing/.
"""
import json
import shutil
import time

import keras
import numpy as np

from catsdogs import params, paths, serving
from catsdogs.data import load_decoded
from catsdogs.models import BACKBONES
from catsdogs.training import write_timing

OUT = paths.EXPORT_REPORTS
FORMATS = {"keras": paths.FINAL_MODEL, "saved_model": paths.SAVED_MODEL,
           "tflite_float32": paths.TFLITE_FLOAT32, "tflite_int8": paths.TFLITE_INT8}


def main():
    p = params.load()
    knobs = p.export
    threshold = p.evaluate.threshold
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(paths.EXPORT, ignore_errors=True)
    paths.EXPORT.mkdir(parents=True)

    # Export: the SavedModel, then both TFLite models from it.
    start = time.perf_counter()
    model = keras.models.load_model(paths.FINAL_MODEL)
    serving.export_saved_model(model, BACKBONES[p.model.backbone].preprocess,
                               p.model.image_size, paths.SAVED_MODEL)
    paths.TFLITE_FLOAT32.write_bytes(serving.convert_tflite(paths.SAVED_MODEL))
    # Calibration images: a seeded draw from the train split, never from test.
    train_images, _ = load_decoded("train")
    draw = np.random.default_rng(knobs.representative_seed).choice(
        len(train_images), min(knobs.representative_images, len(train_images)), replace=False)
    paths.TFLITE_INT8.write_bytes(serving.convert_tflite(paths.SAVED_MODEL,
                                                         train_images[np.sort(draw)]))
    timing = {"export_seconds": round(time.perf_counter() - start, 1)}
    del train_images

    # Score every format on the same decoded test images, timing batches and single images.
    images, labels = load_decoded("test")
    probability = {}
    for name, path in FORMATS.items():
        print(f"export: scoring {name} ({path})")
        probability[name], timing[name] = measure(serving.load(path, knobs.tflite_threads),
                                                  images, knobs.batch_size, knobs.latency_runs)
    keras_says_dog = probability["keras"] >= threshold
    metrics = {}
    for name, path in FORMATS.items():
        says_dog = probability[name] >= threshold
        metrics[name] = {
            "accuracy": float(np.mean(says_dog == (labels == 1))),
            "agreement_with_keras": float(np.mean(says_dog == keras_says_dog)),
            "max_probability_difference": float(np.max(np.abs(probability[name] -
                                                              probability["keras"]))),
            "size_bytes": serving.size_bytes(path),
        }
        print(f"export: {name}: {metrics[name]}, {timing[name]}")

    float32, int8 = metrics["tflite_float32"], metrics["tflite_int8"]
    drop = float32["accuracy"] - int8["accuracy"]
    ratio = float32["size_bytes"] / int8["size_bytes"]
    metrics["int8_goals"] = {
        "accuracy_drop": drop, "accuracy_drop_max": knobs.int8_accuracy_drop_max,
        "accuracy_met": drop <= knobs.int8_accuracy_drop_max,
        "size_ratio": ratio, "size_ratio_min": knobs.int8_size_ratio_min,
        "size_met": ratio >= knobs.int8_size_ratio_min}
    metrics["test_images"] = len(labels)
    (OUT / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    timing["tflite_threads"] = serving.tflite_threads(knobs.tflite_threads)
    write_timing(OUT, timing)


def measure(classifier, images, batch_size, latency_runs):
    """(p(dog) of every image, batch_size at a time; the timings of that and of single images).
    A warm-up call first: the first call builds the graph or allocates the tensors."""
    classifier(images[:1])
    start = time.perf_counter()
    probability = serving.probabilities(classifier, images, batch_size)
    batch_seconds = time.perf_counter() - start
    latencies = []
    for i in range(latency_runs):
        start = time.perf_counter()
        classifier(images[i % len(images)][None])
        latencies.append(time.perf_counter() - start)
    return probability, {"latency_ms_median": round(1000 * float(np.median(latencies)), 2),
                         "batch_images_per_second": round(len(images) / batch_seconds, 1)}


if __name__ == "__main__":
    main()
