"""Throughput of the model phases and of the input pipeline, in images/s (not run by CI).

    KERAS_HOME=/path/to/keras_home python scripts/benchmark.py [--images 256]

MobileNetV2 at 160 px, batch 32. Real images come from the cached cats_and_dogs_filtered.zip
when present, otherwise synthetic JPEGs; ImageNet weights when cached, otherwise random
(speed is the same). The machine's speed drifts, so compare the ratios within one run.
"""
import argparse
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import keras  # noqa: E402

from catsdogs import params as P  # noqa: E402
from catsdogs.data import augmentation, make_dataset  # noqa: E402
from catsdogs.models import (backbone_spec, build_classifier, compile_binary, find_base,  # noqa: E402
                             keras_cache_dir, unfreeze_top)

PARAMS = P.load()  # the committed knobs: the speeds are those of the real stages
SIZE = P.get(PARAMS, "model.image_size", int)
BATCH = P.get(PARAMS, "train.batch_size", int)
BACKBONE = P.get(PARAMS, "model.backbone", str)
SEED = P.get(PARAMS, "train.seed", int)


def write_images(directory, count):
    """`count` JPEGs, half cats half dogs: from the cached zip, or synthetic noise."""
    archive_path = Path(keras_cache_dir()) / "datasets" / "cats_and_dogs_filtered.zip"
    rows = []
    if archive_path.is_file():
        print(f"images: {count} real, from {archive_path}")
        with zipfile.ZipFile(archive_path) as archive:
            for label, name in enumerate(("cat", "dog")):
                members = [f"cats_and_dogs_filtered/train/{name}s/{name}.{i}.jpg"
                           for i in range(count // 2)]
                for member in members:
                    path = directory / Path(member).name
                    path.write_bytes(archive.read(member))
                    rows.append([str(path), label, f"{name}s"])
    else:
        print(f"images: {count} synthetic 400x300 JPEGs (no dataset zip in {archive_path.parent})")
        rng = np.random.default_rng(0)
        for i in range(count):
            path = directory / f"img.{i}.jpg"
            pixels = rng.integers(0, 256, size=(300, 400, 3), dtype="uint8")
            Image.fromarray(pixels).save(path, format="JPEG")
            rows.append([str(path), i % 2, ("cats", "dogs")[i % 2]])
    return pd.DataFrame(rows, columns=["path", "label", "class"])


def images_per_second(run, count, repeats=2):
    """The best of `repeats` timed runs after a warm-up (tracing, first allocations)."""
    run()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return count / min(seconds)


def pass_over(dataset):
    for _ in dataset:
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    count = parser.parse_args().images // BATCH * BATCH
    weights_file = Path(keras_cache_dir()) / "models" / backbone_spec(BACKBONE).weights_file.format(size=SIZE)
    weights = "imagenet" if weights_file.is_file() else None
    print(f"weights: {weights or 'None (random init: ImageNet file not cached at ' + str(weights_file) + ')'}")
    preprocess = backbone_spec(BACKBONE).preprocess
    results = {}

    with tempfile.TemporaryDirectory() as tmp:
        frame = write_images(Path(tmp), count)
        print("input pipeline ...", flush=True)
        dataset = make_dataset(frame, SIZE, BATCH, preprocess)
        start = time.perf_counter()
        pass_over(dataset)  # the first pass decodes and fills the cache
        results["input: decode + resize (cache empty)"] = count / (time.perf_counter() - start)
        results["input: from the decode cache"] = images_per_second(lambda: pass_over(dataset), count)
        augmented = make_dataset(frame, SIZE, BATCH, preprocess, augment=augmentation(PARAMS))
        pass_over(augmented)
        results["input: from cache + augmentation"] = images_per_second(
            lambda: pass_over(augmented), count)
        images = np.concatenate([x.numpy() for x, _ in dataset])
        labels = frame["label"].to_numpy("float32")

    def fit():
        model.fit(images, labels, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)

    keras.utils.set_random_seed(SEED)
    model = build_classifier(BACKBONE, SIZE, weights, P.get(PARAMS, "train_head.dropout", float), SEED)
    print("forward pass (predict) ...", flush=True)
    results["forward pass (predict)"] = images_per_second(
        lambda: model.predict(images, batch_size=BATCH, verbose=0), count)
    print("frozen-head training step ...", flush=True)
    compile_binary(model, P.get(PARAMS, "train_head.learning_rate", float))
    results["train step: frozen base, head only"] = images_per_second(fit, count)
    print("fine-tuning step ...", flush=True)
    unfreeze_top(find_base(model), P.get(PARAMS, "finetune.unfreeze_last", int))
    compile_binary(model, P.get(PARAMS, "finetune.learning_rate", float))
    results["train step: fine-tune, top layers"] = images_per_second(fit, count)
    print("full-training step (baseline) ...", flush=True)
    model = build_classifier(BACKBONE, SIZE, weights, dropout=0.0, seed=SEED)
    base = find_base(model)
    unfreeze_top(base, len(base.layers))  # as the baseline stage: all but BatchNorm
    compile_binary(model, P.get(PARAMS, "baseline.learning_rate", float))
    results["train step: all layers (baseline)"] = images_per_second(fit, count)
    print("forward pass again (drift check) ...", flush=True)
    results["forward pass again (drift check)"] = images_per_second(
        lambda: model.predict(images, batch_size=BATCH, verbose=0), count)

    forward = results["forward pass (predict)"]
    print(f"\nMobileNetV2 {SIZE}px, batch {BATCH}, {count} images, "
          f"{os.cpu_count()} cores (shared: compare ratios, not absolute speeds)")
    print(f"{'':40} {'images/s':>9} {'x forward':>10}")
    for name, speed in results.items():
        print(f"{name:40} {speed:9.1f} {speed / forward:10.2f}")


if __name__ == "__main__":
    main()
