"""torchvision's MNIST, FashionMNIST and CIFAR10, returning the same dicts as the list datasets.

They read the files torchvision downloads (under `--data_root`); nothing is fetched unless
`--download` is given, so runs stay offline by default.
"""

from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms import v2

from data.augment import Augment, eval_transform, train_transform
from utils.errors import UserError

# name -> (torchvision class, channels of its pictures, side of its square pictures)
TORCHVISION_SETS: dict[str, tuple[type, int, int]] = {
    "mnist": (datasets.MNIST, 1, 28),
    "fashion_mnist": (datasets.FashionMNIST, 1, 28),
    "cifar10": (datasets.CIFAR10, 3, 32),
}


class TorchvisionClassification(Dataset):
    """Wraps one torchvision classification set so its items are `{image, label, path}` dicts."""

    def __init__(self, name: str, root: str | Path, train: bool, download: bool, augment: Augment) -> None:
        cls, self.in_channels, side = TORCHVISION_SETS[name]
        self.name, self.train = name, train
        steps = train_transform(augment, side, resize=False) if train else eval_transform(side, False, augment)
        transform = v2.Compose([v2.ToImage(), steps])
        try:
            self.data = cls(root=str(root), train=train, transform=transform, download=download)
        except (RuntimeError, OSError) as error:  # "Dataset not found or corrupted"; no internet
            raise UserError(download_error(name, root, download, error)) from None
        self.task = "classification"
        self.class_names = list(self.data.classes)
        self.num_classes = len(self.class_names)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        image, label = self.data[index]
        split = "train" if self.train else "test"
        return {"image": image.as_subclass(torch.Tensor), "label": label, "path": f"{self.name}/{split}/{index}"}


def download_error(name: str, root: str | Path, download: bool, error: Exception) -> str:
    """Why the set could not be read, and what to do: download it, or check the download."""
    if download:
        return (f"Downloading {name} into --data_root {root} failed ({error}). Check the internet connection "
                f"(or a proxy), or put the files torchvision expects into {root} yourself.")
    return (f"{name} was not found under --data_root {root} ({error}). Pass --download to fetch it "
            "(needs internet) or point --data_root at the folder that holds it.")


# Registry builders (see data/data_entry.py). Their keyword parameters become the flags
# --data_root and --download; they read neither list files nor --image_size (fixed sizes).
def build_mnist(train: bool, augment: Augment, data_root: str = "data/downloads", download: bool = False) -> Dataset:
    """MNIST digits, 28 x 28 grey; `train=False` gives the official test split."""
    return TorchvisionClassification("mnist", data_root, train, download, augment)


def build_fashion_mnist(train: bool, augment: Augment, data_root: str = "data/downloads",
                        download: bool = False) -> Dataset:
    """FashionMNIST clothes, 28 x 28 grey; `train=False` gives the official test split."""
    return TorchvisionClassification("fashion_mnist", data_root, train, download, augment)


def build_cifar10(train: bool, augment: Augment, data_root: str = "data/downloads", download: bool = False) -> Dataset:
    """CIFAR10, 32 x 32 colour; `train=False` gives the official test split."""
    return TorchvisionClassification("cifar10", data_root, train, download, augment)
