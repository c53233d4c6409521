"""Stage split: seeded, stratified train/val split of the training pool; test = validation folder.

Writes file lists (path, label, class), not copies. Labels follow the sorted class names.
"""
import json

import pandas as pd

from catsdogs import params, paths


def stratified_split(pool, val_fraction, seed):
    """Per class, a seeded shuffle; the first round(n * val_fraction) images go to val."""
    train_parts, val_parts = [], []
    for name, images in pool.groupby("class", sort=True):
        shuffled = images.sample(frac=1.0, random_state=seed)
        n_val = round(len(shuffled) * val_fraction)
        if n_val == 0 or n_val == len(shuffled):
            raise SystemExit(f"split: val_fraction {val_fraction} leaves class {name!r} "
                             f"({len(shuffled)} images) with an empty split")
        val_parts.append(shuffled.iloc[:n_val])
        train_parts.append(shuffled.iloc[n_val:])
    return pd.concat(train_parts), pd.concat(val_parts)


def main():
    p = params.load()
    classes, val_fraction, seed = sorted(p.classes), p.split.val_fraction, p.split.seed

    # keep_default_na=False: a class folder named "NA" or "null" stays a name.
    manifest = pd.read_csv(paths.MANIFEST, keep_default_na=False)
    manifest["label"] = manifest["class"].map({name: i for i, name in enumerate(classes)})
    train_pool, test = (manifest[manifest["split"] == split] for split in paths.SOURCE_SPLITS)
    train, val = stratified_split(train_pool, val_fraction, seed)

    paths.SPLIT.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, frame in {"train": train, "val": val, "test": test}.items():
        frame.sort_values("path")[["path", "label", "class"]].to_csv(paths.SPLIT / f"{name}.csv",
                                                              index=False)
        counts[f"{name}_images"] = len(frame)
        for class_name, n in frame["class"].value_counts().sort_index().items():
            counts[f"{name}_{class_name}"] = int(n)
    paths.SPLIT_METRICS.parent.mkdir(parents=True, exist_ok=True)
    paths.SPLIT_METRICS.write_text(json.dumps(counts, indent=2) + "\n")
    print("split: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
