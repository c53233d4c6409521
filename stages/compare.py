"""Stage compare@<backbone>: the same two-phase recipe (train_head, then finetune) with
another backbone and its own preprocess_input; records accuracy, loss and size (wall times
and throughput go to reports/timing/). model.backbone itself is not rerun: compare_report
takes its row from train_head, finetune and evaluate.
"""
import json
import sys

from catsdogs import params, paths
from catsdogs.data import augmentation, eval_split, load_decoded, read_split, train_dataset
from catsdogs.evaluation import comparison_row, correct, score
from catsdogs.models import BACKBONES, build_classifier, compile_binary
from catsdogs.training import distribution, seed_everything, two_phase, write_timing


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in BACKBONES:
        raise SystemExit(f"usage: python -m stages.compare BACKBONE  ({' | '.join(BACKBONES)})")
    backbone, p = sys.argv[1], params.load()
    strategy = distribution(p.train.distribute)  # first: mirrored may split the CPU
    image_size = p.model.image_size
    weights = paths.pretrained_weights(backbone, image_size)
    batch_size, seed, threshold = p.train.batch_size, p.train.seed, p.evaluate.threshold
    augment = augmentation(**p.augment.model_dump())  # flip, rotation, shift
    head, tune = p.train_head, p.finetune
    preprocess = BACKBONES[backbone].preprocess
    run_dir = paths.COMPARE_RUNS / backbone

    seed_everything(seed)  # each phase starts from the seed, as in its own stage
    val, _ = eval_split("val", batch_size, preprocess)
    with strategy.scope():  # the model's variables (and the optimizer's) on every device
        model = build_classifier(backbone, image_size, weights, head.dropout, seed)
        compile_binary(model, head.learning_rate)
    train = train_dataset(*load_decoded("train"), batch_size, preprocess, augment, seed)
    head_summary, finetune_summary = two_phase(model, train, val, head, tune, seed, run_dir)

    scores, probabilities, speed = score(
        model, {split: eval_split(split, batch_size, preprocess) for split in ("val", "test")},
        threshold)
    row = comparison_row(backbone, head_summary, finetune_summary, scores)
    (run_dir / "metrics.json").write_text(json.dumps(row, indent=2) + "\n")
    # Per-image outputs: compare_report draws the intervals from them and pairs the test
    # ones with model.backbone's (McNemar).
    for split in ("val", "test"):
        predictions = read_split(split)
        predictions["probability"] = probabilities[split].round(5)
        predictions["correct"] = correct(predictions["label"], probabilities[split], threshold)
        predictions.to_csv(run_dir / f"{split}_predictions.csv", index=False)
    write_timing(run_dir, {"predict_images_per_second": speed})
    print(f"compare@{backbone}: " + ", ".join(f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
