"""Pictures without labels, for predict.py: a folder of pictures, a list file of image paths, or
one picture.

- A folder: every picture file in it and its subfolders, sorted by path; a picture is a file
  whose suffix is one Pillow reads (`.png`, `.jpg`, `.tif`, ...). Hidden files and folders
  (names starting with `.`) are skipped.
- A list file: one image path a line, relative to the list's folder (or absolute); blank
  lines and lines starting with `#` are skipped. A line may carry a second field after a
  space or tab (a label, as in train.txt); it is ignored, so a labelled list works too. The
  whole line is the path when that file exists, so paths with spaces need no label.
- A picture file: just that picture.

Pictures are decoded by data/image_files.py, through list_dataset.load_image, so a bad
picture gets the same clear error as in training, naming the file (and its list line). A
list's missing files are reported at start-up, before any prediction is written.
"""

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.v2.functional import rgb_to_grayscale

from data.augment import Augment, eval_transform
from data.image_files import file_problem
from data.list_dataset import load_image, read_text_file
from utils.errors import UserError

INPUT_HINT = "give a folder of pictures, a list file of image paths (one a line) or a picture file"


@dataclass(frozen=True)
class Picture:
    """One picture to predict on, and where it came from (for error messages)."""

    path: Path
    where: str  # "list.txt:12", or "--input <folder>"


@cache
def readable_suffixes() -> frozenset[str]:
    """The file suffixes of the formats Pillow can open (".png", ".jpg", ...; lower case).
    Pillow also registers formats it can only write (".pdf"): those are left out."""
    return frozenset(suffix for suffix, kind in Image.registered_extensions().items() if kind in Image.OPEN)


def find_pictures(folder: Path) -> list[Picture]:
    """Every picture file under `folder`, sorted by path; hidden files and folders skipped."""
    found = []
    for root, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        found += [Path(root) / name for name in files
                  if not name.startswith(".") and Path(name).suffix.lower() in readable_suffixes()]
    if not found:
        shown = ", ".join(sorted(readable_suffixes() & {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}))
        raise UserError(f"--input {folder} holds no pictures (files ending in {shown}, ...; hidden files "
                        f"skipped); {INPUT_HINT}.")
    return [Picture(path, f"--input {folder}") for path in sorted(found, key=str)]


def read_path_list(list_path: Path) -> list[Picture]:
    """The image paths of a list file, by the rules in the module docstring."""
    hint = "A list of pictures to predict on has one image path a line."
    text = read_text_file(list_path, "List file", hint)
    pictures = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            pictures.append(Picture(image_of_line(line, list_path.parent), f"{list_path}:{number}"))
    if not pictures:
        raise UserError(f"List file {list_path} holds no image paths (only blank or `#` lines). {hint}")
    for picture in pictures:  # a missing file is found now, not after hours of predictions
        problem = file_problem(picture.path)
        if problem:
            raise UserError(f"The image {picture.path} (listed at {picture.where}) {problem}.")
    return pictures


def image_of_line(line: str, folder: Path) -> Path:
    """The whole line as a path when that file exists (or when it is one word), else the line
    without its last field (`<image> <label>`, the label ignored)."""
    whole = folder / line
    if os.path.lexists(whole) or len(line.split()) == 1:
        return whole
    return folder / line.rsplit(maxsplit=1)[0]


def pictures_of(input_path: str | Path) -> list[Picture]:
    """The pictures --input names: a folder's, a list file's, or the one picture."""
    path = Path(input_path)
    if path.is_dir():
        return find_pictures(path)
    if not path.exists():
        raise UserError(f"--input {input_path} does not exist; {INPUT_HINT}.")
    if path.suffix.lower() in readable_suffixes():
        return [Picture(path, "--input")]
    return read_path_list(path)


class UnlabeledImages(Dataset):
    """Pictures decoded from disk each time they are read, resized as in evaluation.

    Each item is a dict: `image` (float tensor C x H x W, as the model takes it), `path` (the
    file, for predictions.csv) and `size` (the picture's own height and width, to scale a
    predicted mask back to it)."""

    def __init__(self, pictures: list[Picture], image_size: int, in_channels: int,
                 normalisation: Augment = Augment()) -> None:
        """`normalisation`: the --mean and --std the model was trained with."""
        if in_channels not in (1, 3):
            raise UserError(f"The model takes {in_channels}-channel inputs; predict.py reads pictures as RGB "
                            "(3 channels) or grey (1 channel) only.")
        self.pictures, self.in_channels = pictures, in_channels
        self.transform = eval_transform(image_size, augment=normalisation)

    def __len__(self) -> int:
        return len(self.pictures)

    def __getitem__(self, index: int) -> dict:
        picture = self.pictures[index]
        image = load_image(picture.path, picture.where)
        size = torch.tensor(image.shape[1:])
        if self.in_channels == 1:  # a model trained on grey pictures (MNIST)
            image = rgb_to_grayscale(image)
        return {"image": self.transform(image), "path": str(picture.path), "size": size}
