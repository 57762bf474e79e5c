"""An ImageNet-shaped JPEG folder at 224 x 224, and how fast the template reads it.

Why: ImageNet-sized data spends its time in JPEG decoding and start-up, which the small demo
never shows. `make` writes real photographs (no download: the JPEGs of --source, by default
scikit-learn's two bundled sample photos), cut into --unique different 224 x 224 pictures
(random crops of 10-100% of the photo, colour changes, flips, JPEG quality 75-95), spread
over 1,000 class folders and repeated by hard links up to --files (little disk: the unique
pictures only), with a list file of the same pictures:

    OUT/train/n0000/000000.jpg ... OUT/train/n0999/...   --data_type image_folder
    OUT/train.txt                                         --data_type list

`speed` times, in a new process each round (rounds interleaved), building the training set of
the 100,000 pictures and its loader, the first batch, and then the loader's throughput in
images/s: the template's training loader (data/data_entry.py; --data_type image_folder and
list; --hflip 0.5) against a plain torchvision ImageFolder + PIL + transforms.v2 loader with
the same augmentation and workers (`--before DIR` adds the template of another checkout);
`decode` times decoding for --in_memory (pictures/s):

    PHOTOS=$(/tmp/benchenv/bin/python -c "import sklearn.datasets as d, os; print(os.path.dirname(d.__file__))")
    python bench/jpeg_folder.py make /tmp/jpeg224 --source $PHOTOS/images    # or any folder of JPEG photos
    python bench/jpeg_folder.py speed /tmp/jpeg224 --rounds 4 --num_workers 2
    python bench/jpeg_folder.py decode /tmp/jpeg224 --pictures 4000 --image_size 64
"""

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image, ImageEnhance, ImageOps
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

REPO = Path(__file__).resolve().parents[1]
CLASSES = 1000
SIDE = 224


