"""Copies of one picture whatever their bytes, and near-duplicates (for stage validate).

What the model learns from is a file's image decoded and resized to model.image_size
(data.decode_image, as validate calls it): two files with the same pixels there, or
nearly the same, are one picture twice, whatever their bytes (re-encoded, another format,
metadata added; byte-identical files are the simplest case).
"""
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from catsdogs.data import decode_image

HASH_ROWS = 8  # the difference hash: 8 rows of 8 left-to-right comparisons, 64 bits
NEAR_COLUMNS = ["path", "class", "split", "near_path", "near_class", "near_split", "distance",
                "pixel_difference", "same_picture"]


def difference_hash(pixels):
    """64 bits as 16 hex digits: in a 9x8 grayscale thumbnail, whether each pixel is
    brighter than its left neighbour. Re-encoding, resizing or a brightness change flip a few bits; unrelated
    pictures differ in about half."""
    thumbnail = (Image.fromarray(pixels).convert("L")
                 .resize((HASH_ROWS + 1, HASH_ROWS), Image.Resampling.BOX))
    values = np.asarray(thumbnail, dtype=np.int16)
    return np.packbits(values[:, 1:] > values[:, :-1]).tobytes().hex()  # text: no float64


def first_of(same_as, index):
    while same_as[index] != index:
        index = same_as[index]
    return index


def same_pictures(clean, knobs, image_size):
    """(near-duplicate pairs, {row: a row of the same picture, earlier by path}) of the
    accepted-so-far rows. Same picture: the same decoded pixels, or a difference hash within
    validate.near_duplicate_max_distance bits AND a mean pixel difference (the model's input
    at model.image_size, 0-255) within validate.same_picture_max_difference: a re-encoding
    or a small resize, nothing a model could learn from twice.

    The other near pairs are reported, not quarantined: a 64-bit hash of a 9x8 thumbnail
    also matches different pictures of one layout (a white dog on a white sofa), so such a
    pair is a lead for a person to look at, not proof; quarantining on it would drop real
    images silently."""
    same_as = {index: index for index in clean.index}

    def join(a, b):  # index order is path order: a group's first row is its earliest file
        a, b = first_of(same_as, a), first_of(same_as, b)
        same_as[max(a, b)] = min(a, b)

    for members in clean.groupby("decoded_sha256").groups.values():
        for index in members[1:]:
            join(members[0], index)
    hashes = np.array([int(text, 16) for text in clean["dhash"]], dtype=np.uint64)
    pairs = []
    for i in range(len(hashes) - 1):
        distances = np.bitwise_count(hashes[i] ^ hashes[i + 1:])
        for j in i + 1 + np.flatnonzero(distances <= knobs.near_duplicate_max_distance):
            a, b = clean.iloc[i], clean.iloc[j]
            if a["decoded_sha256"] == b["decoded_sha256"]:
                continue  # the same pixels: a copy, above
            difference = pixel_difference(a["path"], b["path"], image_size)
            same = difference <= knobs.same_picture_max_difference
            if same:
                join(clean.index[i], clean.index[j])
            pairs.append([a["path"], a["class"], a["split"], b["path"], b["class"], b["split"],
                          int(distances[j - i - 1]), round(difference, 2), same])
    return pd.DataFrame(pairs, columns=NEAR_COLUMNS), same_as


def pixel_difference(path, other, image_size):
    """Mean absolute difference (0-255) of two files' images as the model gets them."""
    a, b = (decode_image(Path(p).read_bytes(), image_size).numpy().astype(np.int16)
            for p in (path, other))
    return float(np.abs(a - b).mean())


def how_same(first, copy, image_size):
    """What a duplicate's reason adds: nothing for the same bytes, else how it is the same."""
    size = f"{image_size}x{image_size} px"
    if copy["sha256"] == first["sha256"]:
        return ""
    if copy["decoded_sha256"] == first["decoded_sha256"]:
        return f" (other bytes, same pixels at {size})"
    difference = pixel_difference(first["path"], copy["path"], image_size)
    return f" (other bytes, nearly the same pixels at {size}: mean difference {difference:.2f})"


def copy_reasons(table, same_as, image_size):
    """{row: quarantine reason} for copies of one picture (same_as from same_pictures), in
    path order, so the outcome does not depend on the order files were found. Under two
    classes no copy's label can be trusted: all go. Within one class the first copy stays,
    wherever the others are."""
    groups, reasons = {}, {}
    for index in same_as:
        groups.setdefault(first_of(same_as, index), []).append(index)
    for members in (m for m in groups.values() if len(m) > 1):
        copies = table.loc[members]
        classes = sorted(set(copies["class"]))
        for index, path in copies["path"].items():
            if len(classes) > 1:
                others = ", ".join(p for p in copies["path"] if p != path)
                reasons[index] = (f"label conflict: the same image is under "
                                  f"{' and '.join(classes)} (also {others})")
            elif index != members[0]:
                reasons[index] = (f"duplicate of {copies['path'].iloc[0]}"
                                  + how_same(copies.iloc[0], copies.loc[index], image_size))
    return reasons
