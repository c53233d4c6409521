"""Stage legacy_report (studies/legacy/dvc.yaml): the old setup and its variants in one table,
a few sentences written from the numbers, and one figure of their learning curves; the
project's baseline (stages baseline and evaluate) beside the variant that matches it."""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from catsdogs import paths, plots
from catsdogs.evaluation import Bootstrap, accuracy_interval, last_epoch, mcnemar, read_predictions
from catsdogs.reports import read_json, write_json, write_text
from studies.legacy import params

OUT, RUNS = params.REPORTS, params.RUNS
REFERENCE, BASELINE, RECIPE = "old_setup", "project_baseline", "recipe"  # the last two: evaluate's
HEADER = ["variant", "what changed", "train acc", "val acc", "train loss", "val loss",
          "clean train acc", "clean val acc", "test acc (interval)", "p vs old_setup"]


def row(keras, clean, right, reference_right, p):
    """A variant's numbers: its last epoch as Keras reported it, then clean accuracies, the
    test accuracy's bootstrap interval and McNemar's test against old_setup."""
    versus = mcnemar(right, reference_right, p.evaluate.significance)
    interval = accuracy_interval(right, Bootstrap.of(p.evaluate))
    return {**{f"keras_{key}": keras[key] for key in ("accuracy", "val_accuracy", "loss",
                                                        "val_loss")},
            "clean_train_accuracy": clean["train"]["accuracy"],
            "clean_val_accuracy": clean["val"]["accuracy"],
            "test_accuracy": clean["test"]["accuracy"],
            **{f"test_{key}": value for key, value in interval.items()},
            "test_p_vs_old_setup": versus["p_value"],
            "test_differs_from_old_setup": versus["significant"]}


def what_changed(p, legacy, name):
    if name == BASELINE:
        return "stage baseline: no training augmentation"
    what = [f"{factor}: {value}" for factor, value in legacy.changes(name).items()]
    if name in legacy.recipe_variants:
        what.insert(0, f"recipe: head, then top {p.finetune.unfreeze_last} layers")
    return ", ".join(what) or "(reference)"


def table_line(name, what, r):
    test = f"{r['test_accuracy']:.3f} ({r['test_accuracy_low']:.3f}–{r['test_accuracy_high']:.3f})"
    p_value = "—" if name == REFERENCE else f"{r['test_p_vs_old_setup']:.2g}"
    numbers = [f"{r[key]:.3f}" for key in ("keras_accuracy", "keras_val_accuracy", "keras_loss",
                                           "keras_val_loss", "clean_train_accuracy",
                                           "clean_val_accuracy")]
    return "| " + " | ".join([name, what, *numbers, test, p_value]) + " |"


def reported_line(name, said):
    numbers = [f"{value:.2f}" if value is not None else "—" for value in
               (said.train_accuracy, said.val_accuracy, said.train_loss, said.val_loss)]
    return "| " + " | ".join([f"{name}, as reported", "", *numbers, "", "", "", ""]) + " |"


def test_right(names):
    """Right or wrong on each test image, in the same (path) order for every model: each
    variant's, and the baseline's and the recipe's as evaluate scored them."""
    predictions = {name: read_predictions(RUNS / name / "predictions.csv", index_col="path")
                   .sort_index() for name in names}
    evaluated = read_predictions(paths.EVALUATE_REPORTS / "test_predictions.csv",
                                 index_col="path").sort_index()
    for name, table in predictions.items():
        if not table.index.equals(evaluated.index):
            raise SystemExit(f"legacy_report: {name}'s test images differ from evaluate's; "
                             f"rerun the study")
    right = {name: table["correct"].to_numpy() for name, table in predictions.items()}
    right[BASELINE] = (evaluated["baseline_predicted"] == evaluated["class"]).to_numpy()
    right[RECIPE] = (evaluated["final_predicted"] == evaluated["class"]).to_numpy()
    return right


def table_rows(p, names, right):
    """{name: row} of every variant and of the project's baseline."""
    runs = {name: read_json(RUNS / name / "metrics.json") for name in names}
    baseline = read_json(paths.EVALUATE_REPORTS / "metrics.json")["baseline"]
    rows = {name: row(runs[name]["keras_last_epoch"], runs[name], right[name], right[REFERENCE],
                      p) for name in names}
    rows[BASELINE] = row(last_epoch(read_json(paths.BASELINE_LIVE / "metrics.json")),
                         {"train": {"accuracy": baseline["train_clean_accuracy"]},
                          "val": baseline["val"], "test": baseline["test"]},
                         right[BASELINE], right[REFERENCE], p)
    for key in ("test_p_vs_old_setup", "test_differs_from_old_setup"):
        del rows[REFERENCE][key]  # old_setup against itself
    return rows


