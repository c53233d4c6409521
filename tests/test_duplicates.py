"""The same picture in other bytes (re-encoded, a PNG of a JPEG, EXIF added) is a copy, across
splits and across classes; a brightened or resized copy is reported as a near-duplicate;
distinct pictures are never flagged. Outputs are byte-identical across reruns.
"""
import hashlib
import io
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance

from catsdogs import duplicates
from catsdogs import params as P
from catsdogs import paths
from catsdogs.data import decode_image
from conftest import ROOT
from stages import split, validate
from test_validate_safety import assert_accounted, entries, reasons

SIZE = 32  # conftest's tiny params: model.image_size
QUALITY = 95


def picture(seed, size=(96, 80)):
    """A smooth picture (a random 6x5 grid, upsampled): its difference hash means something,
    and two seeds give unrelated hashes."""
    grid = np.random.default_rng(seed).integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    return Image.fromarray(grid).resize(size, Image.Resampling.BICUBIC)


def encoded(image, fmt="JPEG", **options):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def with_exif(jpeg):
    """The same JPEG bytes with an EXIF segment (APP1) added after the start marker: the
    compressed pixels are untouched."""
    exif = Image.Exif()
    exif[0x010F] = "Some Camera"  # Make
    payload = exif.tobytes()  # b"Exif\0\0" + TIFF
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def decoded_again(jpeg):
    """Pillow's decoding: close to, not always equal to, TensorFlow's (the model's)."""
    return Image.open(io.BytesIO(jpeg)).convert("RGB")


def decoded_by_tf(jpeg):
    """The pixels the model gets from jpeg, exactly (a PNG of them decodes to the same)."""
    return Image.fromarray(decode_image(jpeg).numpy())


ORIGINALS = {f"train/cats/c{i}.jpg": i for i in range(8)}
ORIGINALS |= {f"train/dogs/d{i}.jpg": 10 + i for i in range(8)}
ORIGINALS |= {f"validation/cats/v{i}.jpg": 20 + i for i in range(2)}
ORIGINALS |= {f"validation/dogs/w{i}.jpg": 30 + i for i in range(2)}
# Copies of an original, by the path of the original: how the copy is made.
COPIES = {
    # Same class, other split: the original stays, the copy goes.
    "validation/cats/c0_q60.jpg": ("train/cats/c0.jpg", lambda b: encoded(decoded_again(b),
                                                                          quality=60)),
    "validation/cats/c1.png": ("train/cats/c1.jpg", lambda b: encoded(decoded_by_tf(b), "PNG")),
    "validation/dogs/d0_exif.jpg": ("train/dogs/d0.jpg", with_exif),
    # Other class: no label can be trusted, both go.
    "validation/dogs/c2_q60.jpg": ("train/cats/c2.jpg", lambda b: encoded(decoded_again(b),
                                                                          quality=60)),
    "validation/dogs/c3.png": ("train/cats/c3.jpg", lambda b: encoded(decoded_again(b), "PNG")),
    "validation/cats/d1_exif.jpg": ("train/dogs/d1.jpg", with_exif),
}
# Not the same picture to the model: reported as near-duplicates.
NEAR = {
    "train/dogs/d2_brighter.jpg": ("train/dogs/d2.jpg", lambda b: encoded(
        ImageEnhance.Brightness(decoded_again(b)).enhance(1.15), quality=QUALITY)),
    "validation/dogs/d3_smaller.jpg": ("train/dogs/d3.jpg", lambda b: encoded(
        decoded_again(b).resize((67, 56), Image.Resampling.BILINEAR), quality=QUALITY)),
}
SAME_PIXELS = f"(other bytes, same pixels at {SIZE}x{SIZE} px)"
NEARLY_SAME = f"(other bytes, nearly the same pixels at {SIZE}x{SIZE} px: mean difference "


def raw(path):
    return f"data/raw/{path}"


def build(root):
    for path, seed in ORIGINALS.items():
        file = root / "data/raw" / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(encoded(picture(seed), quality=QUALITY))
    for path, (original, make) in {**COPIES, **NEAR}.items():
        (root / "data/raw" / path).write_bytes(make((root / "data/raw" / original).read_bytes()))


