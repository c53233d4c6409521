"""Training throughput of four input pipelines on the same data, model and steps.

    KERAS_HOME=/path/to/keras_home python benchmarks/throughput.py [--steps 50]

1. project:  decoded-once uint8 arrays -> stateless parallel augmentation (catsdogs.data)
2. old:      ImageDataGenerator(...).flow_from_directory, the original experiment's settings
3. tutorial: image_dataset_from_directory + cache + prefetch, augmentation layers in the model
4. limit:    the same training step on decoded pixels already in memory (pure compute)

For the frozen-head phase and the fine-tune phase, each method trains MobileNetV2 (model.*
params) for --steps steps after a warm-up, on the cats_and_dogs_filtered train split when
the Keras cache holds it (else generated JPEGs of similar size). The project and the limit
share one model and take turns every --block steps, so that their ratio holds on a busy
host; old and tutorial each train their own. Prints images/s and the ratios, and writes
benchmarks/results/throughput.json. Op determinism is on, as in the pipeline;
--no-determinism measures without it (written to throughput-nondeterministic.json).
"""
import argparse
import json
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import catsdogs  # noqa: E402,F401  before TensorFlow: it drops TensorFlow's CUDA-probe lines
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from catsdogs import params as P  # noqa: E402
from catsdogs.data import augmentation, image_decoder, train_dataset  # noqa: E402
from catsdogs.models import (BACKBONES, build_classifier, compile_classifier,  # noqa: E402
                             find_base, seed_everything, unfreeze_top)
from catsdogs.paths import keras_cache  # noqa: E402
from pipeline_time import machine, started, while_it_ran  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "throughput.json"
ZIP_NAME = "cats_and_dogs_filtered.zip"
CLASSES = ("cats", "dogs")
WARM_UP_STEPS = 3  # untimed steps first: the training step is traced on its first call


def write_images(folder, per_class):
    """folder/<class>/*.jpg: the real train split if cached, else synthetic 400x350 JPEGs."""
    archive_path = keras_cache() / "datasets" / ZIP_NAME
    if archive_path.is_file():
        with zipfile.ZipFile(archive_path) as archive:
            for name in CLASSES:
                members = sorted(m for m in archive.namelist()
                                 if m.startswith(f"cats_and_dogs_filtered/train/{name}/")
                                 and m.endswith(".jpg"))[:per_class]
                (folder / name).mkdir(parents=True)
                for member in members:
                    (folder / name / Path(member).name).write_bytes(archive.read(member))
        return f"real photos from {archive_path}"
    rng = np.random.default_rng(0)
    for name in CLASSES:
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(350, 400, 3), dtype="uint8")
            Image.fromarray(pixels).save(folder / name / f"{i}.jpg", quality=90)
    return f"synthetic JPEGs (no {ZIP_NAME} in the Keras cache)"


def train_images(folder, per_class, image_size):
    """(images as validate decodes them, labels, where they came from): write_images(folder)."""
    source = write_images(folder, per_class)
    paths = sorted(folder.rglob("*.jpg"))
    decode = image_decoder(image_size)
    images = np.stack([decode(path.read_bytes()).numpy() for path in paths])
    labels = np.array([float(path.parent.name == CLASSES[1]) for path in paths], "float32")
    return images, labels, source


def imagenet_if_cached(params):
    """'imagenet' when the Keras cache holds the backbone's weights, else None (random)."""
    spec, size = BACKBONES[params.model.backbone], params.model.image_size
    return "imagenet" if (keras_cache() / "models" / spec.weights_file.format(size=size)) \
        .is_file() else None


def new_model(params, phase, weights, augment_layers=None):
    """The stage's model for `phase` (0-255 pixels in, as every model takes them); with
    augment_layers, they run inside the model too."""
    size, backbone = params.model.image_size, params.model.backbone
    classifier = build_classifier(backbone, size, weights, params.train_head.dropout,
                                  params.train.seed, len(CLASSES))
    if phase == "finetune":
        unfreeze_top(find_base(classifier), params.finetune.unfreeze_last)
    model = classifier
    if augment_layers is not None:  # the tutorial: augmentation layers in the model too
        inputs = keras.Input((size, size, 3))
        model = keras.Model(inputs, classifier(augment_layers(inputs)))
    rate = params.train_head.learning_rate if phase == "head" else params.finetune.learning_rate
    compile_classifier(model, rate)
    return model


