"""Stage evaluate: final (fine-tuned) and baseline models on train, val and test.

Training accuracy follows the user's definition: what Keras reported for the last
training epoch (augmented batches, dropout active). Clean train accuracy (no
augmentation, inference mode) and the gaps are reported beside it.
"""
import keras

from catsdogs import params, paths, plots, verdicts
from catsdogs.data import eval_split
from catsdogs.decoded import read_split
from catsdogs.evaluation import Bootstrap, correct, last_epoch, mcnemar, score
from catsdogs.models import BACKBONES, seed_everything
from catsdogs.reports import read_json, write_json, write_text, write_timing

MODELS = {"final": paths.FINAL_MODEL, "baseline": paths.BASELINE_MODEL}
LIVE_DIRS = {"head": paths.HEAD_LIVE, "final": paths.FINETUNE_LIVE,
             "baseline": paths.BASELINE_LIVE}
OUT = paths.EVALUATE_REPORTS


def main():
    p = params.load()
    class_names = sorted(p.classes)
    batch_size, seed = p.train.batch_size, p.train.seed
    preprocess = BACKBONES[p.model.backbone].preprocess
    targets = p.evaluate
    seed_everything(seed)

    metrics, test_probabilities, speeds = {}, {}, {}
    for name, path in MODELS.items():
        print(f"evaluate: {name} model ({path})")
        model = keras.models.load_model(path)  # safe_mode (the default): no code is loaded
        splits, probabilities, speeds[name] = score(
            model, {split: eval_split(split, batch_size, preprocess) for split in paths.SPLITS},
            targets.threshold, Bootstrap.of(targets))
        test_probabilities[name] = probabilities["test"]
        metrics[name] = model_metrics(splits, last_epoch(read_json(LIVE_DIRS[name] /
                                                                   "metrics.json")))
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


def model_metrics(splits, keras_reported):
    """A model's scores per split, its training accuracy as Keras reported it, and the gaps."""
    return {"train_accuracy": keras_reported["accuracy"],
            "train_clean_accuracy": splits["train"]["accuracy"],
            "gap_train_val": keras_reported["accuracy"] - splits["val"]["accuracy"],
            "gap_clean_train_val": splits["train"]["accuracy"] - splits["val"]["accuracy"],
            "val": splits["val"],
            "test": splits["test"]}


def draw(metrics, test, targets, class_names):
    """Learning curves, ROC, confusion matrices and the most confident mistakes."""
    histories = {key: plots.read_history(d) for key, d in LIVE_DIRS.items()}
    plots.learning_curves(OUT / "learning_curves.png", histories["head"], histories["final"],
                          histories["baseline"], targets.val_accuracy_min,
                          targets.train_accuracy_max)
    plots.roc(OUT / "roc.png", {name: (test["label"], test[f"{name}_probability"],
                                       metrics[name]["test"]["roc_auc"]) for name in MODELS})
    plots.confusion(OUT / "confusion_matrix.png",
                    {f"{name}, test": [[metrics[name]["test"][k] for k in ("tn", "fp")],
                                       [metrics[name]["test"][k] for k in ("fn", "tp")]]
                     for name in MODELS}, class_names)
    wrong = test[test["final_predicted"] != test["class"]].copy()
    wrong["probability"] = wrong["final_probability"]
    wrong["confidence"] = (wrong["probability"] - targets.threshold).abs()
    plots.misclassified_grid(OUT / "misclassified.png",
                             wrong.sort_values("confidence", ascending=False)
                             .head(targets.misclassified_shown), class_names)


def summary_table(metrics, confidence):
    """The before/after table, the targets, and what the numbers say in sentences (worded
    from catsdogs.verdicts), so a failed target cannot hide in a table."""
    final, baseline, targets = metrics["final"], metrics["baseline"], metrics["targets"]
    said = verdicts.recipe(metrics)
    lines = ["| metric | before: baseline (all layers trainable) "
             "| after: frozen head + fine-tuning |", "| --- | --- | --- |"]
    lines += [f"| {label} | {_cell(value(baseline))} | {_cell(value(final))} |"
              for label, value in _rows(f"{confidence:.0%} interval")]
    lines += ["", f"- val accuracy > {targets['val_accuracy_min']}: {said['val_target']}",
              f"- train accuracy < {targets['train_accuracy_max']}: {said['train_target']}", ""]
    if said["cap_missed"]:
        lines.append(_cap_missed(final, targets, said["overfits_old_sense"]))
    lines.append(
        f"The baseline (every layer trainable, no augmentation, no dropout) ends at train "
        f"{baseline['train_accuracy']:.3f} / val {baseline['val']['accuracy']:.3f} "
        f"(test {baseline['test']['accuracy']:.3f}); the recipe at train "
        f"{final['train_accuracy']:.3f} / val {final['val']['accuracy']:.3f} "
        f"(test {final['test']['accuracy']:.3f}).")
    paired = metrics["final_vs_baseline_test"]
    lines.append(
        f"On the same test images the two models disagree on "
        f"{paired['only_final_right'] + paired['only_baseline_right']}: only the final model is "
        f"right on {paired['only_final_right']}, only the baseline on "
        f"{paired['only_baseline_right']} (McNemar's exact test p = {paired['p_value']:.3g}: "
        f"{said['versus_baseline']}).")
    return "\n".join(lines) + "\n"


def _rows(interval):
    """(label, the value of one model's metrics) per line of the table."""
    rows = [("train accuracy (last epoch, as Keras reports it)", lambda m: m["train_accuracy"]),
            ("train accuracy (clean: no augmentation, no dropout)",
             lambda m: m["train_clean_accuracy"]),
            ("val accuracy", lambda m: m["val"]["accuracy"]),
            (f"val accuracy, {interval}", lambda m: _span(m["val"])),
            ("gap: train - val", lambda m: m["gap_train_val"]),
            ("test accuracy", lambda m: m["test"]["accuracy"]),
            (f"test accuracy, {interval}", lambda m: _span(m["test"]))]
    return rows + [(f"test {label}", lambda m, key=key: m["test"][key])
                   for label, key in (("loss", "loss"), ("precision", "precision"),
                                      ("recall", "recall"), ("F1", "f1"), ("ROC AUC", "roc_auc"))]


def _cap_missed(final, targets, overfits_old_sense):
    said = (f"The training-accuracy cap is NOT met: the recipe's last epoch reports "
            f"{final['train_accuracy']:.3f} (augmented batches, dropout active), above "
            f"{targets['train_accuracy_max']}, with val accuracy {final['val']['accuracy']:.3f}. ")
    clean = (f"clean train accuracy {final['train_clean_accuracy']:.3f} is "
             f"{final['gap_clean_train_val']:+.3f} from val.")
    if overfits_old_sense:
        return said + (f"The model is overfitting in the old sense: val accuracy is below "
                       f"{targets['val_accuracy_min']} too, and {clean}")
    return said + f"The model is not overfitting in the old sense: {clean}"


def _cell(value):
    return value if isinstance(value, str) else f"{_nan(value):.3f}"


def _nan(value):
    return float("nan") if value is None else value  # roc_auc is None with one class


def _span(split):
    return f"{split['accuracy_low']:.3f} to {split['accuracy_high']:.3f}"


if __name__ == "__main__":
    main()
