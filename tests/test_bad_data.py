"""A corpus of bad input, made on the fly, through fetch -> validate -> split.

Every case ends in exactly one of: copied and accepted (and then it decodes for training),
left out by fetch with a reason (only what cannot be copied safely: symbolic links, files
over fetch.max_file_mb), copied and quarantined by validate with a reason (everything else,
misplaced files included), or a clear error naming the file or folder. The source is never changed, and nothing vanishes: the counts
add up from the source to the split files.
"""
import io
import json
import os
import re
import stat
import struct
import warnings
import zipfile
import zlib
from collections import namedtuple
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from catsdogs import scan
from catsdogs.data import decode_image
from stages import fetch, split, validate

MAX_FILE_MB = 0.5  # small, so a "huge" file is cheap to make
# The params changes of every run here (on top of conftest's tiny_params).
CHANGES = {"fetch__max_file_mb": MAX_FILE_MB, "validate__min_images_per_class": 2}

# ---------------------------------------------------------------------------------------
# Bytes of each kind of file. Every image gets its own noise, so no two are equal by chance.

_seed = iter(range(10_000))


def pixels(size=(48, 40)):
    rng = np.random.default_rng(next(_seed))
    return rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)


def image(mode="RGB", fmt="JPEG", size=(48, 40), **save_options):
    buffer = io.BytesIO()
    Image.fromarray(pixels(size)).convert(mode).save(buffer, format=fmt, **save_options)
    return buffer.getvalue()


def gray16_png():
    rng = np.random.default_rng(next(_seed))
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 65536, size=(40, 48), dtype=np.uint16)).save(buffer, "PNG")
    return buffer.getvalue()


