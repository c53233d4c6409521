"""Stage decode: each split's images decoded and resized once, reused by every later stage.

data/decoded/<split>.npz holds uint8 images (N, size, size, 3) and float labels, in the
row order of data/split/<split>.csv. Augmentation stays on the fly, in training.
"""
from catsdogs import params, paths
from catsdogs.data import decode_files, read_split, save_decoded


def main():
    size = params.load().model.image_size
    for split in paths.SPLITS:
        frame = read_split(split)
        images = decode_files(frame["path"], size, name=split)
        save_decoded(split, images, frame["label"])
        print(f"decode: {split}: {len(images)} images, {size}x{size}, "
              f"{images.nbytes / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
