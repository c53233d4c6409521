"""Where one training epoch's time goes, for the frozen-head and the fine-tuning phase.

    KERAS_HOME=/path/to/keras_home python benchmarks/epoch_profile.py [--label after]

On the real train split (throughput.write_images: 1,000 photos per class when the Keras
cache holds them), the project's model per phase (throughput.new_model) and its input
(catsdogs.data.train_dataset), op determinism on as in the pipeline. Each part is timed
alone over one epoch's batches, so the breakdown is by difference:

  reading rows     the input pipeline without augmentation, iterated alone
  augmentation     the input pipeline with augmentation, minus reading rows
  preprocessing    the model's `preprocess` layer alone, on batches in memory
  forward          the model's forward pass in training mode, minus preprocessing
  backward         loss gradient (forward + tape.gradient), minus the forward pass
  optimizer        a tf.function train step (forward, backward, Adam), minus the gradient
  Keras overhead   model.fit on batches in memory (the limit), minus the tf.function step
  input not hidden model.fit on the project's input (the epoch), minus the limit

Writes benchmarks/results/epoch_profile-<label>.json, then epoch_profile.md: the table of
every label measured so far, side by side.
"""
import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from pipeline_time import started, while_it_ran
# First: throughput puts the project on sys.path and imports catsdogs before TensorFlow.
from throughput import RESULTS, imagenet_if_cached, new_model, train_images

import keras
import tensorflow as tf

from catsdogs import params as P
from catsdogs.data import augmentation, train_dataset
from catsdogs.models import seed_everything


def with_epochs(data):
    """data, or for the code before issue 23 (one epoch's `batches`; run this script in a
    checkout of it for the `before` label) the same with its steps and epochs(first, stop)."""
    if hasattr(data, "epochs"):
        return data
    return SimpleNamespace(steps=math.ceil(data.images / data.batch_size),
                           epochs=lambda first, stop: data.batches.repeat(stop - first))


def seconds(work, repeats=2):
    """The fastest of `repeats` runs of work() (the first also traces)."""
    work()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def step_parts(model):
    """tf.functions of a training step's parts, cumulative: preprocessing alone, the forward
    pass, forward + gradient, and the whole step (with Adam's update)."""
    preprocess = model.get_layer("preprocess")
    loss_fn, optimizer = keras.losses.get(model.loss), model.optimizer
    variables = model.trainable_variables

    @tf.function
    def preprocess_only(x):
        return preprocess(x)

    @tf.function
    def forward_only(x):
        return model(x, training=True)

    @tf.function
    def gradient(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(y[:, None], model(x, training=True)))
        return tape.gradient(loss, variables)

    @tf.function
    def train_step(x, y):
        optimizer.apply_gradients(zip(gradient(x, y), variables))

    return preprocess_only, forward_only, gradient, train_step


def profile_phase(params, phase, weights, images, labels):
    batch_size, seed = params.train.batch_size, params.train.seed
    augmented = with_epochs(train_dataset(images, labels, batch_size,
                                          augmentation(params.augment), seed))
    plain = with_epochs(train_dataset(images, labels, batch_size, None, seed))
    steps = augmented.steps
    in_memory = [(tf.cast(x, tf.float32), y) for x, y in plain.epochs(0, 1)]
    model = new_model(params, phase, weights)
    preprocess_only, forward_only, gradient, train_step = step_parts(model)

    def iterate(dataset):
        return lambda: [None for _ in dataset.epochs(0, 1)]

    def over_batches(step):
        return lambda: [step(x, y) for x, y in in_memory]

    def fit(data):
        return lambda: model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)

    limit_data = tf.data.Dataset.from_tensor_slices(
        (tf.concat([x for x, _ in in_memory], 0), tf.concat([y for _, y in in_memory], 0))
    ).batch(batch_size).repeat()
    measured = {
        "reading": seconds(iterate(plain)),
        "input": seconds(iterate(augmented)),
        "preprocess": seconds(over_batches(lambda x, y: preprocess_only(x))),
        "forward": seconds(over_batches(lambda x, y: forward_only(x))),
        "gradient": seconds(over_batches(gradient)),
        "step": seconds(over_batches(train_step)),
        "limit": seconds(fit(limit_data)),
        "epoch": seconds(fit(augmented.epochs(0, 1000))),
    }
    parts = {
        "reading rows": measured["reading"],
        "augmentation": measured["input"] - measured["reading"],
        "preprocessing": measured["preprocess"],
        "forward": measured["forward"] - measured["preprocess"],
        "backward": measured["gradient"] - measured["forward"],
        "optimizer": measured["step"] - measured["gradient"],
        "Keras overhead": measured["limit"] - measured["step"],
        "input not hidden": measured["epoch"] - measured["limit"],
    }
    return {"steps": steps, "measured_seconds": rounded(measured),
            "parts_seconds": rounded(parts),
            "epoch_over_limit": round(measured["epoch"] / measured["limit"], 3)}


