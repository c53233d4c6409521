"""Copies of one picture whatever their bytes, and near-duplicates (for stage validate).

What the model learns from is a file's image decoded and resized to model.image_size (as
validate decodes it): two files with the same pixels there, or nearly the same, are one
picture twice, whatever their bytes (re-encoded, another format, metadata added;
byte-identical files are the simplest case). No decoding here: the functions get
validate's images through image_of(row index), a uint8 image_size x image_size x 3 array.
"""
import numpy as np
import pandas as pd
from PIL import Image
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

HASH_ROWS = 8  # the difference hash: 8 rows of 8 left-to-right comparisons, 64 bits
NEAR_COLUMNS = ["path", "class", "split", "near_path", "near_class", "near_split", "distance",
                "pixel_difference", "same_picture"]


def difference_hash(pixels):
    """64 bits as 16 hex digits: in a 9x8 grayscale thumbnail, whether each pixel is
    brighter than its left neighbour. Re-encoding, resizing or a brightness change flip a few
    bits; unrelated pictures differ in about half."""
    thumbnail = (Image.fromarray(pixels).convert("L")
                 .resize((HASH_ROWS + 1, HASH_ROWS), Image.Resampling.BOX))
    values = np.asarray(thumbnail, dtype=np.int16)
    return np.packbits(values[:, 1:] > values[:, :-1]).tobytes().hex()  # text: no float64


def same_pictures(clean, knobs, image_of):
    """(near-duplicate pairs, the groups of rows that are one picture) of the accepted-so-far
    rows; a group lists its row indexes in path order, and has two rows or more. Same
    picture: the same decoded pixels, or a difference hash within
    validate.near_duplicate_max_distance bits AND a mean pixel difference (the model's input
    at model.image_size, 0-255) within validate.same_picture_max_difference: a re-encoding
    or a small resize, nothing a model could learn from twice.

    The other near pairs are reported, not quarantined: a 64-bit hash of a 9x8 thumbnail
    also matches different pictures of one layout (a white dog on a white sofa), so such a
    pair is a lead for a person to look at, not proof; quarantining on it would drop real
    images silently."""
    links = []  # (position, position) in clean: one picture
    for members in clean.reset_index(drop=True).groupby("decoded_sha256").groups.values():
        links += [(members[0], other) for other in members[1:]]
    hashes = np.array([int(text, 16) for text in clean["dhash"]], dtype=np.uint64)
    pairs = []
    for i in range(len(hashes) - 1):
        distances = np.bitwise_count(hashes[i] ^ hashes[i + 1:])
        for j in i + 1 + np.flatnonzero(distances <= knobs.near_duplicate_max_distance):
            a, b = clean.iloc[i], clean.iloc[j]
            if a["decoded_sha256"] == b["decoded_sha256"]:
                continue  # the same pixels: a copy, above
            difference = pixel_difference(image_of(a.name), image_of(b.name))
            same = difference <= knobs.same_picture_max_difference
            if same:
                links.append((i, j))
            pairs.append([a["path"], a["class"], a["split"], b["path"], b["class"], b["split"],
                          int(distances[j - i - 1]), round(difference, 2), same])
    return pd.DataFrame(pairs, columns=NEAR_COLUMNS), groups(clean.index, links)


def groups(index, links):
    """The connected groups of index's rows (linked by position), each in index order (path
    order), in the order of their first rows; single rows left out."""
    start, end = np.array(links, dtype=np.int64).reshape(-1, 2).T
    graph = coo_array((np.ones(len(start)), (start, end)), shape=(len(index), len(index)))
    _, labels = connected_components(graph, directed=False)
    found = {}
    for position, label in enumerate(labels):  # ascending: each group in path order
        found.setdefault(label, []).append(index[position])
    return [members for members in found.values() if len(members) > 1]


def pixel_difference(image, other):
    """Mean absolute difference (0-255) of two images as the model gets them (uint8)."""
    return float(np.abs(image.astype(np.int16) - other.astype(np.int16)).mean())


def how_same(first, copy, image_size, image_of):
    """What a duplicate's reason adds: nothing for the same bytes, else how it is the same."""
    size = f"{image_size}x{image_size} px"
    if copy["sha256"] == first["sha256"]:
        return ""
    if copy["decoded_sha256"] == first["decoded_sha256"]:
        return f" (other bytes, same pixels at {size})"
    difference = pixel_difference(image_of(first.name), image_of(copy.name))
    return f" (other bytes, nearly the same pixels at {size}: mean difference {difference:.2f})"


def copy_reasons(table, same, image_size, image_of):
    """{row: quarantine reason} for copies of one picture (same: the groups same_pictures
    found), in path order, so the outcome does not depend on the order files were found.
    Under two classes no copy's label can be trusted: all go. Within one class the first
    copy stays, wherever the others are."""
    reasons = {}
    for members in same:
        copies = table.loc[members]
        classes = sorted(set(copies["class"]))
        for index, path in copies["path"].items():
            if len(classes) > 1:
                others = ", ".join(p for p in copies["path"] if p != path)
                reasons[index] = (f"label conflict: the same image is under "
                                  f"{' and '.join(classes)} (also {others})")
            elif index != members[0]:
                reasons[index] = (f"duplicate of {copies['path'].iloc[0]}" + how_same(
                    copies.iloc[0], copies.loc[index], image_size, image_of))
    return reasons
