"""Stage export: models/final.keras as a SavedModel and TFLite float32 and int8 models, each
scored on the decoded test images beside it (so a difference is the conversion's alone)."""
import time

import keras
import numpy as np

from catsdogs import params, paths, serving
from catsdogs.decoded import load_decoded
from catsdogs.files import replaced
from catsdogs.models import BACKBONES
from catsdogs.reports import write_json, write_timing

FORMATS = {"keras": paths.FINAL_MODEL, "saved_model": paths.SAVED_MODEL,
           "tflite_float32": paths.TFLITE_FLOAT32, "tflite_int8": paths.TFLITE_INT8}


def main():
    p = params.load()
    knobs, threshold = p.export, p.evaluate.threshold

    start = time.perf_counter()
    with replaced(paths.EXPORT) as folder:  # every format appears at once, or none
        folder.mkdir()
        export(keras.models.load_model(paths.FINAL_MODEL), p.model, knobs, folder)
    timing = {"export_seconds": round(time.perf_counter() - start, 1)}

    images, labels = load_decoded("test")
    probability = {}
    for name, path in FORMATS.items():
        print(f"export: scoring {name} ({path})")
        probability[name], timing[name] = measure(serving.load(path, knobs.tflite_threads),
                                                  images, knobs.batch_size, knobs.latency_runs)
    metrics = {}
    for name, path in FORMATS.items():
        says_dog = probability[name] >= threshold
        metrics[name] = {
            "accuracy": float(np.mean(says_dog == (labels == 1))),
            "agreement_with_keras": float(np.mean(says_dog == (probability["keras"] >= threshold))),
            "max_probability_difference": float(np.max(np.abs(probability[name] -
                                                              probability["keras"]))),
            "size_bytes": serving.size_bytes(path),
        }
        print(f"export: {name}: {metrics[name]}, {timing[name]}")
    drop = metrics["tflite_float32"]["accuracy"] - metrics["tflite_int8"]["accuracy"]
    ratio = metrics["tflite_float32"]["size_bytes"] / metrics["tflite_int8"]["size_bytes"]
    metrics["int8_goals"] = {
        "accuracy_drop": drop, "accuracy_drop_max": knobs.int8_accuracy_drop_max,
        "accuracy_met": drop <= knobs.int8_accuracy_drop_max,
        "size_ratio": ratio, "size_ratio_min": knobs.int8_size_ratio_min,
        "size_met": ratio >= knobs.int8_size_ratio_min}
    metrics["test_images"] = len(labels)
    write_json(paths.EXPORT_REPORTS / "metrics.json", metrics)
    timing["tflite_threads"] = serving.tflite_threads(knobs.tflite_threads)
    write_timing(paths.EXPORT_REPORTS, timing)


def export(model, model_knobs, knobs, folder):
    """The SavedModel, then both TFLite models from it; int8 calibrates on train images."""
    saved_model = folder / paths.SAVED_MODEL.name
    serving.export_saved_model(model, BACKBONES[model_knobs.backbone].preprocess,
                               model_knobs.image_size, saved_model)
    (folder / paths.TFLITE_FLOAT32.name).write_bytes(serving.convert_tflite(saved_model))
    train_images, _ = load_decoded("train")
    draw = np.random.default_rng(knobs.representative_seed).choice(
        len(train_images), min(knobs.representative_images, len(train_images)), replace=False)
    (folder / paths.TFLITE_INT8.name).write_bytes(
        serving.convert_tflite(saved_model, train_images[np.sort(draw)]))


def measure(classifier, images, batch_size, latency_runs):
    """(p(dog) of every image, batch_size at a time; timings of that and of single images)."""
    classifier(images[:1])  # warm-up: the first call builds the graph or allocates the tensors
    start = time.perf_counter()
    probability = np.concatenate([classifier(images[i:i + batch_size])
                                  for i in range(0, len(images), batch_size)])
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
