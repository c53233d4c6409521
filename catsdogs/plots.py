"""Matplotlib figures for the reports, to files only (the Agg backend)."""
import io

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator
from PIL import Image
from sklearn.metrics import roc_curve

plt.switch_backend("Agg")


def read_history(live_dir):
    """A dvclive folder's per-epoch train/val accuracy and loss, one row per epoch."""
    return pd.DataFrame({
        prefix + metric: pd.read_csv(f"{live_dir}/plots/metrics/{folder}/{metric}.tsv",
                                     sep="\t")[metric].to_numpy()
        for prefix, folder in (("", "train"), ("val_", "eval")) for metric in ("accuracy", "loss")})


def learning_curves(path, head, finetune, baseline, val_min, train_max):
    """The recipe's two phases end to end beside the baseline, with the targets drawn in."""
    recipe = pd.concat([head, finetune], ignore_index=True)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, metric in zip(axes, ("accuracy", "loss")):  # epoch numbers: index + 1
        for run, column, style, ms, color, alpha, label in [
                (recipe, metric, "-o", 3, "tab:blue", None, "recipe, train"),
                (recipe, f"val_{metric}", "-o", 3, "tab:orange", None, "recipe, val"),
                (baseline, metric, "--x", 4, "tab:blue", 0.5, "baseline (all trainable), train"),
                (baseline, f"val_{metric}", "--x", 4, "tab:orange", 0.5, "baseline, val")]:
            ax.plot(run.index + 1, run[column], style, ms=ms, color=color, alpha=alpha, label=label)
        ax.axvline(len(head) + 0.5, color="grey", lw=1)
        ax.text(len(head) + 0.6, 0.98, "fine-tuning →", va="top", color="grey",
                transform=ax.get_xaxis_transform())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epoch", ylabel=metric,
               title=f"{metric}: frozen head, then fine-tuning (baseline dashed)")
        ax.grid(alpha=0.3)
    axes[0].axhline(val_min, color="tab:orange", lw=0.8, ls=":", label=f"val target > {val_min}")
    axes[0].axhline(train_max, color="tab:blue", lw=0.8, ls=":", label=f"train cap < {train_max}")
    axes[0].legend(fontsize=8, loc="lower right")
    save(fig, path)


def roc(path, curves):
    """curves: {label: (true labels, probabilities, auc)}."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, (labels, probabilities, auc) in curves.items():
        fpr, tpr, _ = roc_curve(labels, probabilities)
        ax.plot(fpr, tpr, label=f"{label} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test set")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    save(fig, path)


def confusion(path, matrices, class_names):
    """matrices: {title: K x K counts, rows actual, columns predicted}, side by side; the cells
    shrink and the names turn as K grows (readable to about 20 classes)."""
    k = len(class_names)
    side = max(4.2, 1.5 + 0.45 * k)
    fig, axes = plt.subplots(1, len(matrices), figsize=((side + 0.3) * len(matrices), side),
                             squeeze=False)
    for ax, (title, counts) in zip(axes[0], matrices.items()):
        counts = np.asarray(counts)
        ax.imshow(counts, cmap="Blues")
        for (row, col), n in np.ndenumerate(counts):
            ax.text(col, row, str(n), ha="center", va="center", fontsize=max(6, 14 - 0.4 * k),
                    color="white" if n > counts.max() / 2 else "black")
        ax.set(xticks=range(k), yticks=range(k), xticklabels=class_names,
               yticklabels=class_names, xlabel="predicted", ylabel="actual", title=title)
        if k > 2:
            ax.tick_params(axis="x", labelrotation=45)
            plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
    save(fig, path)


def reliability(path, calibrated, title):
    """calibrated: evaluation.calibration()'s ece and bins. Accuracy against mean confidence
    per bin (on the diagonal: honest probabilities), the images per bin below."""
    bins = pd.DataFrame(calibrated["bins"])
    width = bins["high"] - bins["low"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    top.bar(bins["low"], bins["accuracy"], width, align="edge", edgecolor="black", alpha=0.7,
            label="accuracy in the bin")
    top.plot(bins["confidence"], bins["accuracy"], "o", ms=4, color="tab:orange",
             label="at its mean confidence")
    top.plot([0, 1], [0, 1], color="black", lw=1, ls="--", label="perfectly calibrated")
    top.set(ylim=(0, 1), ylabel="accuracy",
            title=f"Reliability, {title}: ECE {calibrated['ece']:.3f}")
    top.legend(loc="upper left", fontsize=8)
    bars = bottom.bar(bins["low"], bins["images"], width, align="edge", color="grey")
    bottom.bar_label(bars, labels=[str(n) if n else "" for n in bins["images"]], fontsize=7)
    bottom.set(xlim=(0, 1), xlabel="confidence (probability of the predicted class)",
               ylabel="images")
    bottom.margins(y=0.25)
    save(fig, path)


def note(path, text):
    """A figure that only says why there is no figure (its file is still a stage's output)."""
    fig, ax = plt.subplots(figsize=(5, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    save(fig, path)


def misclassified_grid(path, mistakes, columns=4):
    """mistakes: rows with path, class (the true one), predicted (class) and confidence (its
    probability)."""
    rows = max(1, int(np.ceil(len(mistakes) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (_, mistake) in zip(axes.ravel(), mistakes.iterrows()):
        with Image.open(mistake["path"]) as image:
            ax.imshow(image.convert("RGB"))
        ax.set_title(f"{mistake['path'].split('/')[-1]}: is {mistake['class']}, called "
                     f"{mistake['predicted']} (p = {mistake['confidence']:.2f})", fontsize=8)
    if mistakes.empty:
        axes[0, 0].text(0.5, 0.5, "no misclassified images", ha="center")
    fig.suptitle("Misclassified test images (most confident first)")
    buffer = io.BytesIO()
    save(fig, buffer, dpi=80, format="png")
    with Image.open(buffer) as image:  # photos in a 256-colour palette: small enough for git
        image.convert("RGB").quantize(256).save(path, optimize=True)


def save(fig, path, dpi=110, **options):
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, **options)
    plt.close(fig)


def comparison(path, rows):
    """Val and test accuracy (with its bootstrap interval) and loss per backbone."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    names = [r["backbone"] for r in rows]
    for ax, metric in zip(axes, ("accuracy", "loss")):
        for offset, split in ((-0.2, "val"), (0.2, "test")):
            values = [r[f"{split}_{metric}"] for r in rows]
            spans = None if metric == "loss" else [
                [v - r[f"{split}_accuracy_low"] for v, r in zip(values, rows)],
                [r[f"{split}_accuracy_high"] - v for v, r in zip(values, rows)]]
            bars = ax.bar([i + offset for i in range(len(names))], values, 0.4, label=split,
                          yerr=spans, capsize=3)
            # Accuracy: the value inside the bar, clear of the interval's whiskers.
            ax.bar_label(bars, fmt="%.3f", fontsize=8, label_type="edge" if spans is None
                         else "center", color="black" if spans is None else "white")
        ax.set(xticks=list(range(len(names))), xticklabels=names, title=metric)
    axes[1].legend(loc="upper left")  # above the lowest losses, clear of the bars
    lowest = min(min(r["val_accuracy_low"], r["test_accuracy_low"]) for r in rows)
    # Zoom in on the differences that matter; the axis does not start at zero, so say so.
    axes[0].set(ylim=(max(0.0, lowest - 0.05), 1.0),
                title="accuracy, bars: bootstrap interval (axis zoomed)")
    save(fig, path)
