"""Stage decode: each split's images decoded and resized once, reused by every later stage.

data/decoded/<split>.npz holds uint8 images (N, size, size, 3) and float labels, in the
row order of data/split/<split>.csv. Augmentation stays on the fly, in training.
"""
from catsdogs import params as P
from catsdogs.data import DECODED_DIR, decode_files, read_split, save_decoded
from stages.split import SPLIT_DIR

SPLITS = ("train", "val", "test")


def main():
    params = P.load()
    size = params.model.image_size
    DECODED_DIR.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        frame = read_split(SPLIT_DIR / f"{split}.csv")
        images = decode_files(frame["path"], size, name=split)
        save_decoded(DECODED_DIR / f"{split}.npz", images, frame["label"])
        print(f"decode: {split}: {len(images)} images, {size}x{size}, "
              f"{images.nbytes / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
