"""The built-in demo data set: coloured shapes drawn offline, deterministically, by this file.

Why a generated set: the template must train out of the box with no internet, and tests
need real PNG files and list files, exactly what a user's own data looks like on disk.

Every image holds one shape (circle, square, triangle, cross or ring) of a random colour,
size and place on a random background with a few distracting lines. For each image the
generator also writes a mask PNG (0 = background, class id + 1 on the shape's pixels) so
that dense tasks can use the same pictures. Written under `data/demo/` (git-ignored):

    classes.txt               one class name a line (line i = class id i)
    train.txt, val.txt        `<image> <class id>` a line, paths relative to data/demo/
    seg_classes.txt           background + the shape names, for the segmentation lists
    seg_train.txt, seg_val.txt  `<image> <mask>` a line
    images/{train,val}/*.png, masks/{train,val}/*.png
    folder/{train,val}/<class>/*.png   the same pictures in one sub-folder per class (hard links)
    train.csv, val.csv        path, shape, tags (the shape; round or angular; big or small),
                              size, x, y (the shape's side and centre, as shares of the picture)

Regenerate by hand with `python -m data.demo_data` (delete data/demo/ first).
"""

import argparse
import os
import random
import shutil
from pathlib import Path

from PIL import Image, ImageDraw

from utils.errors import UserError

DEMO_ROOT = Path("data/demo")
# The demo lists each data type trains and validates on by default (--train_list / --val_list).
DEMO_LISTS = {"seg_list": ("seg_train.txt", "seg_val.txt")}
CLASSIFICATION_LISTS = ("train.txt", "val.txt")
CLASS_NAMES = ("circle", "square", "triangle", "cross", "ring")
Color = tuple[int, int, int]


def demo_list(data_type: str, train: bool) -> str:
    """The default list of a data type: the demo's segmentation lists for seg_list, else the
    classification ones (data types that do not read lists ignore it)."""
    names = DEMO_LISTS.get(data_type, CLASSIFICATION_LISTS)
    return str(DEMO_ROOT / names[0 if train else 1])


def ensure_demo_data(list_path: str) -> None:
    """Generate the demo set on first use, when a missing list inside data/demo/ is asked for.

    Lists anywhere else are the user's own data and are never created here.
    """
    path = Path(list_path)
    if path.exists() or DEMO_ROOT.resolve() not in (path.resolve(), *path.resolve().parents):
        return
    if (DEMO_ROOT / "train.txt").exists():
        raise UserError(f"{path} is missing from the demo set in {DEMO_ROOT}/, which an older version of the "
                        f"template drew; delete {DEMO_ROOT}/ to draw it anew (a few seconds).")
    print(f"Demo data not found: generating it in {DEMO_ROOT}/ (takes a few seconds, once).")
    generate_demo_data(DEMO_ROOT)