def outputs(root):
    return {name: (root / name).read_bytes() for name in [
        "data/validated/manifest.csv", "reports/validate/quarantine.csv",
        "reports/validate/near_duplicates.csv", "reports/validate/metrics.json"]}


@pytest.fixture(scope="module")
def judged(tmp_path_factory, write_params):
    root = tmp_path_factory.mktemp("duplicates")
    build(root)
    write_params(root, validate__min_images_per_class=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # validate sets it
        validate.main()
        first = outputs(root)
        validate.main()  # again: the same bytes
        split.main()
    near = pd.read_csv(root / "reports/validate/near_duplicates.csv", dtype=str,
                       keep_default_na=False)
    return root, first, near


def test_the_same_picture_in_other_bytes_is_a_copy_across_splits_and_classes(judged):
    root, _, _ = judged
    found = reasons(root)
    assert found[raw("validation/cats/c1.png")] == f"duplicate of {raw('train/cats/c1.jpg')} {SAME_PIXELS}"
    assert found[raw("validation/dogs/d0_exif.jpg")] == (f"duplicate of {raw('train/dogs/d0.jpg')} "
                                                         f"{SAME_PIXELS}")
    assert found[raw("validation/cats/c0_q60.jpg")].startswith(
        f"duplicate of {raw('train/cats/c0.jpg')} {NEARLY_SAME}")  # re-encoded: not exact
    for copy, (original, _) in COPIES.items():
        if copy.split("/")[1] != original.split("/")[1]:  # under another class: both go
            for path, other in [(copy, original), (original, copy)]:
                assert found[raw(path)] == ("label conflict: the same image is under cats and "
                                            f"dogs (also {raw(other)})"), path
    quarantined = {raw(p) for p in COPIES} | {raw(o) for c, (o, _) in COPIES.items()
                                              if c.split("/")[1] != o.split("/")[1]}
    assert set(found) - {raw(p) for p in NEAR} == quarantined  # NEAR: see below
    assert_accounted(root, entries(root))


def test_no_picture_is_in_two_splits(judged):
    root, _, _ = judged
    manifest = pd.read_csv(root / paths.MANIFEST, dtype=str, keep_default_na=False)
    assert manifest["decoded_sha256"].is_unique
    frames = [pd.read_csv(root / paths.SPLIT / f"{name}.csv", dtype=str, keep_default_na=False)
              for name in paths.SPLITS]
    assert sum(map(len, frames)) == len(manifest)
    assert set().union(*(set(f["path"]) for f in frames)) == set(manifest["path"])


def test_brightened_and_resized_copies_are_reported_as_near_duplicates(judged):
    root, _, near = judged
    pairs = {(a, b): row for a, b, row in zip(near["path"], near["near_path"],
                                                near.itertuples())}
    manifest = set(pd.read_csv(root / paths.MANIFEST, dtype=str, keep_default_na=False)["path"])
    knobs = P.load(root / "params.yaml").validate_
    for copy, (original, _) in NEAR.items():
        key = tuple(sorted([raw(copy), raw(original)]))
        assert key in pairs, (copy, list(pairs))
        row = pairs[key]
        assert int(row.distance) <= knobs.near_duplicate_max_distance
        same = row.same_picture == "True"
        assert same == (float(row.pixel_difference) <= knobs.same_picture_max_difference)
        # Kept, unless the pixels are as close as a re-encoding's: then a copy, quarantined.
        assert (raw(copy) in manifest) != same
    brighter = pairs[(raw("train/dogs/d2.jpg"), raw("train/dogs/d2_brighter.jpg"))]
    assert brighter.same_picture == "False"  # 15% brighter is another input to the model
    metrics = json.loads((root / "reports/validate/metrics.json").read_text())
    assert metrics["near_duplicate_pairs"] == len(near)
    assert metrics["near_duplicate_pairs_kept"] == (near["same_picture"] == "False").sum()


def test_distinct_pictures_are_never_flagged(judged):
    root, _, near = judged
    related = {raw(p) for p in {**COPIES, **NEAR}} | {raw(o) for o, _ in
                                                      {**COPIES, **NEAR}.values()}
    flagged = set(near["path"]) | set(near["near_path"]) | set(reasons(root))
    assert flagged <= related
    # Every near pair is a copy and its original; exact copies (same pixels) are not near.
    made = {tuple(sorted([raw(copy), raw(original)])) for copy, (original, _) in
            {**COPIES, **NEAR}.items()}
    pairs = set(zip(near["path"], near["near_path"]))
    assert pairs <= made
    assert (raw("train/cats/c1.jpg"), raw("validation/cats/c1.png")) not in pairs


def test_outputs_are_byte_identical_across_reruns(judged):
    root, first, _ = judged
    assert outputs(root) == first


# ---------------------------------------------------------------------------------------
# catsdogs.duplicates alone: the images validate already decoded, no decoder of its own.

def test_duplicates_imports_no_decoder():
    code = ("import sys, catsdogs.duplicates; "
            "print(sorted({'tensorflow', 'catsdogs.data'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "[]"


def row(path, cls, image):
    """A clean metadata row as validate's scan makes it, for image (its own bytes)."""
    return {"path": path, "class": cls, "split": path.split("/")[2],
            "sha256": hashlib.sha256(path.encode()).hexdigest(),
            "decoded_sha256": hashlib.sha256(image.tobytes()).hexdigest(),
            "dhash": duplicates.difference_hash(image)}


def test_copies_linked_through_other_copies_are_one_picture_led_by_the_first_path():
    base = np.asarray(picture(1, size=(SIZE, SIZE))) // 2  # room to brighten without clipping
    other = np.asarray(picture(2, size=(SIZE, SIZE)))
    images = {  # index -> image; rows of the table that were quarantined already are absent
        10: base, 20: other, 30: base + 3, 40: base + 6, 50: other.copy(), 60: base + 3}
    table = pd.DataFrame([row(path, cls, images[i]) for i, (path, cls) in zip(images, [
        ("data/raw/train/cats/a.jpg", "cats"), ("data/raw/train/cats/b.jpg", "cats"),
        ("data/raw/train/cats/c.jpg", "cats"), ("data/raw/train/cats/d.jpg", "cats"),
        ("data/raw/train/dogs/e.jpg", "dogs"), ("data/raw/validation/cats/f.jpg", "cats")])],
        index=list(images))
    knobs = SimpleNamespace(near_duplicate_max_distance=4, same_picture_max_difference=4.0)
    near, same = duplicates.same_pictures(table, knobs, images.__getitem__)
    # a~c (3 apart) and c~d (3 apart) are the same picture, so a, c, d and f (c's pixels) are
    # one, though a and d are 6 apart: a near pair, not a same one.
    assert same == [[10, 30, 40, 60], [20, 50]]
    a_and_d = (near["path"] == "data/raw/train/cats/a.jpg") & (
        near["near_path"] == "data/raw/train/cats/d.jpg")
    assert near.loc[a_and_d, "same_picture"].tolist() == [False]
    reasons = duplicates.copy_reasons(table, same, SIZE, images.__getitem__)
    copy = (f"duplicate of data/raw/train/cats/a.jpg (other bytes, nearly the same pixels at "
            f"{SIZE}x{SIZE} px: mean difference")
    conflict = "label conflict: the same image is under cats and dogs (also data/raw/train"
    assert reasons == {30: f"{copy} 3.00)", 40: f"{copy} 6.00)",  # 40: measured from a
                       60: f"{copy} 3.00)", 20: f"{conflict}/dogs/e.jpg)",
                       50: f"{conflict}/cats/b.jpg)"}


def union_find_groups(index, links):
    """The groups as validate found them before connected_components: union-find where a
    group's earliest row leads it."""
    lead = list(range(len(index)))

    def first(i):
        while lead[i] != i:
            i = lead[i]
        return i

    for a, b in links:
        a, b = first(a), first(b)
        lead[max(a, b)] = min(a, b)
    groups = {}
    for i in range(len(index)):
        groups.setdefault(first(i), []).append(index[i])
    return [members for members in groups.values() if len(members) > 1]


def test_groups_are_the_union_find_groups():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(0, 40))
        index = pd.Index(np.sort(rng.choice(10_000, n, replace=False)))
        links = [tuple(int(k) for k in rng.choice(n, 2, replace=False))
                 for _ in range(int(rng.integers(0, n + 1)))] if n > 1 else []
        assert duplicates.groups(index, links) == union_find_groups(index, links)
