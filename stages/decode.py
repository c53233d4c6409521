"""Stage decode: each split's images decoded and resized once, reused by every later stage.

data/decoded/<split>.images.npy holds uint8 images (N, size, size, 3) and <split>.labels.npy
float labels, in the row order of data/split/<split>.csv. Images are written as they are
decoded, one row at a time: memory stays flat however many there are. Augmentation stays on
the fly, in training.
"""
from catsdogs import params, paths
from catsdogs.data import decoded_rows, read_split, save_decoded
from catsdogs.files import discard, replaced, require


def main():
    p = params.load()
    size = p.model.image_size
    # A previous run's arrays go first: a run that fails leaves none to be taken for its own.
    discard(paths.DECODED)
    for split in paths.SPLITS:
        require(paths.SPLIT / f"{split}.csv", "decode", made_by="split")
    with replaced(paths.DECODED) as decoded:  # all splits appear at once, or none
        for split in paths.SPLITS:
            frame = read_split(split, p.classes)
            save_decoded(split, decoded_rows(frame["path"], size, name=split), frame["label"],
                         folder=decoded)
            print(f"decode: {split}: {len(frame)} images, {size}x{size}, "
                  f"{len(frame) * size * size * 3 / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
