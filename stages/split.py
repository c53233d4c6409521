"""Stage split: seeded, stratified train/val split of the training pool; test = validation folder.
Writes file lists (path, label, class); labels follow the sorted class names."""
import pandas as pd

from catsdogs import params, paths
from catsdogs.files import discard, replaced, require
from catsdogs.reports import write_json


def main():
    p = params.load()
    classes, val_fraction, seed = sorted(p.classes), p.split.val_fraction, p.split.seed
    discard(paths.SPLIT, paths.SPLIT_METRICS)

    require(paths.MANIFEST, "split", made_by="validate")
    # As text (a class "NA" stays a name); not the hashes and sizes, which would fill memory.
    try:
        manifest = pd.read_csv(paths.MANIFEST, usecols=["path", "class", "split"], dtype=str,
                               keep_default_na=False)
    except ValueError as error:  # pandas names the missing columns
        raise SystemExit(f"split: {paths.MANIFEST}: {error}; rerun python -m stages.validate")
    for row, (path, name, split) in enumerate(zip(manifest["path"], manifest["class"],
                                                  manifest["split"]), start=1):
        if name not in classes or split not in paths.SOURCE_SPLITS:
            raise SystemExit(f"split: {paths.MANIFEST} row {row} ({path}): class {name!r} and "
                             f"split {split!r}, but classes are {classes} and splits "
                             f"{list(paths.SOURCE_SPLITS)}; rerun python -m stages.validate")
    manifest["label"] = manifest["class"].map({name: i for i, name in enumerate(classes)})
    train_pool, test = (manifest[manifest["split"] == split] for split in paths.SOURCE_SPLITS)

    # Stratified: per class, a seeded shuffle; the first round(n * val_fraction) go to val.
    train_parts, val_parts = [], []
    for name, images in train_pool.groupby("class", sort=True):
        shuffled = images.sample(frac=1.0, random_state=seed)
        n_val = round(len(shuffled) * val_fraction)
        if n_val == 0 or n_val == len(shuffled):
            raise SystemExit(f"split: val_fraction {val_fraction} leaves class {name!r} "
                             f"({len(shuffled)} images) with an empty split")
        val_parts.append(shuffled.iloc[:n_val])
        train_parts.append(shuffled.iloc[n_val:])
    train, val = pd.concat(train_parts), pd.concat(val_parts)

    counts = {}
    with replaced(paths.SPLIT) as folder:  # the three files appear at once, or none
        folder.mkdir()
        for name, frame in {"train": train, "val": val, "test": test}.items():
            frame.sort_values("path")[["path", "label", "class"]].to_csv(folder / f"{name}.csv",
                                                                  index=False)
            counts[f"{name}_images"] = len(frame)
            for class_name, n in frame["class"].value_counts().sort_index().items():
                counts[f"{name}_{class_name}"] = int(n)
    write_json(paths.SPLIT_METRICS, counts)
    print("split: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
