"""Stage decode: each split's images and labels, in data/split/<split>.csv's order. Nothing is
decoded again: validate's rows are copied one at a time, checked against decoded_sha256."""
import hashlib

import pandas as pd

from catsdogs import params, paths
from catsdogs.decoded import PROGRESS_EVERY, DecodedImages, read_split, save_decoded
from catsdogs.files import discard, replaced, require

VALIDATED_IMAGES = paths.MANIFEST.with_suffix(".images.npy")  # validate writes it


def split_rows(split, files, validated, manifest_row, decoded_sha256):
    """The validated image of each file, checked against the manifest."""
    for count, file in enumerate(files, 1):
        row = manifest_row.get(file)
        if row is None:
            raise SystemExit(f"decode: {file} (data/split/{split}.csv) is not in "
                             f"{paths.MANIFEST}; rerun python -m stages.split")
        image = validated[row]
        if hashlib.sha256(image.tobytes()).hexdigest() != decoded_sha256[row]:
            raise SystemExit(f"decode: image {row + 1} of {VALIDATED_IMAGES} is not the one "
                             f"{paths.MANIFEST} row {row + 1} names ({file}); rerun python -m "
                             f"stages.validate")
        yield image
        if count % PROGRESS_EVERY == 0:
            print(f"decode: {split}: {count}/{len(files)}")


def main():
    p = params.load()
    size = p.model.image_size
    discard(paths.DECODED)
    for split in paths.SPLITS:
        require(paths.SPLIT / f"{split}.csv", "decode", made_by="split")
    frames = {split: read_split(split, p.classes) for split in paths.SPLITS}
    require(VALIDATED_IMAGES, "decode", made_by="validate")
    try:
        manifest = pd.read_csv(paths.MANIFEST, usecols=["path", "decoded_sha256"], dtype=str,
                               keep_default_na=False)
    except ValueError as error:  # pandas names the missing columns
        raise SystemExit(f"decode: {paths.MANIFEST}: {error}; rerun python -m stages.validate")
    try:
        validated = DecodedImages(VALIDATED_IMAGES)
    except (OSError, ValueError) as error:
        raise SystemExit(f"decode: {error} (damaged?); rerun python -m stages.validate")
    if validated.shape != (len(manifest), size, size, 3):
        raise SystemExit(f"decode: {VALIDATED_IMAGES} holds {validated.shape}, not "
                         f"{len(manifest)} images of {size}x{size}x3 (model.image_size "
                         f"{size}); rerun python -m stages.validate")
    manifest_row = {file: row for row, file in enumerate(manifest["path"])}
    decoded_sha256 = list(manifest["decoded_sha256"])
    with replaced(paths.DECODED) as decoded:  # all splits appear at once, or none
        for split, frame in frames.items():
            rows = split_rows(split, list(frame["path"]), validated, manifest_row, decoded_sha256)
            save_decoded(split, rows, frame["label"], folder=decoded)
            print(f"decode: {split}: {len(frame)} images, {size}x{size}, "
                  f"{len(frame) * size * size * 3 / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
