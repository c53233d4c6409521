"""Stage evaluate: final (fine-tuned) and baseline models on train, val and test.

Training accuracy follows the user's definition: what Keras reported for the last
training epoch (augmented batches, dropout active). Clean train accuracy (no
augmentation, inference mode) and the gaps are reported beside it.
"""
import json
from pathlib import Path

import keras

from catsdogs import params as P
from catsdogs import plots
from catsdogs.data import read_split
from catsdogs.evaluation import score
from catsdogs.training import last_epoch, seed_everything
from stages import baseline, finetune, train_head
from stages.split import SPLIT_DIR

MODELS = {"final": finetune.MODEL, "baseline": baseline.MODEL}
LIVE_DIRS = {"head": train_head.LIVE_DIR, "final": finetune.LIVE_DIR, "baseline": baseline.LIVE_DIR}
OUT = Path("reports/evaluate")


def main():
    params = P.load()
    seed_everything(params.train.seed)
    targets = params.evaluate
    class_names = sorted(params.validate_.classes)
    OUT.mkdir(parents=True, exist_ok=True)

    metrics, test_probabilities = {}, {}
    for name, path in MODELS.items():
        print(f"evaluate: {name} model ({path})")
        model = keras.models.load_model(path)  # safe_mode (the default): no code is loaded
        split_metrics, probabilities, speed = score(model, params, params.model.backbone,
                                                    ("train", "val", "test"))
        test_probabilities[name] = probabilities["test"]
        keras_reported = last_epoch(json.loads(Path(LIVE_DIRS[name], "metrics.json").read_text()))
        metrics[name] = {
            "train_accuracy": keras_reported["accuracy"],
            "train_clean_accuracy": split_metrics["train"]["accuracy"],
            "gap_train_val": keras_reported["accuracy"] - split_metrics["val"]["accuracy"],
            "gap_clean_train_val": split_metrics["train"]["accuracy"] - split_metrics["val"]["accuracy"],
            "val": split_metrics["val"],
            "test": split_metrics["test"],
            "predict_images_per_second": speed,
        }
    final = metrics["final"]
    metrics["targets"] = {
        "val_accuracy_min": targets.val_accuracy_min,
        "val_accuracy_met": final["val"]["accuracy"] > targets.val_accuracy_min,
        "train_accuracy_max": targets.train_accuracy_max,
        "train_accuracy_met": final["train_accuracy"] < targets.train_accuracy_max,
    }
    metrics["targets"]["all_met"] = (metrics["targets"]["val_accuracy_met"]
                                     and metrics["targets"]["train_accuracy_met"])
    (OUT / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")

    # Per-image test predictions: the data behind the ROC, confusion matrix and mistakes.
    test = read_split(SPLIT_DIR / "test.csv")
    for name, probabilities in test_probabilities.items():
        test[f"{name}_probability"] = probabilities.round(5)
        test[f"{name}_predicted"] = [class_names[int(p >= targets.threshold)]
                                     for p in probabilities]
    test.to_csv(OUT / "test_predictions.csv", index=False)

    histories = {key: plots.read_history(d) for key, d in LIVE_DIRS.items()}
    plots.learning_curves(OUT / "learning_curves.png", histories["head"], histories["final"],
                          histories["baseline"], targets.val_accuracy_min,
                          targets.train_accuracy_max)
    plots.roc(OUT / "roc.png", {name: (test["label"], test[f"{name}_probability"],
                                       metrics[name]["test"]["roc_auc"]) for name in MODELS})
    plots.confusion(OUT / "confusion_matrix.png",
                    {f"{name}, test": [[m["test"]["tn"], m["test"]["fp"]],
                                       [m["test"]["fn"], m["test"]["tp"]]]
                     for name, m in metrics.items() if name in MODELS}, class_names)
    wrong = test[test["final_predicted"] != test["class"]].copy()
    wrong["probability"] = wrong["final_probability"]
    wrong["confidence"] = (wrong["probability"] - targets.threshold).abs()
    plots.misclassified_grid(OUT / "misclassified.png",
                             wrong.sort_values("confidence", ascending=False)
                             .head(targets.misclassified_shown),
                             class_names)

    (OUT / "summary.md").write_text(summary_table(metrics))
    print((OUT / "summary.md").read_text())


def summary_table(metrics):
    def row(label, key):
        return f"| {label} | {key(metrics['baseline']):.3f} | {key(metrics['final']):.3f} |"

    targets = metrics["targets"]
    lines = [
        "| metric | before: baseline (all layers trainable) | after: frozen head + fine-tuning |",
        "| --- | --- | --- |",
        row("train accuracy (last epoch, as Keras reports it)", lambda m: m["train_accuracy"]),
        row("train accuracy (clean: no augmentation, no dropout)", lambda m: m["train_clean_accuracy"]),
        row("val accuracy", lambda m: m["val"]["accuracy"]),
        row("gap: train - val", lambda m: m["gap_train_val"]),
        row("test accuracy", lambda m: m["test"]["accuracy"]),
        row("test loss", lambda m: m["test"]["loss"]),
        row("test precision", lambda m: m["test"]["precision"]),
        row("test recall", lambda m: m["test"]["recall"]),
        row("test F1", lambda m: m["test"]["f1"]),
        row("test ROC AUC", lambda m: m["test"]["roc_auc"] or float("nan")),
        "",
        f"- val accuracy > {targets['val_accuracy_min']}: "
        f"{'met' if targets['val_accuracy_met'] else 'NOT met'}",
        f"- train accuracy < {targets['train_accuracy_max']}: "
        f"{'met' if targets['train_accuracy_met'] else 'NOT met'}",
        "",
        *plain_words(metrics),
    ]
    return "\n".join(lines) + "\n"


def plain_words(metrics):
    """What the numbers say, in sentences, so a failed target cannot hide in a table."""
    final, baseline, targets = metrics["final"], metrics["baseline"], metrics["targets"]
    words = []
    if not targets["train_accuracy_met"]:
        words.append(
            f"The training-accuracy cap is NOT met: the recipe's last epoch reports "
            f"{final['train_accuracy']:.3f} (augmented batches, dropout active), above "
            f"{targets['train_accuracy_max']}, with val accuracy {final['val']['accuracy']:.3f}. "
            f"The model is not overfitting in the old sense: clean train accuracy "
            f"{final['train_clean_accuracy']:.3f} is {final['gap_clean_train_val']:+.3f} from val.")
    words.append(
        f"The baseline (every layer trainable, no augmentation, no dropout) ends at train "
        f"{baseline['train_accuracy']:.3f} / val {baseline['val']['accuracy']:.3f} "
        f"(test {baseline['test']['accuracy']:.3f}); the recipe at train "
        f"{final['train_accuracy']:.3f} / val {final['val']['accuracy']:.3f} "
        f"(test {final['test']['accuracy']:.3f}).")
    return words


if __name__ == "__main__":
    main()
