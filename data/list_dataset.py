"""A data set described by a list file: one sample a line, `<image path> <label>`.

The list is UTF-8 text (a BOM is dropped; lines end in LF, CRLF or CR). The label is the
line's last field, after a space or tab, so image paths may hold spaces. Paths are relative
to the list file's folder, or absolute. Lines that are blank or start with `#` are skipped.

A label is, in this order:
  1. a class id: a whole number written in the digits 0-9 (`3`);
  2. a mask path (a label image: one class id per pixel, for dense tasks): it holds a `/`
     or ends in a picture suffix Pillow knows (`.png`, `.tif`, ...);
  3. refused if it looks like a number but is not a class id (`0.0`, `1e3`, `+1`, `١`);
  4. a mask path if such a file exists beside the list (a mask named without a suffix);
  5. refused otherwise (a class name such as `cat`: names belong in classes.txt).
One list holds one kind.

The class names come from `classes.txt` beside the list (or `seg_classes.txt` for mask
lists), one name a line, the first naming class id 0; without it, a class-id list has
`largest label + 1` classes. Pictures are decoded by data/image_files.py (which modes
become what, and what is refused).
"""

import logging
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from data.augment import Augment, eval_transform, is_fixed, train_transform
from data.demo_data import ensure_demo_data
from data.image_files import file_problem, open_picture, read_rgb, to_class_ids
from utils.distributed import is_main_process, main_process_first
from utils.errors import UserError
from utils.host_memory import available_memory, local_processes
from utils.plain_progress import progress_bar
from utils.run_info import file_sha256

log = logging.getLogger(__name__)

CLASS_ID = re.compile(r"-?[0-9]+")  # ASCII digits only: str.isdigit() also accepts "²"
MAX_CLASSES = 1_000_000
MAX_IMAGE_SIZE = 8192  # --image_size: pixels a side
IN_MEMORY_LIMIT = 512 * 2**20  # bytes: --in_memory's default holds a list in memory up to this size
DECODE_CHUNK = 256  # pictures a decoding thread takes at a time (--in_memory)
LIST_HINT = "A list file has one `<image path> <label>` line per sample."


@dataclass(frozen=True)
class ListEntry:
    """One parsed line: where the image is, its label, and where the line came from."""

    image: Path
    label: int | Path
    where: str  # "list.txt:12", for error messages


def read_list_file(list_path: str | Path) -> list[ListEntry]:
    """Parse a list file, with an error naming the file and line for anything malformed."""
    list_path = Path(list_path)
    text = read_text_file(list_path, "List file", LIST_HINT)
    entries = []
    for number, line in enumerate(text.split("\n"), start=1):
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


def read_text_file(path: Path, what: str, hint: str = "") -> str:
    """The text of a list or class-names file: UTF-8, a leading BOM dropped (Windows editors
    write one), every line end made LF so that line numbers match the editor's."""
    problem = file_problem(path)
    if problem:
        raise UserError(f"{what} {path} {problem}. {hint}".strip())
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"{what} {path} cannot be read: {error.strerror or error}.") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        utf16 = " It looks like UTF-16 (Windows \"Unicode\")." if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise UserError(f"{what} {path} is not UTF-8 text: byte 0x{data[error.start]:02x} on line "
                        f"{line} cannot be decoded.{utf16} Save it as UTF-8 text. {hint}".strip()) from None
    if "\0" in text:
        line = text[:text.index("\0")].count("\n") + 1
        raise UserError(f"{what} {path} holds a NUL byte on line {line}: it is binary, not text. "
                        f"{hint}".strip())
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _parse_line(line: str, list_path: Path, number: int) -> ListEntry:
    where = f"{list_path}:{number}"
    parts = line.strip().rsplit(maxsplit=1)
    if len(parts) != 2:
        comma = " (separated by a space or a tab, not a comma)" if "," in line else ""
        raise UserError(f"Malformed line {where}: {_shorten(line.strip())!r}. Expected `<image path> "
                        f"<label>`{comma}, the label an integer class id or a mask path.")
    image, label = parts
    folder = list_path.parent
    return ListEntry(folder / image, _parse_label(label, folder, where), where)


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _parse_label(label: str, folder: Path, where: str) -> int | Path:
    """A class id or a mask path, by the rules in the module docstring."""
    if CLASS_ID.fullmatch(label):
        if int(label) < 0:
            raise UserError(f"Negative class id {label} at {where}; class ids start at 0.")
        if int(label) >= MAX_CLASSES:
            raise UserError(f"Class id {label} at {where} is implausibly large (the limit is {MAX_CLASSES - 1}); "
                            "class ids count from 0 up to the number of classes - 1.")
        return int(label)
    if "/" in label or os.sep in label or Path(label).suffix.lower() in _picture_suffixes():
        return folder / label
    if _looks_like_number(label):
        raise UserError(f"Label {_shorten(label)} at {where} is not an integer class id; {_integer_hint(label)}.")
    if os.path.lexists(folder / label):
        return folder / label
    raise UserError(f"Label {_shorten(label)!r} at {where} is neither a class id (a whole number "
                    "0, 1, 2, ...) nor a mask path (a path with `/`, or a file name ending in a "
                    "picture suffix such as .png). Class names belong in classes.txt, one a "
                    "line: the label of the name on line i is i - 1.")


