"""Stage evaluate: final (fine-tuned) and baseline models on train, val and test. Training
accuracy (user's definition): Keras' last epoch, augmented, dropout on; clean accuracy beside it."""
import keras
import pandas as pd

from catsdogs import params, paths, plots, verdicts
from catsdogs.data import eval_split
from catsdogs.decoded import read_split
from catsdogs.evaluation import (Bootstrap, calibration, confusion, correct, last_epoch, mcnemar,
                                 per_class, predicted, probability_columns, score,
                                 top_confidence)
from catsdogs.models import seed_everything
from catsdogs.reports import fill, read_json, write_json, write_text, write_timing

MODELS = {"final": paths.FINAL_MODEL, "baseline": paths.BASELINE_MODEL}
LIVE_DIRS = {"head": paths.HEAD_LIVE, "final": paths.FINETUNE_LIVE, "baseline": paths.BASELINE_LIVE}
OUT = paths.EVALUATE_REPORTS


def main():
    p = params.load()
    class_names, targets = sorted(p.classes), p.evaluate
    seed_everything(p.train.seed)

    metrics, test_probabilities, speeds = {}, {}, {}
    for name, path in MODELS.items():
        print(f"evaluate: {name} model ({path})")
        model = keras.models.load_model(path)  # safe_mode (the default): no code is loaded
        if max(2, model.output_shape[-1]) != len(class_names):  # one sigmoid unit: 2 classes
            raise SystemExit(f"evaluate: {path} tells {max(2, model.output_shape[-1])} classes "
                             f"apart, params.yaml names {len(class_names)}; rerun training")
        splits, probabilities, speeds[name] = score(  # raw pixels: the model preprocesses
            model, {split: eval_split(split, p.train.batch_size) for split in paths.SPLITS},
            targets.threshold, Bootstrap.of(targets))
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

    write_test_reports(test, test_probabilities, targets, class_names)
    draw(metrics, test, test_probabilities, targets, class_names)
    write_text(OUT / "summary.md", summary_table(metrics, targets.confidence))
    print((OUT / "summary.md").read_text())


def write_test_reports(test, test_probabilities, targets, class_names):
    """Per image (the data behind DVC's confusion plot: class, final_predicted), per class
    (both models), and the final model's calibration."""
    for name, probabilities in test_probabilities.items():
        for column, values in probability_columns(probabilities, class_names).items():
            test[f"{name}_{column}"] = values.round(5)
        test[f"{name}_predicted"] = [class_names[k] for k in
                                     predicted(probabilities, targets.threshold)]
    test.to_csv(OUT / "test_predictions.csv", index=False)
    tables = {name: per_class(test["label"], probabilities, targets.threshold, class_names)
              for name, probabilities in test_probabilities.items()}
    pd.concat(tables, names=["model", None]).reset_index(level="model").round(5) \
        .to_csv(OUT / "per_class.csv", index=False)
    calibrated = calibration(test["label"], test_probabilities["final"], targets.threshold)
    write_json(OUT / "calibration.json", {"model": "final", "split": "test", **calibrated})
    plots.reliability(OUT / "calibration.png", calibrated, "final model, test")


def draw(metrics, test, test_probabilities, targets, class_names):
    """Learning curves, ROC (two classes), confusion matrices and the most confident mistakes."""
    plots.learning_curves(OUT / "learning_curves.png",  # head, final, baseline: LIVE_DIRS' order
                          *(plots.read_history(live) for live in LIVE_DIRS.values()),
                          targets.val_accuracy_min, targets.train_accuracy_max)
    if len(class_names) == 2:
        plots.roc(OUT / "roc.png", {name: (test["label"], test[f"{name}_probability"],
                                           metrics[name]["test"]["roc_auc"]) for name in MODELS})
    else:
        plots.note(OUT / "roc.png", "ROC curves are drawn for two classes.\nWith more: "
                   "the one-vs-rest macro ROC AUC in metrics.json.")
    plots.confusion(OUT / "confusion_matrix.png",
                    {f"{name}, test": confusion(test["label"], probabilities, targets.threshold)
                     for name, probabilities in test_probabilities.items()}, class_names)
    mistakes = test.assign(predicted=test["final_predicted"], confidence=top_confidence(
        test_probabilities["final"], targets.threshold))
    mistakes = mistakes[mistakes["predicted"] != mistakes["class"]]
    plots.misclassified_grid(OUT / "misclassified.png",
                             mistakes.sort_values("confidence", ascending=False)
                             .head(targets.misclassified_shown))


def summary_table(metrics, confidence):
    """The before/after table, the targets, and what the numbers say in sentences (worded
    from catsdogs.verdicts), so a failed target cannot hide in a table."""
    said, paired = verdicts.recipe(metrics), metrics["final_vs_baseline_test"]
    cap_missed = ""
    if said["cap_missed"]:
        old_sense = "overfits" if said["overfits_old_sense"] else "missed"
        cap_missed = fill(f"evaluate_summary_cap_{old_sense}.md", **metrics)
    two_classes = "precision" in metrics["final"]["test"]  # classifier_metrics' keys for K == 2
    test_rows = fill(f"evaluate_summary_{'two_classes' if two_classes else 'classes'}.md",
                     **metrics)
    return fill("evaluate_summary.md", **metrics, said=said, confidence=confidence,
                cap_missed=cap_missed, test_rows=test_rows,
                disagreements=paired["only_final_right"] + paired["only_baseline_right"])


if __name__ == "__main__":
    main()