def png(width, height, bit_depth, color_type, rows):
    """A PNG by hand: Pillow cannot write 16-bit RGB, nor lie about its size."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def rgb16_png():
    rows = np.random.default_rng(next(_seed)).integers(0, 65536, size=(40, 48 * 3))
    return png(48, 40, 16, 2, b"".join(b"\0" + row.astype(">u2").tobytes() for row in rows))


def bomb_png():
    # Declares 100000x100000 RGB (30 GB decoded); the file itself is tiny.
    return png(100_000, 100_000, 8, 2, b"\0" * 1000)


def animated_gif():
    frames = [Image.fromarray(pixels()).convert("P") for _ in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def mpo(frames=2):
    """A phone's photo: a JPEG followed by more JPEG frames (an APP2 MPF index), which Pillow
    opens as format MPO."""
    buffer = io.BytesIO()
    first, *others = (Image.fromarray(pixels()) for _ in range(frames))
    first.save(buffer, "MPO", save_all=True, append_images=others)
    return buffer.getvalue()


def corrupt_jpeg():
    """A readable JPEG header, garbage where the compressed pixels should be."""
    data = image()
    start = data.index(b"\xff\xda") + 14  # just past the start-of-scan header
    return data[:start] + np.random.default_rng(next(_seed)).bytes(2000)


def truncated_jpeg():
    data = image()
    return data[:len(data) // 2]


# ---------------------------------------------------------------------------------------
# The corpus: one row per source path. `fetch`: the reason fetch leaves it out; `validate`:
# the reason validate quarantines it (a str must match exactly, a Pattern fully); neither:
# it must be accepted, land in one split file and decode for training.

Case = namedtuple("Case", "path make fetch validate", defaults=(None, None))
OUTSIDE = "{outside}"  # replaced by the folder outside the source that symlinks point to
SAME = {}  # bytes shared by several cases, filled on first use


def same(key, make=image):
    def make_once():
        if key not in SAME:
            SAME[key] = make()
        return SAME[key]
    return make_once


def not_allowed(fmt):
    return f"format {fmt} not allowed (validate.formats is JPEG, PNG)"


CASES = [
    # Good images, the bulk of each class.
    *[Case(f"train/cats/c{i}.jpg", same("c0") if i == 0 else image) for i in range(4)],
    *[Case(f"train/dogs/d{i}.jpg", same("d0") if i == 0 else image) for i in range(4)],
    *[Case(f"validation/{cls}/{cls[0]}{i}.jpg", image) for cls in ("cats", "dogs") for i in range(2)],
    # Odd but valid JPEG/PNG: accepted, and decoded to uint8 RGB.
    Case("train/cats/grayscale.jpg", lambda: image("L")),
    Case("train/cats/cmyk.jpg", lambda: image("CMYK")),
    Case("train/cats/progressive.jpg", lambda: image(progressive=True)),
    Case("train/dogs/rgba.png", lambda: image("RGBA", "PNG")),
    Case("train/dogs/gray_alpha.png", lambda: image("LA", "PNG")),
    Case("train/dogs/palette.png", lambda: image("P", "PNG")),
    Case("train/dogs/bilevel.png", lambda: image("1", "PNG")),
    Case("train/dogs/gray16.png", gray16_png),
    Case("train/dogs/rgb16.png", rgb16_png),
    Case("train/cats/phone.jpg", mpo),  # MPO: accepted as JPEG, its first frame the image
    # Names that must survive the CSVs.
    Case("train/cats/my cat photo.jpg", image),
    Case("train/dogs/chien été 🐕.jpg", image),
    Case("validation/cats/猫, \"quoted\".png", lambda: image(fmt="PNG")),
    # Broken files.
    Case("train/cats/corrupt.jpg", corrupt_jpeg, validate="not decodable by TensorFlow"),
    Case("train/cats/truncated.jpg", truncated_jpeg, validate="not decodable by TensorFlow"),
    Case("train/cats/zero.jpg", lambda: b"",
         validate="empty file (0 bytes); unreadable by Pillow"),
    Case("train/dogs/text.jpg", lambda: b"<html>404 not found</html>\n",
         validate="unreadable by Pillow"),
    # Formats outside validate.formats (TensorFlow may or may not decode WebP).
    Case("train/dogs/still.gif", lambda: image("P", "GIF"), validate=not_allowed("GIF")),
    Case("train/dogs/animated.gif", animated_gif, validate=not_allowed("GIF")),
    Case("train/dogs/bitmap.bmp", lambda: image(fmt="BMP"), validate=not_allowed("BMP")),
    Case("train/dogs/photo.webp", lambda: image(fmt="WEBP"),
         validate=re.compile(re.escape(not_allowed("WEBP")) + "(; not decodable by TensorFlow)?")),
    # Sizes.
    Case("train/cats/tiny.png", lambda: image(fmt="PNG", size=(8, 8)),
         validate="too small (8x8 px; validate.min_side_px is 32)"),
    Case("train/cats/strip.jpg", lambda: image(size=(32, 400)),
         validate="too elongated (32x400 px, aspect ratio 12.5; validate.max_aspect_ratio is 10)"),
    Case("train/dogs/panorama.png", lambda: image(fmt="PNG", size=(320, 32))),  # 10: allowed
    Case("train/dogs/bomb.png", bomb_png,
         validate="declares 100000x100000 px = 10,000,000,000 pixels, over validate.max_pixels "
                  "(40,000,000); not decoded (a decompression bomb?)"),
    Case("train/cats/huge.jpg", lambda: bytes(int(MAX_FILE_MB * 1024 * 1024) + 1),
         fetch=f"0.5 MB, over fetch.max_file_mb ({MAX_FILE_MB:g})"),
    # Where files sit.
    Case("train/cats/sub/nested.jpg", image, validate="nested below the class folder (in sub/)"),
    Case("train/cats/.DS_Store", lambda: b"\0\0\0\1Bud1" + bytes(100), validate="hidden file"),
    Case("train/cats/._c1.jpg", lambda: b"\0\5\26\7" + bytes(80), validate="hidden file"),
    Case("train/birds/b0.jpg", image, validate="unknown class 'birds'"),
    # fetch copies every file of the dataset folder; validate judges where it sits.
    Case("train/loose.jpg", image, validate="not in a class folder"),
    Case("test/cats/t0.jpg", image, validate="unknown split 'test'"),
    Case("README.txt", lambda: b"the dataset\n",
         validate="not in a split folder; unreadable by Pillow"),
    # Symbolic links: never followed, wherever they point.
    Case("train/cats/secret.jpg", f"->{OUTSIDE}/secret.jpg",
         fetch=f"symbolic link (to {OUTSIDE}/secret.jpg), not followed"),
    Case("train/dogs/linked_folder", f"->{OUTSIDE}/folder",
         fetch=f"symbolic link (to {OUTSIDE}/folder), not followed"),
    Case("train/cats/alias.jpg", "->c1.jpg", fetch="symbolic link (to c1.jpg), not followed"),
    # The same image twice. Same class: the first by path stays, wherever the other is.
    Case("validation/cats/c0_again.jpg", same("c0"),
         validate="duplicate of data/raw/train/cats/c0.jpg"),
    Case("train/dogs/d0_copy.jpg", same("d0"), validate="duplicate of data/raw/train/dogs/d0.jpg"),
    # Two classes: a label conflict, every copy goes.
    Case("train/cats/conflict.jpg", same("conflict"),
         validate="label conflict: the same image is under cats and dogs "
                  "(also data/raw/validation/dogs/conflict.jpg)"),
    Case("validation/dogs/conflict.jpg", same("conflict"),
         validate="label conflict: the same image is under cats and dogs "
                  "(also data/raw/train/cats/conflict.jpg)"),
]
CASE_IDS = [case.path for case in CASES]


def build_source(corpus):
    """corpus/source/ holds the dataset; corpus/outside/ what its symlinks point to."""
    source, outside = corpus / "source", corpus / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "secret.jpg").write_bytes(image())
    (outside / "folder" / "inside.jpg").write_bytes(image())
    for case in CASES:
        path = source / case.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(case.make, str):
            path.symlink_to(case.make.removeprefix("->").replace(OUTSIDE, str(outside)))
        else:
            path.write_bytes(case.make())
    return source, outside


def snapshot(folder):
    """Every entry under folder: file bytes, link targets, folders. Nothing followed."""
    entries = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            key = path.relative_to(folder).as_posix()
            entries[key] = (("link", os.readlink(path)) if path.is_symlink()
                            else ("dir",) if path.is_dir() else ("file", path.read_bytes()))
    return entries


def expected(case, outside):
    reason = case.fetch or case.validate
    return re.compile(reason.pattern) if isinstance(reason, re.Pattern) else reason.replace(
        OUTSIDE, str(outside))


def matches(reason, want):
    return want.fullmatch(reason) is not None if isinstance(want, re.Pattern) else reason == want


@pytest.fixture(scope="module")
def chain(tmp_path_factory, write_params):
    """fetch -> validate -> split once over the whole corpus; the checks below only read."""
    corpus = tmp_path_factory.mktemp("corpus")
    source, outside = build_source(corpus)
    before = snapshot(corpus)
    work = corpus.parent / (corpus.name + "_work")
    work.mkdir()
    write_params(work, source, **CHANGES)
    decoded = []  # the bytes validate hands to the TensorFlow decoder
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        patch.chdir(work)
        # validate switches Pillow's bomb guard off for its process: keep it for the others.
        patch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
        decoder = scan.image_decoder
        patch.setattr(scan, "image_decoder",  # the decoder of one size, spied on
                      lambda size: lambda data: decoded.append(data) or decoder(size)(data))
        fetch.main()
        raw_after_fetch = snapshot(work / "data/raw")
        validate.main()
        split.main()
    read = lambda name: pd.read_csv(work / name, keep_default_na=False)
    return {
        "work": work, "outside": outside, "before": before, "after": snapshot(corpus),
        "raw_after_fetch": raw_after_fetch, "raw_after": snapshot(work / "data/raw"),
        "decoded": decoded, "warnings": [w.category for w in caught],
        "left_out": read("reports/fetch/left_out.csv").set_index("path")["reason"].to_dict(),
        "fetch_metrics": json.loads((work / "reports/fetch/metrics.json").read_text()),
        "quarantine": read("reports/validate/quarantine.csv").set_index("path")["reason"].to_dict(),
        "manifest": read("data/validated/manifest.csv"),
        "validate_metrics": json.loads((work / "reports/validate/metrics.json").read_text()),
        "splits": {name: read(f"data/split/{name}.csv") for name in ("train", "val", "test")},
    }


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_each_case_ends_where_expected(chain, case):
    raw_path = f"data/raw/{case.path}"
    in_splits = [name for name, frame in chain["splits"].items() if raw_path in set(frame["path"])]
    if case.fetch:
        assert matches(chain["left_out"].get(case.path, "(not left out)"),
                       expected(case, chain["outside"]))
        assert case.path not in chain["raw_after_fetch"]
    elif case.validate:
        assert case.path in chain["raw_after_fetch"]
        assert matches(chain["quarantine"].get(raw_path, "(not quarantined)"),
                       expected(case, chain["outside"]))
        assert in_splits == []
    else:
        assert raw_path in set(chain["manifest"]["path"])
        assert len(in_splits) == 1, in_splits


def test_exactly_the_expected_files_are_left_out_and_quarantined(chain):
    assert set(chain["left_out"]) == {c.path for c in CASES if c.fetch}
    assert set(chain["quarantine"]) == {f"data/raw/{c.path}" for c in CASES if c.validate}


def test_every_file_is_accounted_for_from_source_to_splits(chain):
    source_entries = [k for k, v in chain["before"].items()
                      if k.startswith("source/") and v[0] != "dir"]
    fetched, validated = chain["fetch_metrics"], chain["validate_metrics"]
    raw_files = [k for k, v in chain["raw_after"].items() if v[0] == "file"]
    # Source entries = copied + left out.
    assert fetched["files"] == len(source_entries) == len(CASES)
    assert fetched["left_out"] == len(chain["left_out"]) == len([c for c in CASES if c.fetch])
    assert fetched["copied"] == len(raw_files) == len(CASES) - fetched["left_out"]
    assert fetched["copied"] + fetched["left_out"] == fetched["files"]
    # Copied = accepted + quarantined: validate sees every copied file, and only those.
    assert validated["images"] == fetched["copied"]
    assert validated["quarantined"] == len(chain["quarantine"])
    assert validated["accepted"] == len(chain["manifest"])
    assert validated["accepted"] + validated["quarantined"] == validated["images"]
    assert {f"data/raw/{k}" for k in raw_files} == set(chain["quarantine"]) | set(
        chain["manifest"]["path"])
    # Accepted = the rows of the split files, each accepted file once.
    assert sum(len(frame) for frame in chain["splits"].values()) == validated["accepted"]
    assert set().union(*(set(f["path"]) for f in chain["splits"].values())) == set(
        chain["manifest"]["path"])


def test_sources_and_raw_files_are_byte_for_byte_unchanged(chain):
    assert chain["after"] == chain["before"]
    assert chain["raw_after"] == chain["raw_after_fetch"]
    # Raw files are exact copies of their sources.
    source = {k.removeprefix("source/"): v for k, v in chain["before"].items()}
    for path, entry in chain["raw_after_fetch"].items():
        assert entry == source[path], path


def test_symlink_targets_are_never_copied(chain):
    outside = {v for v in chain["before"].values() if v[0] == "file"} - {
        v for k, v in chain["before"].items() if k.startswith("source/")}
    assert outside and not outside & set(chain["raw_after_fetch"].values())


def test_no_image_is_in_two_splits(chain):
    owners = {}
    for name, frame in chain["splits"].items():
        manifest = chain["manifest"].set_index("path")
        for sha in manifest.loc[frame["path"], "sha256"]:
            assert sha not in owners, (name, owners.get(sha))
            owners[sha] = name


def test_accepted_files_decode_as_uint8_rgb_for_training(chain):
    for row in chain["manifest"].itertuples():
        data = (chain["work"] / row.path).read_bytes()
        full = decode_image(data)
        assert full.dtype.name == "uint8" and tuple(full.shape) == (row.height, row.width, 3), row.path
        small = decode_image(data, image_size=32)
        assert small.dtype.name == "uint8" and tuple(small.shape) == (32, 32, 3), row.path


def test_the_bomb_is_refused_from_its_header_alone(chain):
    bomb = (chain["work"] / "data/raw/train/dogs/bomb.png").read_bytes()
    assert bomb not in chain["decoded"]  # never given to the decoder
    assert len(chain["decoded"]) > 10  # the spy did see the others
    assert Image.DecompressionBombWarning not in chain["warnings"]


def test_an_mpo_photo_is_accepted_as_its_first_frame(chain):
    path = "data/raw/train/cats/phone.jpg"
    assert chain["manifest"].set_index("path").loc[path, "format"] == "MPO"
    data = (chain["work"] / path).read_bytes()
    with Image.open(io.BytesIO(data)) as photo:
        frames = []
        for index in range(photo.n_frames):
            photo.seek(index)
            frames.append(np.asarray(photo.convert("RGB"), dtype=float))
    assert len(frames) == 2
    decoded = decode_image(data).numpy()  # validate's and training's decoder
    difference = [np.abs(decoded - frame).mean() for frame in frames]
    assert difference[0] < 2 < 30 < difference[1], difference  # two JPEG decoders, one frame


def test_odd_names_flow_through_the_split_files(chain):
    paths = set().union(*(set(f["path"]) for f in chain["splits"].values()))
    for name in ["train/cats/my cat photo.jpg", "train/dogs/chien été 🐕.jpg",
                 "validation/cats/猫, \"quoted\".png"]:
        assert f"data/raw/{name}" in paths
        assert (chain["work"] / "data/raw" / name).is_file()


# ---------------------------------------------------------------------------------------
# Class folders: missing or empty is fatal, naming the folder.

@pytest.mark.parametrize("damage, message", [
    ("empty", "validate: data/raw/validation/dogs/ is empty: put the 'dogs' images of "
              "validation there (in the source) or fix classes"),
    ("missing", "validate: class 'dogs' missing in data/raw/validation/ (no folder "
                "data/raw/validation/dogs/): add it to the source or fix classes"),
])
def test_an_empty_or_missing_class_folder_is_fatal_and_named(tmp_path, monkeypatch, damage,
                                                             message, write_params):
    source = tmp_path / "source"
    for folder in ("train/cats", "train/dogs", "validation/cats", "validation/dogs"):
        for i in range(2):
            (source / folder).mkdir(parents=True, exist_ok=True)
            (source / folder / f"{i}.jpg").write_bytes(image())
    for file in (source / "validation/dogs").iterdir():
        file.unlink()
    if damage == "missing":
        (source / "validation/dogs").rmdir()
    before = snapshot(source)
    write_params(tmp_path, source, **CHANGES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # see chain()
    fetch.main()
    with pytest.raises(SystemExit) as failure:
        validate.main()
    assert str(failure.value) == message
    assert snapshot(source) == before


# ---------------------------------------------------------------------------------------
# Archives: refused whole, with the archive and member named, nothing written anywhere.

def zip_with(path, bad_member):
    """A valid little dataset zip, then one bad member; bad_member(archive) adds it."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder in ("train/cats", "train/dogs", "validation/cats", "validation/dogs"):
            archive.writestr(f"pack/{folder}/0.jpg", image())
        bad_member(archive)
    return path


