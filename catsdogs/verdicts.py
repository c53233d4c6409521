"""What the numbers say, decided here once: stage evaluate's summary, stage compare_report's
table, the model card and the README only word these verdicts. No imports: any report can
use it."""


def met(flag):
    return "met" if flag else "NOT met"


def difference(significant, short=False):
    """McNemar's verdict on two models' test images (`significant`: p below
    evaluate.significance), for a sentence or, short, for a table cell."""
    if short:
        return "differs" if significant else "noise"
    return "a real difference" if significant else "within noise"


def targets(final, evaluate):
    """The recipe's targets (params.evaluate) against its metrics in evaluate's layout."""
    val_met = final["val"]["accuracy"] > evaluate.val_accuracy_min
    train_met = final["train_accuracy"] < evaluate.train_accuracy_max
    return {"val_accuracy_min": evaluate.val_accuracy_min, "val_accuracy_met": val_met,
            "train_accuracy_max": evaluate.train_accuracy_max, "train_accuracy_met": train_met,
            "all_met": val_met and train_met}


def recipe(evaluated):
    """The verdicts on evaluate's metrics.json: each target met or NOT met; whether the
    training-accuracy cap is missed and, if so, whether that is overfitting in the old sense
    (the old runs' 0.98 / 0.70: the cap missed and the val target too) or only what
    augmentation and dropout do to the accuracy Keras reports; and McNemar's verdict on the
    recipe against the baseline."""
    checked = evaluated["targets"]
    cap_missed = not checked["train_accuracy_met"]
    return {"val_target": met(checked["val_accuracy_met"]),
            "train_target": met(checked["train_accuracy_met"]),
            "cap_missed": cap_missed,
            "overfits_old_sense": cap_missed and not checked["val_accuracy_met"],
            "versus_baseline": difference(evaluated["final_vs_baseline_test"]["significant"])}
