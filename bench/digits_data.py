"""Export scikit-learn's handwritten digits as a real, small data set in the template's list
format: 32 x 32 pictures with a segmentation mask each, and classification lists of the same
pictures. For the benchmarks (bench/seg_vs_plain.py); not part of the template.

NEEDS scikit-learn, which is NOT a project dependency: run it with any Python that has
scikit-learn, numpy and Pillow, e.g. a throw-away virtual environment:

    python3 -m venv /tmp/benchenv && /tmp/benchenv/bin/pip install scikit-learn pillow
    /tmp/benchenv/bin/python bench/digits_data.py /tmp/digits

The data set (sklearn.datasets.load_digits): 1,797 8 x 8 grey digits, values 0-16. Each is
scaled to 0-255 and enlarged 4 x with NEAREST neighbour to 32 x 32 (each source pixel becomes
a 4 x 4 block, so picture and mask line up exactly). Mask: 0 = background; a pixel of digit d
whose source value is above 4 (of 16) is class d + 1. A fixed split (a permutation drawn with
seed 0): 1,437 training and 360 validation samples (80 / 20). Written into OUT:

    images/<index>.png, masks/<index>.png      the pictures (grey) and their masks
    seg_train.txt, seg_val.txt, seg_classes.txt  segmentation: background, 0 ... 9 (11 classes)
    train.txt, val.txt, classes.txt            classification: 0 ... 9 (10 classes)
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

SCALE = 4  # 8 x 8 -> 32 x 32
THRESHOLD = 4  # of 16: brighter source pixels belong to the digit
NUM_TRAIN = 1437


def export(out: Path) -> None:
    from sklearn.datasets import load_digits  # only here: scikit-learn is not a project dependency

    digits = load_digits()
    images, targets = digits.images, digits.target  # (1797, 8, 8) floats 0-16, (1797,) ints
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    for index, (image, digit) in enumerate(zip(images, targets)):
        grey = np.round(image * 255 / 16).astype(np.uint8)
        mask = np.where(image > THRESHOLD, digit + 1, 0).astype(np.uint8)
        for array, folder in ((grey, "images"), (mask, "masks")):
            big = array.repeat(SCALE, axis=0).repeat(SCALE, axis=1)  # nearest neighbour
            Image.fromarray(big).save(out / folder / f"{index:04d}.png")
    order = np.random.RandomState(0).permutation(len(images))
    splits = {"train": sorted(order[:NUM_TRAIN]), "val": sorted(order[NUM_TRAIN:])}
    for split, indices in splits.items():
        (out / f"seg_{split}.txt").write_text("".join(f"images/{i:04d}.png masks/{i:04d}.png\n" for i in indices))
        (out / f"{split}.txt").write_text("".join(f"images/{i:04d}.png {targets[i]}\n" for i in indices))
    (out / "seg_classes.txt").write_text("background\n" + "".join(f"{d}\n" for d in range(10)))
    (out / "classes.txt").write_text("".join(f"{d}\n" for d in range(10)))
    print(f"{len(images)} digits written to {out}: {len(splits['train'])} training, {len(splits['val'])} validation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default="/tmp/digits", help="folder to write (default: %(default)s)")
    export(Path(parser.parse_args().out))


if __name__ == "__main__":
    main()