def source_photos(source: str | None) -> list[Path]:
    """The photographs to cut pictures from: --source's JPEGs, or scikit-learn's sample photos."""
    if source is None:
        try:
            import sklearn.datasets  # only to find its two bundled photos; not a project dependency
        except ImportError:
            sys.exit("make: give --source <a folder of JPEG photos> (scikit-learn, whose sample photos are the "
                     "default, is not installed in this Python).")
        source = str(Path(sklearn.datasets.__file__).parent / "images")
    photos = sorted(p for p in Path(source).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not photos:
        sys.exit(f"make: {source} holds no .jpg files.")
    return photos


def varied_picture(photo: Image.Image, rng: random.Random) -> Image.Image:
    """One 224 x 224 picture from a photo: a random crop (10-100% of its area, aspect 3/4 to
    4/3), resized, with random brightness, contrast, saturation and a horizontal flip."""
    width, height = photo.size
    area = width * height * rng.uniform(0.1, 1.0)
    aspect = rng.uniform(3 / 4, 4 / 3)
    w, h = min(width, round((area * aspect) ** 0.5)), min(height, round((area / aspect) ** 0.5))
    left, top = rng.randint(0, width - w), rng.randint(0, height - h)
    picture = photo.crop((left, top, left + w, top + h)).resize((SIDE, SIDE), resample=3)  # bicubic
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        picture = enhance(picture).enhance(rng.uniform(0.6, 1.4))
    return ImageOps.mirror(picture) if rng.random() < 0.5 else picture


def make(out: Path, files: int, unique: int, source: str | None, seed: int) -> None:
    photos = [Image.open(p).convert("RGB") for p in source_photos(source)]
    rng = random.Random(seed)
    train = out / "train"
    for c in range(CLASSES):
        (train / f"n{c:04d}").mkdir(parents=True, exist_ok=True)
    start, lines, written = time.perf_counter(), [], 0
    for i in range(files):
        path = train / f"n{i % CLASSES:04d}" / f"{i:06d}.jpg"
        lines.append(f"train/{path.parent.name}/{path.name} {i % CLASSES}")
        if path.exists():
            continue
        if i < unique:
            varied_picture(photos[i % len(photos)], rng).save(path, quality=rng.randint(75, 95))
            written += path.stat().st_size
        else:  # a hard link to one of the unique pictures: the same bytes, another name
            original = i % unique
            os.link(train / f"n{original % CLASSES:04d}" / f"{original:06d}.jpg", path)
    (out / "train.txt").write_text("\n".join(lines) + "\n")
    (out / "classes.txt").write_text("".join(f"n{c:04d}\n" for c in range(CLASSES)))
    print(f"{files:,} pictures ({min(unique, files):,} unique, {written / 2**20:.0f} MiB written) in {CLASSES} class "
          f"folders of {out / 'train'}, and {out / 'train.txt'}, in {time.perf_counter() - start:.0f} s")


SIDES = ("template_folder", "template_list", "plain", "before_folder", "before_list")


def augmentation(hflip: float, crop_padding: int) -> list:
    """The training augmentation both loaders apply after the resize to 224."""
    steps = [v2.RandomCrop(SIDE, padding=crop_padding, padding_mode="edge")] if crop_padding else []
    return steps + ([v2.RandomHorizontalFlip(hflip)] if hflip else [])


def plain_loader(root: Path, batch_size: int, workers: int, hflip: float, crop_padding: int) -> DataLoader:
    """What a user writes from the torchvision docs: ImageFolder (PIL decoding) + transforms.v2."""
    transform = v2.Compose([v2.ToImage(), v2.Resize((SIDE, SIDE), antialias=True),
                            *augmentation(hflip, crop_padding), v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize((0.5,), (0.5,))])
    data = ImageFolder(str(root / "train"), transform=transform)
    return DataLoader(data, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True,
                      generator=torch.Generator().manual_seed(0))


def template_loader(side: str, root: Path, batch_size: int, workers: int, hflip: float,
                    crop_padding: int) -> DataLoader:
    """The template's training loader, built as train.py builds it (data/data_entry.py)."""
    from argparse import Namespace

    from data.augment import Augment
    from data.data_entry import select_train_loader
    from data.image_folder import build_image_folder
    from data.list_dataset import build_list_dataset
    from utils.host_memory import keep_freed_memory

    keep_freed_memory()  # as train.py does
    augment = Augment(hflip=hflip, crop_padding=crop_padding)
    if side.endswith("_folder"):
        data = build_image_folder(True, augment, train_dir=str(root / "train"), val_dir=str(root / "train"),
                                  image_size=SIDE)
    else:
        data = build_list_dataset(str(root / "train.txt"), True, augment, image_size=SIDE)
    args = Namespace(seed=0, batch_size=batch_size, limit_train_batches=0, overfit_batches=0, num_workers=workers,
                     sampler="shuffle")
    return select_train_loader(args, data)


def measure(side: str, root: Path, batch_size: int, workers: int, batches: int, hflip: float,
            crop_padding: int, repo: Path) -> None:
    """One side in this process: seconds to build the set and loader, to the first batch, and
    images/s over the next `batches` batches, and the CPU milliseconds an image took in this
    process and its workers (robust to other work on the machine; it includes the first
    batch and the up to 2 x workers batches prefetched, alike for every side). One line."""
    sys.path.insert(0, str(repo))  # the template's imports are not start-up: both sides have theirs before the clock
    import data.data_entry  # noqa: F401

    start = time.perf_counter()
    if side == "plain":
        loader = plain_loader(root, batch_size, workers, hflip, crop_padding)
    else:
        loader = template_loader(side, root, batch_size, workers, hflip, crop_padding)
    built, cpu_built = time.perf_counter(), cpu_seconds()
    batches_of = iter(loader)
    first = next(batches_of)
    first_batch = time.perf_counter()
    for _ in range(batches):
        batch = next(batches_of)
    end = time.perf_counter()
    images = batch["image"] if isinstance(batch, dict) else batch[0]
    assert images.shape == (batch_size, 3, SIDE, SIDE) and images.dtype == torch.float32, images.shape
    del first
    batches_of._shutdown_workers()  # the workers exit, so that their CPU time is counted
    cpu_ms = (cpu_seconds() - cpu_built) * 1000 / ((batches + 1) * batch_size)
    print(built - start, first_batch - built, batches * batch_size / (end - first_batch), cpu_ms)


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (the loader's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def speed(root: Path, rounds: int, batch_size: int, workers: int, batches: int, hflip: float,
          crop_padding: int, sides: list[str], before: Path | None) -> None:
    """The sides in new processes, interleaved (A B C A B C ...): drift on a shared machine
    hits every side alike."""
    sides = [side for side in sides if before or not side.startswith("before")]
    results: dict[str, list[list[float]]] = {side: [] for side in sides}
    for round_ in range(rounds):
        for side in sides:
            repo = before if side.startswith("before") else REPO
            command = [sys.executable, __file__, "_measure", side, str(root), "--batch_size", str(batch_size),
                       "--num_workers", str(workers), "--batches", str(batches), "--hflip", str(hflip),
                       "--crop_padding", str(crop_padding), "--repo", str(repo)]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
            results[side].append([float(value) for value in out[-4:]])
            build, first, rate, cpu = results[side][-1]
            print(f"round {round_ + 1} {side:16s} build {build:6.2f} s  first batch {first:5.2f} s  {rate:7.1f} "
                  f"images/s  {cpu:.2f} CPU ms/image", flush=True)
    print(f"\nmedians over {rounds} rounds, batch {batch_size}, {workers} workers, {batches} batches timed "
          f"after the first, load {os.getloadavg()[0]:.1f}:")
    plain = [statistics.median(column) for column in zip(*results["plain"])] if "plain" in results else None
    for side, rows in results.items():
        build, first, rate, cpu = (statistics.median(column) for column in zip(*rows))
        rates = [r[2] for r in rows]
        ratio = f"; x plain: {rate / plain[2]:.3f} images/s, {cpu / plain[3]:.3f} CPU" if plain else ""
        print(f"{side:16s} build {build:6.2f} s  first batch {first:5.2f} s  {rate:7.1f} images/s "
              f"(min {min(rates):.1f}, max {max(rates):.1f})  {cpu:.2f} CPU ms/image{ratio}")


def decode(root: Path, pictures: int, image_size: int, rounds: int) -> None:
    """--in_memory's decoding of the first `pictures` of the list: pictures/s with one thread
    and with the default (this machine's cores), rounds interleaved, in this process."""
    sys.path.insert(0, str(REPO))
    from data import list_dataset
    from data.augment import Augment

    lines = (root / "train.txt").read_text().splitlines()[:pictures]
    part = root / f"first_{pictures}.txt"
    part.write_text("\n".join(lines) + "\n")
    threads = {"1 thread": 1, f"{list_dataset.decode_threads()} threads (default)": list_dataset.decode_threads()}
    rates: dict[str, list[float]] = {name: [] for name in threads}
    default = list_dataset.decode_threads
    for _ in range(rounds):
        for name, count in threads.items():
            list_dataset.decode_threads = lambda count=count: count
            start = time.perf_counter()
            list_dataset.build_list_dataset(str(part), True, Augment(), image_size=image_size, in_memory=True)
            rates[name].append(len(lines) / (time.perf_counter() - start))
    list_dataset.decode_threads = default
    for name, values in rates.items():
        print(f"--in_memory, {len(lines):,} pictures to {image_size} x {image_size}, {name}: median "
              f"{statistics.median(values):,.0f} pictures/s (min {min(values):,.0f}, max {max(values):,.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    making = commands.add_parser("make", help="write the JPEG folder and its list")
    making.add_argument("out", type=Path)
    making.add_argument("--files", type=int, default=100_000)
    making.add_argument("--unique", type=int, default=5_000, help="different pictures; the rest are hard links")
    making.add_argument("--source", help="a folder of JPEG photos (default: scikit-learn's sample photos)")
    making.add_argument("--seed", type=int, default=0)
    for name in ("speed", "_measure"):
        timing = commands.add_parser(name, help="loader throughput, template against plain" if name == "speed"
                                     else argparse.SUPPRESS)
        if name == "_measure":
            timing.add_argument("side", choices=SIDES)
        timing.add_argument("root", type=Path, help="the folder `make` wrote")
        timing.add_argument("--rounds", type=int, default=3)
        timing.add_argument("--batch_size", type=int, default=64)
        timing.add_argument("--num_workers", type=int, default=2)
        timing.add_argument("--batches", type=int, default=60, help="batches timed after the first")
        timing.add_argument("--hflip", type=float, default=0.5)
        timing.add_argument("--crop_padding", type=int, default=0)
        timing.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
        timing.add_argument("--before", type=Path, help="another checkout of the template, for the before_* sides")
        timing.add_argument("--repo", type=Path, default=REPO, help=argparse.SUPPRESS)
    decoding = commands.add_parser("decode", help="--in_memory's decoding, in pictures/s")
    decoding.add_argument("root", type=Path)
    decoding.add_argument("--pictures", type=int, default=4000)
    decoding.add_argument("--image_size", type=int, default=64)
    decoding.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    if options.command == "decode":
        decode(options.root, options.pictures, options.image_size, options.rounds)
    elif options.command == "make":
        make(options.out, options.files, options.unique, options.source, options.seed)
    elif options.command == "speed":
        speed(options.root, options.rounds, options.batch_size, options.num_workers, options.batches,
              options.hflip, options.crop_padding, options.sides, options.before)
    else:
        measure(options.side, options.root, options.batch_size, options.num_workers, options.batches,
                options.hflip, options.crop_padding, options.repo)


if __name__ == "__main__":
    main()
