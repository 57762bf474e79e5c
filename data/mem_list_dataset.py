"""The samples of a list file, decoded once and held in memory.

Why: small data sets (the demo set, MNIST-sized folders) spend most of an epoch decoding
the same PNGs again. Decoding once at start-up trades memory (uint8 pictures, about
H x W x 3 bytes a sample) for that time. Random augmentation still runs on every read.
"""

from collections.abc import Callable
from pathlib import Path

import torch

from data.augment import eval_transform, train_transform
from data.demo_data import ensure_demo_data
from data.list_dataset import ListDataset


class MemListDataset(ListDataset):
    """A `ListDataset` whose pictures (and masks) are decoded once, when it is built."""

    def __init__(self, list_path: str | Path, transform: Callable) -> None:
        super().__init__(list_path, transform)
        self.cache = [ListDataset.load_raw(self, i) for i in range(len(self))]

    def load_raw(self, index: int) -> tuple[torch.Tensor, int | torch.Tensor]:
        """The decoded picture and label from memory instead of disk."""
        return self.cache[index]


def build_mem_list_dataset(*, list_path: str, train: bool, image_size: int, data_root: str,
                           download: bool) -> MemListDataset:
    """Registry builder, as `build_list_dataset` but held in memory."""
    ensure_demo_data(list_path)
    transform = train_transform(image_size) if train else eval_transform(image_size)
    return MemListDataset(list_path, transform)