def main():
    p, legacy = params.load()
    names = [*legacy.variants, *legacy.recipe_variants]
    right = test_right(names)
    rows = table_rows(p, names, right)
    # The variant that differs from the baseline only by training augmentation, if any.
    project_choices = dict(preprocess="backbone", batchnorm="frozen",
                           learning_rate=p.baseline.learning_rate, validation="clean")
    like_baseline = [name for name in legacy.variants if legacy.epochs == p.baseline.epochs
                     and legacy.setup(name).model_dump() == project_choices]
    order = names[:]
    order.insert(order.index(like_baseline[0]) + 1 if like_baseline else len(order), BASELINE)

    lines = ["| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    for name in order:
        lines.append(table_line(name, what_changed(p, legacy, name), rows[name]))
        if name in legacy.reported:
            lines.append(reported_line(name, legacy.reported[name]))
    lines += ["", "train/val acc and loss: the last epoch as Keras reports it, as each row "
              "trains (augmented batches except the baseline's; BatchNorm on batch statistics "
              "where it is trainable; validation as the row draws it). clean: no augmentation, "
              f"inference mode. test interval: {p.evaluate.confidence:.0%}, bootstrap. p: "
              "McNemar's exact test on the test images against old_setup "
              f"(p ≥ {p.evaluate.significance}: noise).", ""]
    lines += findings(p, legacy, rows, right, like_baseline)
    text = "\n".join(lines) + "\n"
    write_text(OUT / "legacy.md", text)
    write_json(OUT / "metrics.json", rows)
    curves(p, legacy, names)
    print(text)


def verdict(significant):
    return "a difference" if significant else "noise"


def versus_old_setup(r):
    return f"p = {r['test_p_vs_old_setup']:.2g}: {verdict(r['test_differs_from_old_setup'])}"


def findings(p, legacy, rows, right, like_baseline):
    """Sentences from the numbers: what each single change does to test accuracy, and which
    of them closes the gap between old_setup and the variant with every change."""
    reference = rows[REFERENCE]

    def gain(name):  # test accuracy over old_setup's
        return rows[name]["test_accuracy"] - reference["test_accuracy"]
    out = [f"- {REFERENCE}: Keras reports train {reference['keras_accuracy']:.3f} / val "
           f"{reference['keras_val_accuracy']:.3f}; clean val "
           f"{reference['clean_val_accuracy']:.3f}, test {reference['test_accuracy']:.3f}."]
    single = [name for name in legacy.variants if len(legacy.changes(name)) == 1]
    for name in single:
        (factor, value), = legacy.changes(name).items()
        r = rows[name]
        val_change = r["keras_val_accuracy"] - reference["keras_val_accuracy"]
        out.append(f"- {name} ({factor} {getattr(legacy.old_setup, factor)} → {value}): test "
                   f"{r['test_accuracy']:.3f} ({gain(name):+.3f}, {versus_old_setup(r)}); Keras val "
                   f"{r['keras_val_accuracy']:.3f} ({val_change:+.3f}).")
    full = max(legacy.variants, key=lambda name: len(legacy.changes(name)))
    if len(legacy.changes(full)) > 1:
        real = sorted((n for n in single if rows[n]["test_differs_from_old_setup"]),
                      key=gain, reverse=True)
        helps = [n for n in real if gain(n) > 0]
        closes = ", ".join(f"{n} {gain(n) / gain(full):.0%}" if gain(full) else n for n in helps)
        hurts = ", ".join(f"{n} ({gain(n):+.3f})" for n in real if gain(n) < 0)
        out.append(f"- All changes together ({full}): test {gain(full):+.3f} "
                   f"({versus_old_setup(rows[full])}). " + (
                       f"Of that, one change alone closes: {closes}. " if helps else
                       "No single change improves test accuracy beyond noise. ") + (
                       f"Alone, these make it worse: {hurts}. " if hurts else "") +
                   "Every other single change is noise.")
    for name in like_baseline:
        against = mcnemar(right[name], right[BASELINE], p.evaluate.significance)
        out.append(f"- {name} differs from the project's baseline only by training augmentation "
                   f"(the baseline trains on clean batches): test "
                   f"{rows[name]['test_accuracy']:.3f} vs {rows[BASELINE]['test_accuracy']:.3f}"
                   f" (p = {against['p_value']:.2g}: {verdict(against['significant'])}).")
    for name in legacy.recipe_variants:
        r, said = rows[name], legacy.reported.get(name)
        claimed = f" (claimed {said.train_accuracy:.2f} / {said.val_accuracy:.2f})" if said else ""
        against = mcnemar(right[name], right[RECIPE], p.evaluate.significance)
        out.append(f"- {name}: Keras reports train {r['keras_accuracy']:.3f} / val "
                   f"{r['keras_val_accuracy']:.3f}{claimed}; clean test {r['test_accuracy']:.3f}"
                   f"; against the project's recipe on test, only {name} is right on "
                   f"{against['only_a_right']} images, only the recipe on "
                   f"{against['only_b_right']} (p = {against['p_value']:.2g}: "
                   f"{verdict(against['significant'])}).")
    return out


def curves(p, legacy, names):
    """Train vs val accuracy per epoch as Keras reported them, one panel per variant."""
    columns = min(4, len(names))
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.0 * rows), sharey=True,
                             squeeze=False)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.ravel(), names):
        phases = ["head", "finetune"] if name in legacy.recipe_variants else ["train"]
        history = pd.concat([plots.read_history(RUNS / name / phase) for phase in phases],
                            ignore_index=True)
        epochs = np.arange(1, len(history) + 1)
        ax.plot(epochs, history["accuracy"], "-o", ms=3, color="tab:blue", label="train")
        ax.plot(epochs, history["val_accuracy"], "-o", ms=3, color="tab:orange", label="val")
        if len(phases) > 1:
            ax.axvline(p.train_head.epochs + 0.5, color="grey", lw=1)  # fine-tuning starts
        if said := legacy.reported.get(name):
            ax.axhline(said.train_accuracy, color="tab:blue", ls=":", label="reported train")
            ax.axhline(said.val_accuracy, color="tab:orange", ls=":", label="reported val")
        ax.set_title(name, fontsize=10)
        ax.set(xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0, 0].set(ylabel="accuracy (Keras)", ylim=(None, 1.02))
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle("Old setup and variants: train vs val accuracy per epoch, as Keras reported "
                 "them (dotted: what the old runs reported)", fontsize=11)
    plots.save(fig, OUT / "curves.png")


if __name__ == "__main__":
    main()
