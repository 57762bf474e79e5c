"""A data set described by a list file: one sample a line, `<image path> <label>`.

Paths are relative to the list file's folder, or absolute. The label is an integer class
id, or the path of a label image (a mask: one class id per pixel) for dense tasks; one list
holds one kind. Lines that are empty or start with `#` are skipped.

The class names come from `classes.txt` beside the list (or `seg_classes.txt` for mask
lists), one name a line; without it, a class-id list has `largest label + 1` classes.
Pictures are decoded by data/image_files.py (which modes become what, what is refused).
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from data.augment import eval_transform, train_transform
from data.demo_data import ensure_demo_data
from data.image_files import open_picture, to_class_ids, to_rgb
from utils.errors import UserError

CLASS_ID = re.compile(r"-?[0-9]+")  # ASCII digits only: str.isdigit() also accepts "²"
MAX_CLASSES = 1_000_000


@dataclass(frozen=True)
class ListEntry:
    """One parsed line: where the image is, its label, and where the line came from."""

    image: Path
    label: int | Path
    where: str  # "list.txt:12", for error messages


def read_list_file(list_path: str | Path) -> list[ListEntry]:
    """Parse a list file, with an error naming the file and line for anything malformed."""
    list_path = Path(list_path)
    if not list_path.is_file():
        raise UserError(f"List file {list_path} does not exist (or is not a file). "
                        "A list file has one `<image path> <label>` line per sample.")
    try:
        text = list_path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"List file {list_path} cannot be read as text: {error}") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            entries.append(_parse_line(line, list_path, number))
    if not entries:
        raise UserError(f"List file {list_path} holds no samples; expected one "
                        "`<image path> <label>` line per sample.")
    kinds = {isinstance(entry.label, int) for entry in entries}
    if len(kinds) > 1:
        first_path = next(e for e in entries if isinstance(e.label, Path))
        raise UserError(f"List file {list_path} mixes class-id labels and label-image paths "
                        f"(first path label at {first_path.where}); use one kind per list.")
    return entries


def _parse_line(line: str, list_path: Path, number: int) -> ListEntry:
    where = f"{list_path}:{number}"
    parts = line.strip().rsplit(maxsplit=1)
    if len(parts) != 2:
        raise UserError(f"Malformed line {where}: {line.strip()!r}. Expected "
                        "`<image path> <label>`, the label an integer class id or a mask path.")
    image, label = parts
    folder = list_path.parent
    if CLASS_ID.fullmatch(label):
        if int(label) < 0:
            raise UserError(f"Negative class id {label} at {where}; class ids start at 0.")
        if int(label) >= MAX_CLASSES:
            raise UserError(f"Class id {label} at {where} is implausibly large (the limit is {MAX_CLASSES - 1}); "
                            "class ids count from 0 up to the number of classes - 1.")
        return ListEntry(folder / image, int(label), where)
    return ListEntry(folder / image, folder / label, where)


def read_class_names(list_path: str | Path, dense: bool) -> list[str] | None:
    """The names in `classes.txt` (`seg_classes.txt` for mask lists) beside the list, if any."""
    name = "seg_classes.txt" if dense else "classes.txt"
    path = Path(list_path).parent / name
    if not path.is_file():
        return None
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def load_image(path: Path, where: str) -> torch.Tensor:
    """Decode a picture as an RGB uint8 tensor (3, H, W); errors name the file and list line.
    Every Pillow mode has a rule (data/image_files.py); 16-bit grey is scaled, not clipped."""
    return to_rgb(open_picture(path, where, "image"), path, where)


def load_mask(path: Path, where: str) -> torch.Tensor:
    """Decode a label image (single channel, "L" or palette "P"; 16-bit when every value is
    a class id) as a (1, H, W) uint8 tensor of class ids. Palette PNGs (as in Pascal VOC)
    keep their indices, not their colours."""
    return to_class_ids(open_picture(path, where, "label image"), path, where)


def check_mask_size(image: torch.Tensor, mask: torch.Tensor, entry: ListEntry) -> None:
    """A mask must cover its image pixel for pixel; said here, before a transform fails on it."""
    if image.shape[1:] != mask.shape[1:]:
        (image_h, image_w), (mask_h, mask_w) = image.shape[1:], mask.shape[1:]
        raise UserError(f"The label image {entry.label} ({mask_w} x {mask_h} pixels) and its image "
                        f"{entry.image} ({image_w} x {image_h}), listed at {entry.where}, differ in "
                        "size; a mask holds one class id per pixel of its image.")


class ListDataset(Dataset):
    """Samples from a list file, decoded from disk each time they are read.

    Each item is a dict: `image` (float tensor C x H x W), `label` (class id, or a
    long tensor H x W for masks) and `path` (the image file, for predictions.csv).
    """

    def __init__(self, list_path: str | Path, transform: Callable) -> None:
        self.list_path = Path(list_path)
        self.entries = read_list_file(self.list_path)
        self.transform = transform
        self.dense = isinstance(self.entries[0].label, Path)
        self.task = "segmentation" if self.dense else "classification"  # picks the task in tasks.py
        self.in_channels = 3
        self.class_names = self._class_names()
        self.num_classes = len(self.class_names)

    def _class_names(self) -> list[str]:
        """From the classes file; else, for class-id lists, "0" ... "<largest label>"."""
        names = read_class_names(self.list_path, self.dense)
        if names is None and self.dense:
            raise UserError(f"Mask list {self.list_path} needs seg_classes.txt beside it "
                            "(one class name a line, line i = class id i).")
        if names is None:
            return [str(i) for i in range(max(entry.label for entry in self.entries) + 1)]
        for entry in self.entries:
            if not self.dense and entry.label >= len(names):
                raise UserError(f"Class id {entry.label} at {entry.where} is outside "
                                f"[0, {len(names)}): classes.txt beside the list names "
                                f"{len(names)} classes.")
        return names

    def __len__(self) -> int:
        return len(self.entries)

    def load_raw(self, index: int) -> tuple[torch.Tensor, int | torch.Tensor]:
        """The decoded uint8 image and its label (a uint8 mask for dense lists)."""
        entry = self.entries[index]
        image = load_image(entry.image, entry.where)
        if self.dense:
            mask = load_mask(entry.label, entry.where)
            check_mask_size(image, mask, entry)
            return image, mask
        return image, entry.label

    def __getitem__(self, index: int) -> dict:
        image, label = self.load_raw(index)
        path = str(self.entries[index].image)
        if self.dense:
            # One call on both, so random crops and flips move image and mask together.
            image, mask = self.transform(tv_tensors.Image(image), tv_tensors.Mask(label))
            return {"image": image.as_subclass(torch.Tensor), "label": mask[0].long(), "path": path}
        return {"image": self.transform(image), "label": label, "path": path}


def build_list_dataset(*, list_path: str, train: bool, image_size: int, data_root: str,
                       download: bool) -> ListDataset:
    """Registry builder (signature shared by all, see data/data_entry.py); the demo lists
    are generated here on first use. `data_root` and `download` are not used by list files."""
    ensure_demo_data(list_path)
    transform = train_transform(image_size) if train else eval_transform(image_size)
    return ListDataset(list_path, transform)


def build_seg_list_dataset(*, list_path: str, train: bool, image_size: int, data_root: str,
                           download: bool) -> ListDataset:
    """Registry builder for segmentation: a list of `<image> <mask>` lines, refused otherwise
    (a class-id list here is almost surely the wrong --train_list / --val_list)."""
    dataset = build_list_dataset(list_path=list_path, train=train, image_size=image_size,
                                 data_root=data_root, download=download)
    if not dataset.dense:
        raise UserError(f"--data_type seg_list needs `<image> <mask>` lines, but {list_path} holds class ids "
                        f"({dataset.entries[0].where}); use --data_type list for it, or a mask list.")
    return dataset
