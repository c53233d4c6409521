"""Stage split: seeded, stratified train/val split of the training pool; test = validation folder.

Writes file lists (path, label, class), not copies. Labels follow the sorted class names.
"""
import json
from pathlib import Path

import pandas as pd

from catsdogs import params as P
from catsdogs.data import SPLIT_COLUMNS

MANIFEST = Path("data/validated/manifest.csv")
SPLIT_DIR = Path("data/split")
METRICS = Path("reports/split/metrics.json")


def stratified_split(pool, val_fraction, seed):
    """Per class, a seeded shuffle; the first round(n * val_fraction) images go to val."""
    train_parts, val_parts = [], []
    for _, images in pool.groupby("class", sort=True):
        shuffled = images.sample(frac=1.0, random_state=seed)
        n_val = round(len(shuffled) * val_fraction)
        if n_val == 0 or n_val == len(shuffled):
            raise SystemExit(f"split: val_fraction {val_fraction} leaves class "
                             f"{images['class'].iloc[0]!r} ({len(shuffled)} images) with an empty split")
        val_parts.append(shuffled.iloc[:n_val])
        train_parts.append(shuffled.iloc[n_val:])
    return pd.concat(train_parts), pd.concat(val_parts)


def main():
    params = P.load()
    val_fraction, seed = params.split.val_fraction, params.split.seed
    classes = sorted(params.validate_.classes)  # exactly 2: the params schema checks it
    if not MANIFEST.is_file():
        raise SystemExit(f"split: {MANIFEST} does not exist; run the validate stage first")

    # keep_default_na=False: a class folder named "NA" or "null" stays a name.
    manifest = pd.read_csv(MANIFEST, keep_default_na=False)
    manifest["label"] = manifest["class"].map({name: i for i, name in enumerate(classes)})
    train, val = stratified_split(manifest[manifest["split"] == "train"], val_fraction, seed)
    splits = {"train": train, "val": val, "test": manifest[manifest["split"] == "validation"]}

    # Validation quarantines exact duplicates; this guards the contract all the same.
    owner = {}
    for name, frame in splits.items():
        for sha, path in zip(frame["sha256"], frame["path"]):
            if sha in owner:
                raise SystemExit(f"split: {path} ({name}) has the same content as {owner[sha]}")
            owner[sha] = f"{path} ({name})"

    SPLIT_DIR.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, frame in splits.items():
        frame.sort_values("path")[SPLIT_COLUMNS].to_csv(SPLIT_DIR / f"{name}.csv", index=False)
        counts[f"{name}_images"] = len(frame)
        for class_name, n in frame["class"].value_counts().sort_index().items():
            counts[f"{name}_{class_name}"] = int(n)
    METRICS.parent.mkdir(parents=True, exist_ok=True)
    METRICS.write_text(json.dumps(counts, indent=2) + "\n")
    print("split: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