def symlink_member(archive):
    info = zipfile.ZipInfo("pack/train/cats/link.jpg")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive.writestr(info, "/etc/passwd")


def lying_member(archive):
    """Declares 1000 bytes, holds 2 MB: patched in both headers after writing."""
    archive.writestr("pack/train/cats/liar.jpg", bytes(2 * 1024 * 1024))


def patch_declared_size(path, name, size):
    """Overwrite a member's uncompressed size in its local and its central header."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        local = archive.getinfo(name).header_offset
    central = next(at for at in (m.start() for m in re.finditer(b"PK\x01\x02", data))
                   if data[at + 46:].startswith(name.encode()))
    data[local + 22:local + 26] = data[central + 24:central + 28] = struct.pack("<I", size)
    path.write_bytes(bytes(data))


def truncated_zip(tmp):
    whole = zip_with(tmp / "a.zip", lambda archive: None).read_bytes()
    (tmp / "a.zip").write_bytes(whole[:len(whole) // 2])
    return tmp / "a.zip"


def corrupt_member(path, name):
    """Flip bytes inside one member's compressed data."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 5, start + 25):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


ARCHIVE_CASES = {
    "zip slip with ..": (
        lambda tmp: zip_with(tmp / "a.zip", lambda z: z.writestr("pack/../../../escaped.txt", "x")),
        "member pack/../../../escaped.txt climbs out of the target folder with '..' (zip slip)"),
    "absolute path": (
        lambda tmp: zip_with(tmp / "a.zip", lambda z: z.writestr(f"{tmp}/abs_escaped.txt", "x")),
        "has an absolute path (zip slip)"),
    "symlink member": (
        lambda tmp: zip_with(tmp / "a.zip", symlink_member),
        "member pack/train/cats/link.jpg is a symbolic link"),
    "member over max_file_mb": (
        lambda tmp: zip_with(tmp / "a.zip",
                             lambda z: z.writestr("pack/train/cats/big.jpg", bytes(600 * 1024))),
        "member pack/train/cats/big.jpg declares 0.6 MB uncompressed, over fetch.max_file_mb (0.5)"),
    "total over max_total_mb": (
        lambda tmp: zip_with(tmp / "a.zip", lambda z: [
            z.writestr(f"pack/train/cats/part{i}.jpg", bytes(400 * 1024)) for i in range(4)]),
        "its members declare 1.6 MB uncompressed in total, over fetch.max_total_mb (1)"),
    "header lies about the size": (
        lambda tmp: (zip_with(tmp / "a.zip", lying_member),
                     patch_declared_size(tmp / "a.zip", "pack/train/cats/liar.jpg", 1000))[0],
        "member pack/train/cats/liar.jpg is damaged (Bad CRC-32"),
    "corrupt member data": (
        lambda tmp: (zip_with(tmp / "a.zip", lambda z: z.writestr("pack/train/dogs/9.jpg", image())),
                     corrupt_member(tmp / "a.zip", "pack/train/dogs/9.jpg"))[0],
        "member pack/train/dogs/9.jpg is damaged"),
    "truncated zip": (
        truncated_zip,
        "is neither a folder nor a complete zip file"),
}


