"""torchvision's MNIST, FashionMNIST and CIFAR10, returning the same dicts as the list datasets.

They read the files torchvision downloads (under `--data_root`); nothing is fetched unless
`--download` is given, so runs stay offline by default.
"""

from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms import v2

from data.augment import MEAN, STD
from utils.errors import UserError

# name -> (torchvision class, channels of its pictures)
TORCHVISION_SETS: dict[str, tuple[type, int]] = {
    "mnist": (datasets.MNIST, 1),
    "fashion_mnist": (datasets.FashionMNIST, 1),
    "cifar10": (datasets.CIFAR10, 3),
}


class TorchvisionClassification(Dataset):
    """Wraps one torchvision classification set so its items are `{image, label, path}` dicts."""

    def __init__(self, name: str, root: str | Path, train: bool, download: bool) -> None:
        cls, self.in_channels = TORCHVISION_SETS[name]
        self.name, self.train = name, train
        transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])
        try:
            self.data = cls(root=str(root), train=train, transform=transform, download=download)
        except RuntimeError as error:  # torchvision's "Dataset not found or corrupted"
            raise UserError(f"{name} was not found under --data_root {root} ({error}). Pass "
                            "--download to fetch it (needs internet) or point --data_root at "
                            "the folder that holds it.") from None
        self.task = "classification"
        self.class_names = list(self.data.classes)
        self.num_classes = len(self.class_names)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        image, label = self.data[index]
        split = "train" if self.train else "test"
        return {"image": image.as_subclass(torch.Tensor), "label": label, "path": f"{self.name}/{split}/{index}"}


# Registry builders. All builders share one keyword signature (see data/data_entry.py);
# these use the torchvision root and ignore the list file and image size.
def build_mnist(*, list_path: str, train: bool, image_size: int, data_root: str, download: bool) -> Dataset:
    """MNIST digits, 28 x 28 grey; `train=False` gives the official test split."""
    return TorchvisionClassification("mnist", data_root, train, download)


def build_fashion_mnist(*, list_path: str, train: bool, image_size: int, data_root: str, download: bool) -> Dataset:
    """FashionMNIST clothes, 28 x 28 grey; `train=False` gives the official test split."""
    return TorchvisionClassification("fashion_mnist", data_root, train, download)


def build_cifar10(*, list_path: str, train: bool, image_size: int, data_root: str, download: bool) -> Dataset:
    """CIFAR10, 32 x 32 colour; `train=False` gives the official test split."""
    return TorchvisionClassification("cifar10", data_root, train, download)
