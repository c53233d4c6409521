"""Copies of one picture (the same or nearly the same pixels at model.image_size, whatever
the bytes) and near-duplicates, for stage validate; image_of(row index) gives the pixels."""
import numpy as np
import pandas as pd
from PIL import Image
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

HASH_ROWS = 8  # the difference hash: 8 rows of 8 left-to-right comparisons, 64 bits
NEAR_COLUMNS = ["path", "class", "split", "near_path", "near_class", "near_split", "distance",
                "pixel_difference", "same_picture"]


def difference_hash(pixels):
    """16 hex digits: is each pixel of a 9x8 gray thumbnail brighter than its left neighbour."""
    thumbnail = (Image.fromarray(pixels).convert("L")
                 .resize((HASH_ROWS + 1, HASH_ROWS), Image.Resampling.BOX))
    values = np.asarray(thumbnail, dtype=np.int16)
    return np.packbits(values[:, 1:] > values[:, :-1]).tobytes().hex()  # text: no float64


def same_pictures(clean, knobs, image_of):
    """(near-duplicate pairs, groups of 2+ row indexes in path order that are one picture:
    the same pixels, or near hashes AND a mean pixel difference within validate's limits).
    Other near pairs are only reported: one layout can match different pictures."""
    links, pairs = [], []  # links: (position, position) in clean, one picture
    hashes = np.array([int(text, 16) for text in clean["dhash"]], dtype=np.uint64)
    for i in range(len(hashes) - 1):
        distances = np.bitwise_count(hashes[i] ^ hashes[i + 1:])
        for j in i + 1 + np.flatnonzero(distances <= knobs.near_duplicate_max_distance):
            a, b = clean.iloc[i], clean.iloc[j]
            if a["decoded_sha256"] == b["decoded_sha256"]:  # the same pixels, so hash: a copy
                links.append((i, j))
                continue
            difference = pixel_difference(image_of(a.name), image_of(b.name))
            same = difference <= knobs.same_picture_max_difference
            if same:
                links.append((i, j))
            pairs.append([a["path"], a["class"], a["split"], b["path"], b["class"], b["split"],
                          int(distances[j - i - 1]), round(difference, 2), same])
    return pd.DataFrame(pairs, columns=NEAR_COLUMNS), groups(clean.index, links)


def groups(index, links):
    """The connected groups (2+ rows) of index's rows, linked by position, in index order."""
    start, end = np.array(links, dtype=np.int64).reshape(-1, 2).T
    graph = coo_array((np.ones(len(start)), (start, end)), shape=(len(index), len(index)))
    _, labels = connected_components(graph, directed=False)
    found = {}
    for position, label in enumerate(labels):
        found.setdefault(label, []).append(index[position])
    return [members for members in found.values() if len(members) > 1]


def pixel_difference(image, other):
    """Mean absolute difference (0-255) of two uint8 images."""
    return float(np.abs(image.astype(np.int16) - other.astype(np.int16)).mean())


def copy_reasons(table, same, image_size, image_of):
    """{row: quarantine reason} for the copies in each group of `same`. Copies under two
    classes all go (no label can be trusted); else the first in path order stays."""
    reasons = {}
    size = f"{image_size}x{image_size} px"
    for members in same:
        copies = table.loc[members]
        classes = sorted(set(copies["class"]))
        first = copies.iloc[0]
        duplicate = f"duplicate of {first['path']}"
        for index, copy in copies.iterrows():
            if len(classes) > 1:
                others = ", ".join(p for p in copies["path"] if p != copy["path"])
                reasons[index] = (f"label conflict: the same image is under "
                                  f"{' and '.join(classes)} (also {others})")
            elif index == members[0]:
                continue
            elif copy["sha256"] == first["sha256"]:
                reasons[index] = duplicate
            elif copy["decoded_sha256"] == first["decoded_sha256"]:
                reasons[index] = f"{duplicate} (other bytes, same pixels at {size})"
            else:
                difference = pixel_difference(image_of(first.name), image_of(index))
                reasons[index] = (f"{duplicate} (other bytes, nearly the same pixels at "
                                  f"{size}: mean difference {difference:.2f})")
    return reasons
