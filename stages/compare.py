"""Stage compare@<backbone>: the same two-phase recipe (train_head, then finetune) with
another backbone and its own preprocess_input; records accuracy, loss and size (wall times
and throughput go to reports/timing/). model.backbone itself is not rerun: compare_report
takes its row from train_head, finetune and evaluate.
"""
import json
import sys

from catsdogs import params, paths
from catsdogs.data import augmentation, eval_split, load_decoded, read_split, train_dataset
from catsdogs.evaluation import Bootstrap, comparison_row, score
from catsdogs.models import BACKBONES, build_classifier, compile_binary, find_base, unfreeze_top
from catsdogs.training import fit, seed_everything, write_timing


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in BACKBONES:
        raise SystemExit(f"usage: python -m stages.compare BACKBONE  ({' | '.join(BACKBONES)})")
    backbone, p = sys.argv[1], params.load()
    image_size = p.model.image_size
    weights = paths.pretrained_weights(backbone, image_size)
    batch_size, seed, threshold = p.train.batch_size, p.train.seed, p.evaluate.threshold
    bootstrap = Bootstrap(p.evaluate.bootstrap_resamples, p.evaluate.bootstrap_seed,
                          p.evaluate.confidence)
    augment = augmentation(**p.augment.model_dump())  # flip, rotation, shift
    head, tune = p.train_head, p.finetune
    preprocess = BACKBONES[backbone].preprocess
    run_dir = paths.COMPARE_RUNS / backbone

    seed_everything(seed)  # each phase starts from the seed, as in its own stage
    val, _ = eval_split("val", batch_size, preprocess)
    model = build_classifier(backbone, image_size, weights, head.dropout, seed)
    compile_binary(model, head.learning_rate)
    train = train_dataset(*load_decoded("train"), batch_size, preprocess, augment, seed)
    head_summary = fit(model, train, val, head.epochs, seed, run_dir / "head")

    seed_everything(seed)
    unfreeze_top(find_base(model), tune.unfreeze_last)
    compile_binary(model, tune.learning_rate)
    finetune_summary = fit(model, train, val, tune.epochs, seed, run_dir / "finetune")

    scores, probabilities, speed = score(
        model, {split: eval_split(split, batch_size, preprocess) for split in ("val", "test")},
        threshold, bootstrap)
    row = comparison_row(backbone, head_summary, finetune_summary, scores)
    (run_dir / "metrics.json").write_text(json.dumps(row, indent=2) + "\n")
    # Per-image test outputs: compare_report pairs them with model.backbone's (McNemar).
    test = read_split("test").assign(probability=probabilities["test"].round(5))
    test.to_csv(run_dir / "test_predictions.csv", index=False)
    write_timing(run_dir, {"predict_images_per_second": speed})
    print(f"compare@{backbone}: " + ", ".join(f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