@cache
def _picture_suffixes() -> frozenset[str]:
    return frozenset(Image.registered_extensions())  # ".png", ".jpg", ".tif", ... (lower case)


def _looks_like_number(label: str) -> bool:
    try:
        float(label)  # "0.0", "1e3", "+1", "١" (any script's digits), "nan"
        return True
    except ValueError:
        return any(c.isnumeric() for c in label) and all(c.isnumeric() or c in "+-.,_eE" for c in label)


def _integer_hint(label: str) -> str:
    try:
        value = float(label)
    except ValueError:
        value = None
    if value is not None and value.is_integer() and 0 <= value < MAX_CLASSES:
        return f"write {int(value)}"
    return "class ids are whole numbers 0, 1, 2, ... written with the digits 0-9"


def read_class_names(list_path: str | Path, dense: bool) -> list[str] | None:
    """The names in `classes.txt` (`seg_classes.txt` for mask lists) beside the list, if any.

    A blank line between names is refused: it would shift the id of every class after it."""
    name = "seg_classes.txt" if dense else "classes.txt"
    path = Path(list_path).parent / name
    if not os.path.lexists(path):
        return None
    hint = "It names the classes, one a line: line i names class id i - 1."
    names = [line.strip() for line in read_text_file(path, "Class names file", hint).split("\n")]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise UserError(f"Class names file {path} names no classes. {hint} Delete it to number "
                        "the classes 0, 1, 2, ... instead.")
    if "" in names:
        raise UserError(f"{path}:{names.index('') + 1} is blank; in {name} line i names class id "
                        "i - 1, so a blank line would shift every class after it. Remove the line.")
    return names


def load_image(path: Path, where: str) -> torch.Tensor:
    """Decode a picture as an RGB uint8 tensor (3, H, W); errors name the file and list line.
    Every Pillow mode has a rule (data/image_files.py); 16-bit grey is scaled, not clipped;
    JPEGs are decoded by torchvision.io, the same pixels faster."""
    return read_rgb(path, where)


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


@dataclass
class Samples:
    """What a data set holds before any picture is read: its entries (image, label, where
    listed), class names and task, and what it was read from (a list or CSV file, a folder),
    with a SHA-256 of that, so a resumed run can tell it still sees the same data."""

    entries: list[ListEntry]
    class_names: list[str]
    task: str  # a key of TASKS: "classification", "segmentation", "multilabel", "regression"
    source: Path
    sha256: str | None = None


def read_list_samples(list_path: str | Path, dense: bool | None = None) -> Samples:
    """A list file's samples. `dense`: whether the list must hold masks (True) or class ids
    (False); None takes either."""
    list_path = Path(list_path)
    entries = read_list_file(list_path)
    is_dense = isinstance(entries[0].label, Path)
    if dense is not None and dense != is_dense:
        raise UserError(wrong_kind_of_list(list_path, entries[0].where, is_dense))
    names = read_class_names(list_path, is_dense)
    if names is None and is_dense:
        raise UserError(f"Mask list {list_path} needs seg_classes.txt beside it "
                        "(one class name a line, line i = class id i).")
    if names is None:
        names = [str(i) for i in range(max(entry.label for entry in entries) + 1)]
    elif not is_dense:
        check_class_ids(entries, names, "classes.txt beside the list")
    return Samples(entries, names, "segmentation" if is_dense else "classification", list_path,
                   file_sha256(list_path))


def check_class_ids(entries: list[ListEntry], names: list[str], named_by: str) -> None:
    for entry in entries:
        if entry.label >= len(names):
            raise UserError(f"Class id {entry.label} at {entry.where} is outside [0, {len(names)}): {named_by} "
                            f"names {len(names)} classes.")


