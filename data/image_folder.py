"""Pictures kept the way most people keep them: one sub-folder per class (torchvision's
ImageFolder layout), `--data_type image_folder --train_dir <folder>`.

    my_data/train/cat/001.jpg  my_data/train/dog/002.png  ...

The class names are the sub-folders' names, sorted (class id = position); a picture is a
file whose suffix torchvision's ImageFolder accepts, found at any depth of its class folder
(torchvision's own `find_classes` and `make_dataset` scan it). Validation is `--val_dir`
(the same class folders; one missing there is fine, an unknown one is refused), or a seeded,
stratified `--val_fraction` of the training folder: each class gives that share, the same
pictures for every --seed and on every machine (`--split_seed` picks another split).
"""

import hashlib
import random
from collections import defaultdict
from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from data.augment import Augment
from data.demo_data import ensure_demo_data
from data.list_dataset import ListDataset, ListEntry, Samples, open_samples
from utils.distributed import main_process_first
from utils.errors import UserError


def scan_folder(folder: str, class_names: list[str] | None = None, flag: str = "--train_dir") -> Samples:
    """The pictures under `folder`'s class sub-folders (their names the classes, unless
    `class_names` are given: a validation folder takes the training folder's)."""
    path = Path(folder)
    if not folder or not path.is_dir():
        raise UserError(f"{flag} {folder!r} is not a folder; give the folder that holds one sub-folder of pictures "
                        "per class (e.g. data/train/cat/, data/train/dog/).")
    try:
        found, _ = find_classes(str(path))
    except FileNotFoundError:
        raise UserError(f"{flag} {folder} holds no class sub-folders; put the pictures of each class into a "
                        "sub-folder named after it.") from None
    names = class_names or found
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise UserError(f"{flag} {folder} has class folders the training folder has not: {', '.join(unknown)}; "
                        f"the classes are {', '.join(names)}.")
    class_to_idx = {name: i for i, name in enumerate(names) if name in found}
    pictures = make_dataset(str(path), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    if not pictures:
        raise UserError(f"{flag} {folder} holds no pictures (files ending in {', '.join(IMG_EXTENSIONS)}) in its "
                        "class sub-folders.")
    entries = [ListEntry(Path(file), label, file) for file, label in pictures]
    listing = "\n".join(f"{file}\t{label}" for file, label in pictures).encode("utf-8")
    return Samples(entries, names, "classification", path, hashlib.sha256(listing).hexdigest())


def split(samples: Samples, fraction: float, seed: int, validation: bool) -> Samples:
    """The validation share (or the rest) of `samples`: `fraction` of each class, at least one
    picture of every class with two or more, chosen by `seed` alone."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for index, entry in enumerate(samples.entries):
        by_class[entry.label].append(index)
    rng, chosen = random.Random(seed), set()
    for label in sorted(by_class):
        members = by_class[label]
        count = min(len(members) - 1, max(1, round(fraction * len(members)))) if len(members) > 1 else 0
        chosen.update(rng.sample(members, count))
    entries = [e for i, e in enumerate(samples.entries) if (i in chosen) == validation]
    if not entries:
        part = "validation" if validation else "training"
        raise UserError(f"--val_fraction {fraction} leaves no {part} picture in {samples.source}; use a fraction "
                        "between 0 and 1 and a folder of several pictures a class.")
    digest = hashlib.sha256(f"{samples.sha256} {fraction} {seed} {validation}".encode()).hexdigest()
    return Samples(entries, samples.class_names, samples.task, samples.source, digest)


def build_image_folder(train: bool, augment: Augment, train_dir: str = "", val_dir: str = "",
                       val_fraction: float = 0.0, split_seed: int = 0, image_size: int = 32,
                       in_memory: bool | None = None) -> ListDataset:
    """Registry builder (see data/data_entry.py): a folder of class sub-folders.

    Args:
        train_dir: the training folder: one sub-folder of pictures per class
        val_dir: the validation folder, with the same class sub-folders (or use --val_fraction)
        val_fraction: validate on this share of each class of --train_dir instead of --val_dir, e.g. 0.2
        split_seed: which pictures --val_fraction takes (the same for every --seed)
        image_size: the side, in pixels, every picture is resized to
        in_memory: hold the resized pictures in memory (default: when they take at most 512 MiB)
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
    if bool(val_dir) == bool(val_fraction):
        raise UserError("--data_type image_folder validates on --val_dir <folder> or on --val_fraction <share> of "
                        f"--train_dir; give one of them (now: --val_dir {val_dir!r}, --val_fraction {val_fraction}).")
    with main_process_first():  # the demo's folders are drawn on first use, by one process
        ensure_demo_data(train_dir)
    if train or val_fraction:
        samples = scan_folder(train_dir)
        samples = split(samples, val_fraction, split_seed, validation=not train) if val_fraction else samples
    else:  # the training folder's class names only: evaluating needs none of its pictures
        samples = scan_folder(val_dir, class_folders(train_dir), "--val_dir")
    return open_samples(samples, train, augment, image_size, in_memory)


def class_folders(folder: str) -> list[str]:
    """The class names of a training folder (its sub-folders), without scanning their pictures."""
    try:
        return find_classes(folder)[0]
    except (FileNotFoundError, NotADirectoryError):
        raise UserError(f"--train_dir {folder!r} (whose sub-folders name the classes) is not a folder of class "
                        "sub-folders.") from None


build_image_folder.changeable_on_resume = ("in_memory",)  # the same values from memory or from disk
