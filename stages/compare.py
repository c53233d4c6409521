"""Stage compare@<backbone>: the two-phase recipe with another backbone. model.backbone is not
rerun: compare_report takes its row from train_head, finetune and evaluate."""
import sys

from catsdogs import params, paths
from catsdogs.data import augmentation, eval_split, train_dataset
from catsdogs.decoded import load_decoded, read_split
from catsdogs.evaluation import comparison_row, correct, probability_columns, score
from catsdogs.files import locked
from catsdogs.models import BACKBONES, seed_everything
from catsdogs.reports import write_json, write_timing
from catsdogs.training import distribution, start_head_phase, two_phase


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in BACKBONES:
        raise SystemExit(f"usage: python -m stages.compare BACKBONE  ({' | '.join(BACKBONES)})")
    backbone, p = sys.argv[1], params.load()
    with locked(f"compare@{backbone}"):
        strategy = distribution(p.train.distribute)  # first: mirrored may split the CPU
        batch_size, seed, threshold = p.train.batch_size, p.train.seed, p.evaluate.threshold
        augment = augmentation(p.augment)  # flip, rotation, shift
        classes, run_dir = sorted(p.classes), paths.COMPARE_RUNS / backbone
        seed_everything(seed)  # each phase starts from the seed, as in its own stage
        val = eval_split("val", batch_size)
        model = start_head_phase(backbone, p.model.image_size, p.train_head, seed, strategy,
                                 len(classes))
        train = train_dataset(*load_decoded("train"), batch_size, augment, seed)
        summaries = two_phase(model, train, val, p.train_head, p.finetune, seed, run_dir,
                              class_weight=p.train.class_weight)

        scores, probabilities, speed = score(
            model, {split: eval_split(split, batch_size) for split in ("val", "test")}, threshold)
        row = comparison_row(backbone, *summaries, scores)  # head's, then fine-tuning's
        write_json(run_dir / "metrics.json", row)
        # Per image: compare_report's intervals, and McNemar's pairs with model.backbone's.
        for split in ("val", "test"):
            predictions = read_split(split)
            for column, values in probability_columns(probabilities[split], classes).items():
                predictions[column] = values.round(5)
            predictions["correct"] = correct(predictions["label"], probabilities[split], threshold)
            predictions.to_csv(run_dir / f"{split}_predictions.csv", index=False)
        write_timing(run_dir, {"predict_images_per_second": speed})
        print(f"compare@{backbone}: " + ", ".join(f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