def generate_demo_data(
    root: Path, num_train: int = 3000, num_val: int = 500, image_size: int = 32, seed: int = 0
) -> None:
    """Write the whole demo set to `root`, atomically: into a temporary folder, then renamed.

    A crash half-way leaves no half-written set behind, and when several processes
    (e.g. DDP ranks) race, the first rename wins and the others keep its files.
    """
    root = Path(root)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "classes.txt").parent.mkdir(parents=True)
    (tmp / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    (tmp / "seg_classes.txt").write_text("\n".join(("background",) + CLASS_NAMES) + "\n")
    _write_split(tmp, "train", num_train, image_size, random.Random(seed))
    _write_split(tmp, "val", num_val, image_size, random.Random(seed + 1))
    try:
        os.rename(tmp, root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (root / "train.txt").exists():
            raise UserError(
                f"{root}/ exists but holds no complete demo data set (no train.txt). "
                f"Delete the folder {root}/ and run again to regenerate it."
            ) from None


def _write_split(root: Path, split: str, count: int, image_size: int, rng: random.Random) -> None:
    """Draw `count` balanced samples and write their PNGs and the two list files of one split."""
    (root / "images" / split).mkdir(parents=True)
    (root / "masks" / split).mkdir(parents=True)
    class_lines, seg_lines, table = [], [], ["path,shape,tags,size,x,y"]
    for name in CLASS_NAMES:
        (root / "folder" / split / name).mkdir(parents=True)
    for index in range(count):
        label = index % len(CLASS_NAMES)
        image, mask = draw_sample(label, image_size, rng)
        image_path = f"images/{split}/{index:05d}.png"
        mask_path = f"masks/{split}/{index:05d}.png"
        image.save(root / image_path)
        mask.save(root / mask_path)
        os.link(root / image_path, root / "folder" / split / CLASS_NAMES[label] / f"{index:05d}.png")
        class_lines.append(f"{image_path} {label}")
        seg_lines.append(f"{image_path} {mask_path}")
        table.append(f"{image_path},{CLASS_NAMES[label]},{shape_row(mask, label, image_size)}")
    (root / f"{split}.txt").write_text("\n".join(class_lines) + "\n")
    (root / f"seg_{split}.txt").write_text("\n".join(seg_lines) + "\n")
    (root / f"{split}.csv").write_text("\n".join(table) + "\n")


def shape_row(mask: Image.Image, label: int, image_size: int) -> str:
    """The CSV's tags, size, x and y of a sample, read from its mask: several labels a
    picture, and numbers to regress, that its pixels show."""
    x0, y0, x1, y1 = mask.getbbox()
    side = max(x1 - x0, y1 - y0) / image_size
    kind = "round" if CLASS_NAMES[label] in ("circle", "ring") else "angular"
    tags = ";".join((CLASS_NAMES[label], kind, "big" if side > 0.55 else "small"))
    return f"{tags},{side:.4f},{(x0 + x1) / 2 / image_size:.4f},{(y0 + y1) / 2 / image_size:.4f}"


def draw_sample(label: int, image_size: int, rng: random.Random) -> tuple[Image.Image, Image.Image]:
    """One RGB picture of shape `label` and its mask (shape pixels = label + 1, background 0)."""
    background = _random_color(rng)
    image = Image.new("RGB", (image_size, image_size), background)
    mask = Image.new("L", (image_size, image_size), 0)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(1, 3)):  # distractors: thin lines that belong to the background
        points = [rng.randrange(image_size) for _ in range(4)]
        draw.line(points, fill=_random_color(rng), width=1)
    color = _contrasting_color(background, rng)
    size = rng.randint(image_size * 3 // 8, image_size * 3 // 4)
    x0 = rng.randint(0, image_size - size - 1)
    y0 = rng.randint(0, image_size - size - 1)
    box = (x0, y0, x0 + size, y0 + size)
    flip = rng.random() < 0.5
    # Same drawing call on both pictures: the mask covers exactly the shape's pixels.
    _draw_shape(draw, label, box, color, flip)
    _draw_shape(ImageDraw.Draw(mask), label, box, label + 1, flip)
    return image, mask


def _draw_shape(draw: ImageDraw.ImageDraw, label: int, box: tuple, fill, flip: bool) -> None:
    x0, y0, x1, y1 = box
    name = CLASS_NAMES[label]
    if name == "circle":
        draw.ellipse(box, fill=fill)
    elif name == "square":
        draw.rectangle(box, fill=fill)
    elif name == "triangle":
        apex, base = (y1, y0) if flip else (y0, y1)
        draw.polygon([((x0 + x1) // 2, apex), (x0, base), (x1, base)], fill=fill)
    elif name == "cross":
        third = (x1 - x0) // 3
        draw.rectangle((x0 + third, y0, x1 - third, y1), fill=fill)
        draw.rectangle((x0, y0 + third, x1, y1 - third), fill=fill)
    elif name == "ring":
        draw.ellipse(box, outline=fill, width=max(2, (x1 - x0) // 5))


def _random_color(rng: random.Random) -> Color:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def _contrasting_color(background: Color, rng: random.Random) -> Color:
    """A colour far enough from the background that the shape is always visible."""
    while True:
        color = _random_color(rng)
        if sum(abs(a - b) for a, b in zip(color, background)) > 200:
            return color


def main() -> None:
    parser = argparse.ArgumentParser(description="Generate the demo shapes data set.")
    parser.add_argument("--root", default=str(DEMO_ROOT), help="folder to create (must not exist)")
    parser.add_argument("--num_train", type=int, default=3000, help="number of training images")
    parser.add_argument("--num_val", type=int, default=500, help="number of validation images")
    parser.add_argument("--image_size", type=int, default=32, help="side of the square images, pixels")
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same files")
    args = parser.parse_args()
    if Path(args.root).exists():
        parser.error(f"--root {args.root} already exists; delete it first or pick another folder")
    generate_demo_data(Path(args.root), args.num_train, args.num_val, args.image_size, args.seed)
    print(f"Wrote {args.num_train} + {args.num_val} samples to {args.root}/")


if __name__ == "__main__":
    main()
