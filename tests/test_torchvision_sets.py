"""MNIST, FashionMNIST and CIFAR10 entries, on tiny files in the real on-disk formats.

Nothing is downloaded: each test writes the files torchvision reads (idx files for the
MNISTs, pickled batches for CIFAR10) and builds the data set through the registry.
"""

import hashlib
import pickle
import struct
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
from torchvision import datasets

from data.data_entry import build_dataset
from options import parse_train_args
from utils.errors import UserError


def args_for(data_type: str, root: Path, *flags: str) -> Namespace:
    return parse_train_args(["--data_type", data_type, "--data_root", str(root), *flags])[0]


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """MNIST's idx format: big-endian magic and sizes, then the raw uint8 values."""
    folder.mkdir(parents=True, exist_ok=True)
    n, rows, cols = images.shape
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">iiii", 2051, n, rows, cols) + images.tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 2049, n) + labels.tobytes())


@pytest.mark.parametrize("data_type, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_family_reads_idx_files(tmp_path: Path, data_type: str, folder: str) -> None:
    rng = np.random.default_rng(0)
    raw = tmp_path / folder / "raw"
    write_idx(raw, "train", rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), np.arange(12, dtype=np.uint8) % 10)
    write_idx(raw, "t10k", np.full((4, 28, 28), 255, dtype=np.uint8), np.array([7, 1, 2, 3], dtype=np.uint8))
    train = build_dataset(args_for(data_type, tmp_path), train=True)
    test = build_dataset(args_for(data_type, tmp_path), train=False)
    assert (len(train), len(test)) == (12, 4)
    assert (train.num_classes, train.in_channels) == (10, 1)
    item = test[0]
    assert item["label"] == 7 and item["path"] == f"{data_type}/test/0"
    assert item["image"].shape == (1, 28, 28) and float(item["image"].min()) == 1.0  # white, normalised


def test_cifar10_reads_pickled_batches(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for index, name in enumerate(names):
        batch = {"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), "labels": [index % 10, 1, 2]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class{i}" for i in range(10)]}))

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    # torchvision checks each file against the md5 of the real release; point it at ours.
    monkeypatch.setattr(datasets.CIFAR10, "train_list", [[n, md5(n)] for n in names[:5]])
    monkeypatch.setattr(datasets.CIFAR10, "test_list", [["test_batch", md5("test_batch")]])
    monkeypatch.setattr(datasets.CIFAR10, "meta", {**datasets.CIFAR10.meta, "md5": md5("batches.meta")})
    train = build_dataset(args_for("cifar10", tmp_path), train=True)
    test = build_dataset(args_for("cifar10", tmp_path), train=False)
    assert (len(train), len(test)) == (15, 3)
    assert train.class_names[3] == "class3" and train.in_channels == 3
    assert test[0]["label"] == 5 and test[0]["image"].shape == (3, 32, 32)


def test_missing_torchvision_set_suggests_download(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="mnist was not found under --data_root .* Pass --download"):
        build_dataset(args_for("mnist", tmp_path), train=True)


def test_a_failed_download_says_so_instead_of_asking_for_download(tmp_path: Path, monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(datasets.MNIST, "download", offline)
    with pytest.raises(UserError, match="Downloading mnist into --data_root .* failed .* Check the internet") as error:
        build_dataset(args_for("mnist", tmp_path, "--download"), train=True)
    assert "Pass --download" not in str(error.value)


def test_a_failed_download_leaves_no_run_folder(tmp_path: Path, monkeypatch, caplog) -> None:
    import train

    monkeypatch.setattr(datasets.MNIST, "download", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    checkpoints = tmp_path / "checkpoints"
    argv = ["--data_type", "mnist", "--data_root", str(tmp_path), "--download", "--checkpoints_dir", str(checkpoints)]
    assert train.main(argv) == 2
    assert "Downloading mnist" in caplog.text and not checkpoints.exists()