def images_per_second(model, data, steps, batch_size):
    """Steady-state speed: a short warm-up fit (tracing), then `steps` timed steps."""
    model.fit(data, steps_per_epoch=WARM_UP_STEPS, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch_size / (time.perf_counter() - start)


def paired_images_per_second(model, datasets, steps, block, batch_size):
    """{method: images/s} of one model's training step on each dataset, the methods taking
    turns every `block` steps, so that a change in the machine's speed (other work on the
    host) falls on all of them alike. Each turn starts with `block // 5` untimed steps: the
    input's buffers, full after waiting, drain to their steady state before the clock runs."""
    iterators = {method: iter(data) for method, data in datasets.items()}
    model.make_train_function()

    def train(method, count):
        for _ in range(count):
            logs = model.train_function(iterators[method])  # what fit() calls, step by step
        float(logs["loss"])  # wait for the last step

    seconds, turns = dict.fromkeys(datasets, 0.0), max(1, steps // block)
    for method in datasets:
        train(method, WARM_UP_STEPS)
    for _ in range(turns):
        for method in datasets:
            train(method, max(1, block // 5))
            start = time.perf_counter()
            train(method, block)
            seconds[method] += time.perf_counter() - start
    return {method: turns * block * batch_size / value
            for method, value in seconds.items()}


def input_pipelines(params, folder, images, labels, steps):
    """{method: a function that returns its training data} for the four methods."""
    size, batch_size, seed, knobs = (params.model.image_size, params.train.batch_size,
                                     params.train.seed, params.augment)

    def project():
        return train_dataset(images, labels, batch_size, augmentation(knobs),
                             seed).epochs(0, 1000)  # as many as asked for

    def old():
        generator = tf.keras.preprocessing.image.ImageDataGenerator(
            rotation_range=knobs.rotation_degrees, width_shift_range=knobs.shift_fraction,
            height_shift_range=knobs.shift_fraction, horizontal_flip=knobs.horizontal_flip)
        return generator.flow_from_directory(folder, target_size=(size, size),
                                             batch_size=batch_size, class_mode="binary",
                                             seed=seed)

    def tutorial():
        dataset = keras.utils.image_dataset_from_directory(
            folder, image_size=(size, size), batch_size=batch_size, label_mode="binary",
            seed=seed, verbose=False)
        dataset = dataset.cache().prefetch(tf.data.AUTOTUNE)
        for _ in dataset:  # fill the cache: the timed steps are a later epoch
            pass
        return dataset.repeat()

    def limit():
        # The project's first batches (same shuffled order, same float32 pixels) without
        # augmentation, already in memory and cycled: the same steps on free input.
        batches = train_dataset(images, labels, batch_size, None, seed)
        x, y = zip(*batches.epochs(0, 1).take(min(steps, batches.steps)))
        return tf.data.Dataset.from_tensor_slices(
            (tf.concat(x, 0), tf.concat(y, 0))).batch(batch_size).repeat()

    return {"limit": limit, "project": project, "old": old, "tutorial": tutorial}


def measure(params, weights, pipelines, rounds, steps, block):
    """({phase/method: best images/s}, {phase: each round's project / limit time ratio})."""
    knobs = params.augment
    tutorial_layers = keras.Sequential([
        keras.layers.RandomFlip("horizontal"),
        keras.layers.RandomRotation(knobs.rotation_degrees / 360),
        keras.layers.RandomTranslation(knobs.shift_fraction, knobs.shift_fraction)])
    best, by_round = {}, {"head": [], "finetune": []}
    # The machine's speed drifts: interleave the methods over rounds, keep each best; the
    # project and the limit take turns on one model within a round, for their ratio.
    for round_ in range(rounds):
        for phase in by_round:
            print(f"round {round_ + 1}: {phase}: project and limit, in turns ...", flush=True)
            speed = paired_images_per_second(
                new_model(params, phase, weights),
                {method: pipelines[method]() for method in ("project", "limit")},
                steps, block, params.train.batch_size)
            for method in ("old", "tutorial"):
                print(f"round {round_ + 1}: {phase}: {method} ...", flush=True)
                model = new_model(params, phase, weights,
                                  tutorial_layers if method == "tutorial" else None)
                speed[method] = images_per_second(model, pipelines[method](), steps,
                                                  params.train.batch_size)
            for method, value in speed.items():
                best[f"{phase}/{method}"] = max(value, best.get(f"{phase}/{method}", 0))
            by_round[phase].append(round(speed["limit"] / speed["project"], 3))
    return best, by_round


def ratios(best, by_round):
    """{phase: epoch-time ratios of the best speeds (> 1: the project takes longer), and the
    project / limit ratio of every round}; prints them against their targets."""
    targets = {"project_time_over_limit": 1.10, "project_time_over_old": 0.5,
               "project_time_over_tutorial": 1.0}
    result = {}
    for phase, rounds in by_round.items():
        speed = {m: best[f"{phase}/{m}"] for m in ("project", "old", "tutorial", "limit")}
        result[phase] = {f"project_time_over_{m}": round(speed[m] / speed["project"], 3)
                         for m in ("limit", "old", "tutorial")}
        print(f"\n{phase}: epoch time ratios (target)")
        for key, value in result[phase].items():
            verdict = "met" if value <= targets[key] else "NOT met"
            print(f"  {key:28} {value:6.2f}  (<= {targets[key]}: {verdict})")
        result[phase]["project_time_over_limit_by_round"] = rounds
        verdict = "met" if max(rounds) <= targets["project_time_over_limit"] else "NOT met"
        print(f"  project / limit, each round: {rounds} (all <= 1.10: {verdict})")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="timed steps per measurement")
    parser.add_argument("--images-per-class", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of every measurement: each method's best is kept, and "
                             "each round's project / limit ratio")
    parser.add_argument("--block", type=int, default=25,
                        help="steps per turn when the project and the limit take turns")
    parser.add_argument("--no-determinism", action="store_true",
                        help="leave TF op determinism off (the pipeline turns it on)")
    args = parser.parse_args()
    params = P.load()
    size = params.model.image_size
    weights = imagenet_if_cached(params)
    if args.no_determinism:
        keras.utils.set_random_seed(params.train.seed)
    else:
        seed_everything(params.train.seed)
    results_file = RESULTS.with_stem("throughput-nondeterministic") if args.no_determinism \
        else RESULTS

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        images, labels, source = train_images(folder, args.images_per_class, size)
        print(f"{len(labels)} images: {source}; weights: {weights}; {os.cpu_count()} cores")
        pipelines = input_pipelines(params, folder, images, labels, args.steps)
        start = started()
        best, by_round = measure(params, weights, pipelines, args.rounds, args.steps,
                                 args.block)
        # Other work on the host slows whole rounds: the state of the machine while it ran.
        state = while_it_ran(start)

    print(f"\n{'':34} {'images/s':>9}")
    for name, speed in best.items():
        print(f"{name:34} {speed:9.1f}")
    report = {"setup": {"images": len(labels), "source": source, "weights": weights,
                        "steps": args.steps, "rounds": args.rounds, "block": args.block,
                        "batch_size": params.train.batch_size, "image_size": size,
                        "backbone": params.model.backbone, "cores": os.cpu_count(),
                        "cpu": machine()["cpu"], "op_determinism": not args.no_determinism,
                        "machine": state},
              "images_per_second": {k: round(v, 1) for k, v in best.items()},
              "ratios": ratios(best, by_round)}
    results_file.parent.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps(report, indent=2) + "\n")
    results_file.with_suffix(".md").write_text(markdown(report))
    print(f"\n-> {results_file} and .md")


def markdown(report):
    """The docs' table: images/s per method and phase, and the epoch-time ratios."""
    setup, speed = report["setup"], report["images_per_second"]
    lines = [f"{setup['backbone']} {setup['image_size']} px, batch {setup['batch_size']}, "
             f"{setup['steps']} steps (best of {setup['rounds']} rounds; project and limit "
             f"in turns of {setup['block']} steps), "
             f"{setup['images']} {'real' if 'real' in setup['source'] else 'synthetic'} images, "
             f"{setup['cores']} cores ({setup['cpu']}), op determinism "
             f"{'on' if setup['op_determinism'] else 'off'}."
             + (f" While it ran: busy share {state['busy_share']}, steal share "
                f"{state['steal_share']}, load {state['load_before'][0]} before."
                if (state := setup.get("machine")) else ""), "",
             "| phase | project img/s | old img/s | tutorial img/s | limit img/s "
             "| project / limit time (<= 1.10) | the same, each round "
             "| project / old time (<= 0.5) | project / tutorial time (<= 1.0) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for phase, ratios in report["ratios"].items():
        each = ", ".join(f"{r:.2f}" for r in ratios["project_time_over_limit_by_round"])
        lines.append(f"| {phase} | " + " | ".join(
            f"{speed[f'{phase}/{m}']:.0f}" for m in ("project", "old", "tutorial", "limit"))
            + f" | {ratios['project_time_over_limit']:.2f} | {each}"
            f" | {ratios['project_time_over_old']:.2f}"
            f" | {ratios['project_time_over_tutorial']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
