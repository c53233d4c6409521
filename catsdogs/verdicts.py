"""What the numbers say, decided once: evaluate's summary, compare_report's table, the model
card and the README only word these verdicts. No imports: any report can use it."""


def met(flag):
    return "met" if flag else "NOT met"


def difference(significant, short=False):
    if short:
        return "differs" if significant else "noise"
    return "a real difference" if significant else "within noise"


def targets(final, evaluate):
    """params.evaluate's targets against the recipe's metrics (evaluate's layout)."""
    val_met = final["val"]["accuracy"] > evaluate.val_accuracy_min
    train_met = final["train_accuracy"] < evaluate.train_accuracy_max
    return {"val_accuracy_min": evaluate.val_accuracy_min, "val_accuracy_met": val_met,
            "train_accuracy_max": evaluate.train_accuracy_max, "train_accuracy_met": train_met,
            "all_met": val_met and train_met}


def recipe(evaluated):
    """The verdicts on evaluate's metrics.json. A missed training-accuracy cap is overfitting
    in the old sense (the old runs' 0.98 / 0.70) only with the val target missed too; else it
    is what augmentation and dropout do to the accuracy Keras reports."""
    checked = evaluated["targets"]
    cap_missed = not checked["train_accuracy_met"]
    return {"val_target": met(checked["val_accuracy_met"]),
            "train_target": met(checked["train_accuracy_met"]), "cap_missed": cap_missed,
            "overfits_old_sense": cap_missed and not checked["val_accuracy_met"],
            "versus_baseline": difference(evaluated["final_vs_baseline_test"]["significant"])}