class ListDataset(Dataset):
    """Samples (a list file's, or given: a folder's, a CSV's), decoded from disk each time
    they are read.

    Each item is a dict: `image` (float tensor C x H x W), `label` (a class id; a long tensor
    H x W for masks; a float tensor for several labels or targets) and `path` (the image
    file, for predictions.csv).
    """

    def __init__(self, list_path: str | Path, transform: Callable, dense: bool | None = None,
                 samples: Samples | None = None) -> None:
        """`dense`: whether the list must hold masks (True) or class ids (False); None takes
        either. `samples`: the samples themselves, read elsewhere (`list_path` is then unused)."""
        self.samples = samples or read_list_samples(list_path, dense)
        self.list_path, self.sha256 = self.samples.source, self.samples.sha256
        self.entries = self.samples.entries
        self.transform = transform
        self.task = self.samples.task  # picks the task in tasks/
        self.dense = self.task == "segmentation"
        self.in_channels = 3
        self.class_names = self.samples.class_names
        self.num_classes = len(self.class_names)

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


class MemListDataset(ListDataset):
    """A `ListDataset` whose pictures (and masks) are decoded once, when it is built, and kept
    at `image_size` (resized then, as the transform would each time: the same pixels) in one
    uint8 tensor.

    Why: small data sets spend most of an epoch decoding (and resizing) the same files again.
    The transform passed in must not resize; random augmentation still runs on every read.
    Without it (evaluation; training with no augmentation, the default) the DataLoader reads
    a whole batch at once (`__getitems__`), as a hand-written loop over tensors would."""

    def __init__(self, list_path: str | Path, transform: Callable, dense: bool | None, image_size: int,
                 samples: Samples | None = None) -> None:
        super().__init__(list_path, transform, dense, samples)
        self.resize = v2.Resize((image_size, image_size), antialias=True)
        needed, free = memory_size(self, image_size), available_memory()
        try:
            if free is not None and needed > free:  # else the kernel would kill the process half-way
                raise RuntimeError("not enough free memory")
            self.images = torch.empty((len(self), 3, image_size, image_size), dtype=torch.uint8)
            # (N, 1, H, W) uint8 masks, or (N,) class ids
            self.labels = torch.empty((len(self), 1, image_size, image_size), dtype=torch.uint8) if self.dense \
                else torch.stack([torch.as_tensor(entry.label) for entry in self.entries])
        except RuntimeError:  # torch's allocator refuses more than the machine can hold
            free_now = f" ({free / 2**30:,.1f} GiB is free now)" if free is not None else ""
            raise UserError(f"--in_memory: the {len(self):,} pictures of {self.list_path} take "
                            f"{needed / 2**30:,.1f} GiB at --image_size {image_size}, more "
                            "than this machine can allocate; use --no-in_memory (read from disk every epoch) or a "
                            f"smaller --image_size{free_now}.") from None
        self.decode_all()
        self.paths = [str(entry.image) for entry in self.entries]

    def decode_all(self) -> None:
        """Decode every picture into memory, in threads (decoding and resizing release the
        GIL): a list of 100,000 takes the cores' time, not one core's. The first bad file in
        list order is the error, as when decoding one by one."""
        chunks = [range(start, min(start + DECODE_CHUNK, len(self))) for start in range(0, len(self), DECODE_CHUNK)]
        pool = ThreadPoolExecutor(max(1, min(decode_threads(), len(chunks))))
        try:
            bar = progress_bar(len(self), f"decoding {self.list_path.name}", disable=not is_main_process(),
                               leave=False, mininterval=1)
            for chunk in [pool.submit(self.decode_chunk, chunk) for chunk in chunks]:
                bar.update(chunk.result())
            bar.close()
        finally:  # on an error (or Ctrl-C) the chunks not yet started are dropped
            pool.shutdown(wait=True, cancel_futures=True)

    def decode_chunk(self, indices: range) -> int:
        """Decode and resize the pictures (and masks) at `indices` into their rows; returns how many."""
        for index in indices:
            image, label = ListDataset.load_raw(self, index)
            if self.dense:  # in one call, so that the picture and its mask are resized alike
                image, label = self.resize(tv_tensors.Image(image), tv_tensors.Mask(label))
                self.labels[index] = label
            else:
                image = self.resize(image)
            self.images[index] = image
        return len(indices)

    @property
    def reads_batches(self) -> bool:
        """Whether a batch is read at once: only when the transform draws nothing random (else
        each sample is read and augmented on its own, with its own seed)."""
        return is_fixed(self.transform)

    def load_raw(self, index: int) -> tuple[torch.Tensor, int | torch.Tensor]:
        """The decoded (and resized) picture and label from memory instead of disk."""
        label = self.labels[index]
        return self.images[index], label if self.dense else (int(label) if label.ndim == 0 else label)

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """The samples at `indices`, for one batch (the DataLoader asks for them so). With a
        fixed transform, the batch is cut from memory and transformed in one call: the same
        values as sample by sample (the transform only scales), at a fraction of the cost."""
        if not self.reads_batches:
            return [self[index] for index in indices]
        index = torch.tensor(indices)
        if self.dense:
            images, masks = self.transform(tv_tensors.Image(self.images[index]), tv_tensors.Mask(self.labels[index]))
            labels = masks.as_subclass(torch.Tensor)[:, 0].long()
        else:
            images, labels = self.transform(self.images[index]), self.labels[index]
        images = images.as_subclass(torch.Tensor)
        return [{"image": image, "label": label, "path": self.paths[i]}
                for image, label, i in zip(images.unbind(), labels.unbind(), indices)]


