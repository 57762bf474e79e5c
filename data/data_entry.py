"""The data registry: `--data_type` name -> dataset builder, and the loaders built from args.

To add a data set: write `data/<name>.py` with a builder taking the same keywords as the
ones below (`list_path`, `train`, `image_size`, `data_root`, `download`; use what you
need), then add one line to `DATASETS`. The builder returns a torch Dataset whose items
are dicts `{"image", "label", "path"}` and which has `num_classes`, `in_channels`,
`class_names` and `task` ("classification" or "segmentation", see tasks.py)
attributes; the model is sized and the task chosen from them.

This file and train.py/eval.py are the only readers of `args` on the data side.
"""

import signal
from argparse import Namespace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from data.list_dataset import build_list_dataset, build_seg_list_dataset
from data.mem_list_dataset import build_mem_list_dataset
from data.seeded_sampling import SeededDataset, SeededSampler
from data.torchvision_sets import build_cifar10, build_fashion_mnist, build_mnist
from utils.distributed import ShardSampler, main_process_first, rank, world_size
from utils.errors import UserError

DATASETS = {
    "list": build_list_dataset,
    "mem_list": build_mem_list_dataset,
    "seg_list": build_seg_list_dataset,
    "mnist": build_mnist,
    "fashion_mnist": build_fashion_mnist,
    "cifar10": build_cifar10,
}
# Data types whose samples come from --train_list / --val_list (the others ignore them).
LIST_TYPES = ("list", "mem_list", "seg_list")


def build_dataset(args: Namespace, train: bool) -> Dataset:
    """The training set (`train=True`, from --train_list) or the evaluation set (--val_list)."""
    if args.data_type not in DATASETS:
        raise UserError(f"Unknown --data_type {args.data_type!r}; valid names: {', '.join(DATASETS)}.")
    with main_process_first():  # under torchrun, one process downloads or draws the demo set
        return DATASETS[args.data_type](
            list_path=args.train_list if train else args.val_list,
            train=train,
            image_size=args.image_size,
            data_root=args.data_root,
            download=args.download,
        )


def select_train_loader(args: Namespace) -> DataLoader:
    """Shuffled batches of the training set; order and augmentation depend only on --seed
    and the epoch (see data/seeded_sampling.py), which is what makes resuming exact."""
    dataset = SeededDataset(build_dataset(args, train=True))
    # Under torchrun each process gets its share of every epoch; --batch_size is per process.
    sampler = SeededSampler(dataset, num_replicas=world_size(), rank=rank(), seed=args.seed)
    # The last, incomplete batch is dropped (other samples each epoch): a batch of one breaks
    # BatchNorm, and equal batches keep the processes under torchrun in step.
    return _loader(dataset, args, sampler=sampler, drop_last=True)


def select_eval_loader(args: Namespace) -> DataLoader:
    """Batches of the evaluation set in list order, every sample exactly once (under torchrun,
    split across the processes without repeats: see ShardSampler)."""
    dataset = build_dataset(args, train=False)
    sampler = ShardSampler(len(dataset), rank(), world_size()) if world_size() > 1 else None
    return _loader(dataset, args, sampler=sampler)


def _loader(dataset: Dataset, args: Namespace, sampler: Sampler | None, drop_last: bool = False) -> DataLoader:
    if drop_last and len(sampler) < args.batch_size:
        raise UserError(f"--batch_size {args.batch_size} is larger than the {len(sampler)} training samples "
                        f"each process gets, so no full batch exists; use a smaller --batch_size.")
    return DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=args.num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=args.num_workers > 0,
        worker_init_fn=ignore_ctrl_c,
        # Workers' base seed comes from here, not from torch's global generator, which the
        # training step owns (per-sample seeds make the workers' own streams irrelevant).
        generator=torch.Generator().manual_seed(args.seed),
    )


def ignore_ctrl_c(worker_id: int) -> None:
    """Ctrl-C reaches every process of the terminal's group; it is for the main process,
    which saves and then stops the workers. (SIGTERM is left alone: Python's exit clean-up
    stops worker processes with it.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def eval_set_name(args: Namespace) -> str:
    """A short name for the evaluated data, used to name result folders: the list's stem
    (`val` for data/demo/val.txt) or, for torchvision sets, e.g. `mnist_test`."""
    if args.data_type in LIST_TYPES:
        return Path(args.val_list).stem
    return f"{args.data_type}_test"
