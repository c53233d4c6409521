"""Stage evaluate: final (fine-tuned) and baseline models on train, val and test. Training
accuracy (user's definition): Keras' last epoch, augmented, dropout on; clean accuracy beside it."""
import keras

from catsdogs import params, paths, plots, verdicts
from catsdogs.data import eval_split
from catsdogs.decoded import read_split
from catsdogs.evaluation import Bootstrap, correct, last_epoch, mcnemar, score
from catsdogs.models import BACKBONES, seed_everything
from catsdogs.reports import fill, read_json, write_json, write_text, write_timing

MODELS = {"final": paths.FINAL_MODEL, "baseline": paths.BASELINE_MODEL}
LIVE_DIRS = {"head": paths.HEAD_LIVE, "final": paths.FINETUNE_LIVE, "baseline": paths.BASELINE_LIVE}
OUT = paths.EVALUATE_REPORTS


def main():
    p = params.load()
    class_names, targets = sorted(p.classes), p.evaluate
    preprocess = BACKBONES[p.model.backbone].preprocess
    seed_everything(p.train.seed)

    metrics, test_probabilities, speeds = {}, {}, {}
    for name, path in MODELS.items():
        print(f"evaluate: {name} model ({path})")
        model = keras.models.load_model(path)  # safe_mode (the default): no code is loaded
        splits, probabilities, speeds[name] = score(
            model, {split: eval_split(split, p.train.batch_size, preprocess)
                    for split in paths.SPLITS}, targets.threshold, Bootstrap.of(targets))
        test_probabilities[name] = probabilities["test"]
        reported = last_epoch(read_json(LIVE_DIRS[name] / "metrics.json"))["accuracy"]
        clean, val = splits["train"]["accuracy"], splits["val"]["accuracy"]
        metrics[name] = {"train_accuracy": reported, "train_clean_accuracy": clean,
                         "gap_train_val": reported - val, "gap_clean_train_val": clean - val,
                         "val": splits["val"], "test": splits["test"]}
    test = read_split("test")
    paired = mcnemar(*(correct(test["label"], test_probabilities[name], targets.threshold)
                       for name in MODELS), targets.significance)
    metrics["final_vs_baseline_test"] = {
        "only_final_right": paired["only_a_right"], "only_baseline_right": paired["only_b_right"],
        "p_value": paired["p_value"], "significant": paired["significant"]}
    metrics["targets"] = verdicts.targets(metrics["final"], targets)
    write_json(OUT / "metrics.json", metrics)
    write_timing(OUT, {f"{name}_predict_images_per_second": s for name, s in speeds.items()})

    # Per-image test predictions: the data behind the ROC, confusion matrix and mistakes.
    for name, probabilities in test_probabilities.items():
        test[f"{name}_probability"] = probabilities.round(5)
        test[f"{name}_predicted"] = [class_names[int(p >= targets.threshold)]
                                     for p in probabilities]
    test.to_csv(OUT / "test_predictions.csv", index=False)
    draw(metrics, test, targets, class_names)
    write_text(OUT / "summary.md", summary_table(metrics, targets.confidence))
    print((OUT / "summary.md").read_text())


def draw(metrics, test, targets, class_names):
    """Learning curves, ROC, confusion matrices and the most confident mistakes."""
    plots.learning_curves(OUT / "learning_curves.png",  # head, final, baseline: LIVE_DIRS' order
                          *(plots.read_history(live) for live in LIVE_DIRS.values()),
                          targets.val_accuracy_min, targets.train_accuracy_max)
    plots.roc(OUT / "roc.png", {name: (test["label"], test[f"{name}_probability"],
                                       metrics[name]["test"]["roc_auc"]) for name in MODELS})
    plots.confusion(OUT / "confusion_matrix.png",
                    {f"{name}, test": metrics[name]["test"] for name in MODELS}, class_names)
    wrong = test[test["final_predicted"] != test["class"]].copy()
    wrong["probability"] = wrong["final_probability"]
    wrong["confidence"] = (wrong["probability"] - targets.threshold).abs()
    plots.misclassified_grid(OUT / "misclassified.png",
                             wrong.sort_values("confidence", ascending=False)
                             .head(targets.misclassified_shown), class_names)


def summary_table(metrics, confidence):
    """The before/after table, the targets, and what the numbers say in sentences (worded
    from catsdogs.verdicts), so a failed target cannot hide in a table."""
    said, paired = verdicts.recipe(metrics), metrics["final_vs_baseline_test"]
    cap_missed = ""
    if said["cap_missed"]:
        old_sense = "overfits" if said["overfits_old_sense"] else "missed"
        cap_missed = fill(f"evaluate_summary_cap_{old_sense}.md", **metrics)
    return fill("evaluate_summary.md", **metrics, said=said, confidence=confidence,
                cap_missed=cap_missed,
                disagreements=paired["only_final_right"] + paired["only_baseline_right"])


if __name__ == "__main__":
    main()