@pytest.mark.parametrize("case", ARCHIVE_CASES, ids=list(ARCHIVE_CASES))
def test_a_bad_archive_is_refused_and_nothing_is_written(tmp_path, monkeypatch, case,
                                                         write_params):
    make, message = ARCHIVE_CASES[case]
    archive = make(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    write_params(work, archive, **CHANGES, fetch__max_total_mb=1)
    before = snapshot(tmp_path)
    monkeypatch.chdir(work)
    with pytest.raises(SystemExit) as failure:
        fetch.main()
    assert str(archive) in str(failure.value) and message in str(failure.value)
    # Nothing new but the (empty) data folder and fetch's lock: no data/raw, no partial folder.
    assert snapshot(tmp_path) == {**before, "work/data": ("dir",), "work/.backups": ("dir",),
                                  "work/.backups/data.lock": ("file", f"{os.getpid()}\n".encode())}


def test_a_stream_longer_than_its_limit_is_cut_off(tmp_path):
    # The byte count, not the header, decides (zipfile also stops at the declared size).
    with pytest.raises(fetch.TooLarge):
        fetch.copy_limited(io.BytesIO(bytes(3000)), tmp_path / "out", max_bytes=2048)


def test_an_interrupted_fetch_leaves_nothing_behind(tmp_path, monkeypatch, write_params):
    source = tmp_path / "source"
    for i in range(5):
        (source / "train/cats").mkdir(parents=True, exist_ok=True)
        (source / f"train/cats/{i}.jpg").write_bytes(image())
    (source / "validation/cats").mkdir(parents=True)
    write_params(tmp_path, source, **CHANGES)
    monkeypatch.chdir(tmp_path)
    copies = []

    def interrupted(stream, dest, max_bytes):
        if len(copies) == 3:
            raise KeyboardInterrupt  # Ctrl-C halfway through the copy
        copies.append(dest)
        return fetch_copy(stream, dest, max_bytes)

    fetch_copy = fetch.copy_limited
    monkeypatch.setattr(fetch, "copy_limited", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch.main()
    assert copies and list((tmp_path / "data").iterdir()) == []
