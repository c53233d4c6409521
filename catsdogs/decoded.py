"""Split lists and decoded splits on disk, read on demand; numpy only: data stages stay light."""
import itertools
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from catsdogs import paths

PROGRESS_EVERY = 500  # images between progress lines


def read_split(split, classes=None):
    """data/split/<split>.csv: path and class as text (a class "NA" stays a name), int labels;
    with classes, a row whose class or label does not match them stops the run."""
    file = paths.SPLIT / f"{split}.csv"
    frame = pd.read_csv(file, dtype=str, keep_default_na=False)
    labels = {name: str(label) for label, name in enumerate(sorted(classes or []))}
    for row, (path, label, name) in enumerate(zip(frame["path"], frame["label"],
                                                  frame["class"]), start=1):
        if classes and name not in labels:
            problem = f"class {name!r} is not in classes {sorted(classes)}"
        elif classes and label != labels[name]:
            problem = f"label {label!r}, but class {name!r} has label {labels[name]}"
        elif not label.isdigit():
            problem = f"label {label!r} is not a whole number"
        else:
            continue
        raise SystemExit(f"{file} row {row} ({path}): {problem}; rerun python -m stages.split")
    return frame.astype({"label": int})


def save_decoded(split, images, labels, folder=paths.DECODED):
    """<folder>/<split>.images.npy (uint8, from N rows, one at a time) and .labels.npy."""
    labels = np.asarray(labels, "float32")
    rows = iter(images)
    first = next(rows, np.zeros((0, 0, 3), np.uint8))
    folder.mkdir(parents=True, exist_ok=True)
    header = {"descr": "|u1", "fortran_order": False, "shape": (len(labels), *first.shape)}
    with open(folder / f"{split}.images.npy", "wb") as file:
        np.lib.format.write_array_header_1_0(file, header)
        written = 0
        for row in itertools.chain([first] if len(labels) else [], rows):
            if row.shape != first.shape or row.dtype != np.uint8:
                raise ValueError(f"{split}: row {written} is {row.dtype} {row.shape}, "
                                 f"not uint8 {first.shape}")
            file.write(np.ascontiguousarray(row).data)
            written += 1
    if written != len(labels):
        raise ValueError(f"{split}: {written} images for {len(labels)} labels")
    np.save(folder / f"{split}.labels.npy", labels)


class DecodedImages:
    """A decoded split's images, rows read on demand with os.preadv (not into memory)."""

    def __init__(self, file):
        self.file = Path(file)
        try:  # empty, text, truncated or pickled (an object array, never unpickled): named
            with open(self.file, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran_order, dtype = read_header(f)  # no pickle: a header is a literal
                self.offset, size = f.tell(), os.fstat(f.fileno()).st_size
            if dtype != np.uint8 or fortran_order or len(shape) != 4:
                raise ValueError(f"{dtype} {shape} is not uint8 N x S x S x 3")
            if size < self.offset + math.prod(shape):
                raise ValueError(f"{size:,} bytes, too few for its header's {shape} array")
        except ValueError as error:
            raise ValueError(f"{self.file}: {error}") from None
        self.shape, self.dtype = shape, np.dtype(np.uint8)
        self.row_bytes = math.prod(shape[1:])

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self[np.arange(*key.indices(len(self)))]
        index = np.asarray(key)
        if index.dtype.kind not in "iu":
            raise TypeError(f"rows are chosen by integers or slices, not {index.dtype}")
        if index.size and not (-len(self) <= index.min() and index.max() < len(self)):
            raise IndexError(f"rows {index.min()}..{index.max()} of {len(self)}")
        index = index % max(len(self), 1)  # negative indices count from the end
        out = np.empty((*index.shape, *self.shape[1:]), np.uint8)
        rows = out.reshape(-1, self.row_bytes)
        with open(self.file, "rb") as f:
            flat = index.ravel()
            # Consecutive rows (eval batches) in one read, else a read per row.
            runs = ([(0, flat.size)] if flat.size and flat[-1] - flat[0] == flat.size - 1
                    and np.all(np.diff(flat) == 1) else [(k, 1) for k in range(flat.size)])
            for start, count in runs:
                target = rows[start:start + count]
                if os.preadv(f.fileno(), [target], self.offset + int(flat[start]) *
                             self.row_bytes) != target.nbytes:
                    raise ValueError(f"{self.file} is shorter than its header says")
        return out

    def __array__(self, dtype=None, copy=None):
        return self[:] if dtype is None else self[:].astype(dtype)


def load_decoded(split):
    """(DecodedImages, float32 labels) of a split."""
    images = DecodedImages(paths.DECODED / f"{split}.images.npy")
    return images, np.load(paths.DECODED / f"{split}.labels.npy", allow_pickle=False)