def build_list_dataset(list_path: str, train: bool, augment: Augment, image_size: int = 32,
                       in_memory: bool | None = None) -> ListDataset:
    """Registry builder (see data/data_entry.py): `<image> <class id>` lines, pictures resized
    to `image_size`. `in_memory` decodes every picture once, at start-up, and keeps it resized
    (3 x image_size² bytes a sample); by default (None), when the set takes at most
    IN_MEMORY_LIMIT so: a small set is then not decoded again every epoch (data/data_entry.py
    passes False for the debug flags that read a few batches only)."""
    return open_list(list_path, train, augment, image_size, in_memory, dense=False)


def build_seg_list_dataset(list_path: str, train: bool, augment: Augment, image_size: int = 32,
                           in_memory: bool | None = None) -> ListDataset:
    """Registry builder for segmentation: `<image> <mask>` lines, the same flags (see
    build_list_dataset: `in_memory` unset holds a set of 512 MiB or less in memory)."""
    return open_list(list_path, train, augment, image_size, in_memory, dense=True)


# The values are the same from memory or from disk: a resumed run may switch (options.py).
build_list_dataset.changeable_on_resume = build_seg_list_dataset.changeable_on_resume = ("in_memory",)


def open_list(list_path: str, train: bool, augment: Augment, image_size: int, in_memory: bool | None,
              dense: bool) -> ListDataset:
    """A list data set of one kind; the demo lists are generated here on first use."""
    check_image_size(image_size)
    with main_process_first():  # under torchrun, one process draws the demo set
        ensure_demo_data(list_path)
    return open_samples(read_list_samples(list_path, dense), train, augment, image_size, in_memory)


def check_image_size(image_size: int) -> None:
    if image_size < 1:
        raise UserError(f"--image_size {image_size} must be 1 or more.")
    if image_size > MAX_IMAGE_SIZE:  # else torch's allocator fails on the first picture, deep inside a resize
        raise UserError(f"--image_size {image_size} is implausibly large (the limit is {MAX_IMAGE_SIZE}: one RGB "
                        f"picture that size takes {3 * MAX_IMAGE_SIZE**2 * 4 / 2**30:.1f} GiB as floats); it is the "
                        "side, in pixels, that every picture is resized to.")


def open_samples(samples: Samples, train: bool, augment: Augment, image_size: int,
                 in_memory: bool | None) -> ListDataset:
    """A data set of `samples` at `image_size`, read from disk, or held in memory when
    `in_memory` (None: when it takes at most IN_MEMORY_LIMIT)."""
    check_image_size(image_size)
    if not in_memory:
        transform = train_transform(augment, image_size) if train else eval_transform(image_size, augment=augment)
        on_disk = ListDataset(samples.source, transform, samples=samples)
        size, free = memory_size(on_disk, image_size), available_memory()
        if in_memory is False or size > IN_MEMORY_LIMIT or (free is not None and size > free):
            return on_disk
        log.info(f"Holding the {len(on_disk):,} pictures of {samples.source} in memory ({size / 2**20:.1f} MiB at "
                 f"--image_size {image_size}); --no-in_memory decodes them every epoch instead.")
    # Held in memory, the pictures are resized once, when decoded: the transform does not resize.
    transform = train_transform(augment, image_size, resize=False) if train else \
        eval_transform(image_size, False, augment=augment)
    return MemListDataset(samples.source, transform, None, image_size, samples=samples)


def decode_threads() -> int:
    """Threads that decode an --in_memory set: this process's cores (under torchrun, its share
    of them)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // local_processes())


def memory_size(dataset: ListDataset, image_size: int) -> int:
    """Bytes a list set takes held in memory: a uint8 picture (and mask) per sample."""
    return len(dataset) * (3 + dataset.dense) * image_size**2


def wrong_kind_of_list(list_path: Path, where: str, dense: bool) -> str:
    """A class-id list given to segmentation, or a mask list to classification: almost surely
    the wrong --train_list / --val_list, or the wrong --data_type."""
    if dense:
        return (f"--data_type list reads `<image> <class id>` lines, but {list_path} holds mask paths ({where}); "
                "use --data_type seg_list for it (and a segmentation model, e.g. unet).")
    return (f"--data_type seg_list needs `<image> <mask>` lines, but {list_path} holds class ids ({where}); "
            "use --data_type list for it, or a mask list.")