def rounded(values):
    return {key: round(value, 2) for key, value in values.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="now", help="the results file's suffix")
    parser.add_argument("--images-per-class", type=int, default=1000)
    parser.add_argument("--tables-only", action="store_true",
                        help="measure nothing: rewrite epoch_profile.md from the JSON files")
    args = parser.parse_args()
    if args.tables_only:
        return write_tables()
    params = P.load()
    size, weights = params.model.image_size, imagenet_if_cached(params)
    seed_everything(params.train.seed)
    with tempfile.TemporaryDirectory() as tmp:
        images, labels, source = train_images(Path(tmp), args.images_per_class, size)
    print(f"{len(labels)} images: {source}; weights: {weights}; {os.cpu_count()} cores")
    report = {"setup": {"images": len(labels), "source": source, "weights": weights,
                        "cores": os.cpu_count(), "backbone": params.model.backbone,
                        "image_size": size, "batch_size": params.train.batch_size},
              "phases": {}}
    start = started()
    for phase in ("head", "finetune"):
        print(f"{phase} ...", flush=True)
        report["phases"][phase] = profile_phase(params, phase, weights, images, labels)
    # Other work on the host slows parts unevenly: the state of the machine while it ran.
    report["setup"]["machine"] = while_it_ran(start)
    target = RESULTS.with_name(f"epoch_profile-{args.label}.json")
    target.write_text(json.dumps(report, indent=2) + "\n")
    print(f"-> {target}")
    write_tables()


def write_tables():
    """epoch_profile.md from every epoch_profile-<label>.json measured so far."""
    reports = {path.stem.split("-", 1)[1]: json.loads(path.read_text())
               for path in sorted(RESULTS.parent.glob("epoch_profile-*.json"),  # before first
                                  key=lambda path: (not path.stem.endswith("-before"), path))}
    RESULTS.with_name("epoch_profile.md").write_text(markdown(reports))
    print(markdown(reports))
    print("-> epoch_profile.md")


def markdown(reports):
    """One column per phase and label (e.g. before and after a change), seconds per epoch."""
    columns = [(label, phase) for phase in ("head", "finetune") for label in reports]
    setup = next(iter(reports.values()))["setup"]
    lines = [f"{setup['backbone']} {setup['image_size']} px, batch {setup['batch_size']}, one "
             f"epoch of {setup['images']} {'real' if 'real' in setup['source'] else 'synthetic'} "
             f"images, {setup['cores']} cores; seconds, each part timed alone (by difference).",
             "", "| part of one epoch | " + " | ".join(f"{phase}, {label}"
                                                    for label, phase in columns) + " |",
             "| --- |" + " ---: |" * len(columns)]

    def row(name, value):
        lines.append(f"| {name} | " + " | ".join(value(reports[label]["phases"][phase])
                                                 for label, phase in columns) + " |")
    for part in next(iter(reports.values()))["phases"]["head"]["parts_seconds"]:
        row(part, lambda phase, part=part: f"{phase['parts_seconds'][part]:.2f}")
    row("**epoch: model.fit on the project's input**",
        lambda phase: f"**{phase['measured_seconds']['epoch']:.2f}**")
    row("limit: model.fit on the same batches in memory",
        lambda phase: f"{phase['measured_seconds']['limit']:.2f}")
    row("epoch / limit", lambda phase: f"{phase['epoch_over_limit']:.2f}")
    # Each part is the difference of two timings taken apart: their drift can exceed a part.
    noise = -min(value for r in reports.values() for phase in r["phases"].values()
                 for value in phase["parts_seconds"].values())
    if noise > 0:
        lines += ["", f"A negative part is timing noise: each part is the difference of two "
                      f"timings over one epoch's batches, taken apart, and these drifted by up "
                      f"to {noise:.2f} s here. A part smaller than that is not resolved."]
    # A busy host slows the parts unevenly: its state while each label ran, when recorded.
    states = {label: r["setup"].get("machine") for label, r in reports.items()}
    lines += ["", "The machine while each ran: " + "; ".join(
        f"{label}: busy share {state['busy_share']:.2f}, steal {state['steal_share']:.3f}"
        if state else f"{label}: not recorded" for label, state in states.items()) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
