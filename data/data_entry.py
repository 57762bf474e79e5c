"""The data registry: `--data_type` name -> data set builder, and the loaders built from args.

To add a data set: write `data/<name>.py` with a builder function, then add one line to
`DATASETS`. A builder takes only what it uses, by name:

- `list_path: str`: the list file to read (--train_list or --val_list; taking it marks the
  data type as one that reads lists, so the lists are checked before training starts);
- `train: bool`: the training set (augmented) or the evaluation set;
- `augment: Augment`: the training flags' augmentation (data/augment.py);
- any other typed keyword parameter with a default becomes a flag of its own (`image_size:
  int = 32` is --image_size), listed by `python train.py --data_type <name> -h`.

It returns a torch Dataset whose items are dicts `{"image", "label", "path"}` and which has
`num_classes`, `in_channels`, `class_names` and `task` ("classification" or "segmentation",
see tasks.py) attributes; the model is sized and the task chosen from them. This file and
train.py/eval.py are the only readers of `args` on the data side.
"""

import signal
from argparse import Namespace
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from data.augment import MEAN, STD, Augment
from data.csv_table import build_csv
from data.demo_data import DEMO_ROOT
from data.folds import fold_indices
from data.image_folder import build_image_folder
from data.list_dataset import build_list_dataset, build_seg_list_dataset
from data.seeded_sampling import SeededDataset, SeededSampler
from data.torchvision_sets import build_cifar10, build_fashion_mnist, build_mnist
from data.views import Part
from utils.distributed import ShardSampler, main_process_first, rank, world_size
from utils.errors import UserError
from utils.signature_flags import call_with_flags, flag_parameters

DATASETS = {
    "list": build_list_dataset,
    "seg_list": build_seg_list_dataset,
    "image_folder": build_image_folder,
    "csv": build_csv,
    "mnist": build_mnist,
    "fashion_mnist": build_fashion_mnist,
    "cifar10": build_cifar10,
}
# What the loaders hand a builder themselves; its other parameters are flags.
SUPPLIED = ("list_path", "train", "augment")


def reads_lists(data_type: str) -> bool:
    """Whether the data type's builder reads --train_list / --val_list."""
    return "list_path" in {p.name for p in flag_parameters(DATASETS[data_type], ())}


def check_list_exists(flag: str, path: str) -> None:
    """A list file must exist, except the demo lists, which are generated on first use."""
    if not Path(path).is_file() and Path(path).resolve().parent != DEMO_ROOT.resolve():
        raise UserError(f"{flag} {path} does not exist; give a list file with one "
                        "`<image path> <label>` line per sample.")


def build_dataset(args: Namespace, train: bool, list_path: str | None = None) -> Dataset:
    """The training set (augmented, from --train_list) or the evaluation set (--val_list)."""
    list_path = list_path or (args.train_list if train else args.val_list)
    augment = augment_of(args) if train else normalisation_of(args)
    flags = vars(args)
    if flags.get("in_memory") is None and uses_few_batches(args, train):  # not worth decoding the whole set first
        flags = flags | {"in_memory": False}
    # Under torchrun, one process downloads a set, then the others read it; list files are
    # local, so every process reads (decodes) its own at once (open_list draws the demo alone).
    turns = nullcontext() if reads_lists(args.data_type) else main_process_first()
    with turns:
        return call_with_flags(DATASETS[args.data_type], flags,
                               supplied=supplied_to(args.data_type, list_path=list_path, train=train, augment=augment))


def uses_few_batches(args: Namespace, train: bool) -> bool:
    """Whether a run reads only a few batches of this set (the debug flags)."""
    names = ("fast_dev_run", "overfit_batches", "limit_train_batches" if train else "limit_val_batches")
    return any(getattr(args, name, 0) for name in names)


def supplied_to(data_type: str, **available: object) -> dict[str, object]:
    """Of what the loaders can supply, what the builder of `data_type` asks for."""
    wanted = {p.name for p in flag_parameters(DATASETS[data_type], ())}
    return {name: value for name, value in available.items() if name in wanted}


def augment_of(args: Namespace) -> Augment:
    """The augmentation flags of train.py (none with --overfit_batches: the same batches each
    epoch), and the normalisation."""
    if args.overfit_batches:
        return normalisation_of(args)
    return Augment(crop_padding=args.crop_padding, hflip=args.hflip, vflip=args.vflip, policy=args.aug_policy,
                   random_erasing=args.random_erasing, mixup=args.mixup, cutmix=args.cutmix,
                   mean=normalisation_of(args).mean, std=normalisation_of(args).std)


def normalisation_of(args: Namespace) -> Augment:
    """No random change, only --mean / --std (a run saved before they were flags: the old fixed 0.5)."""
    return Augment(mean=tuple(getattr(args, "mean", None) or MEAN), std=tuple(getattr(args, "std", None) or STD))


def training_sets(args: Namespace) -> tuple[Dataset, Dataset]:
    """The training and validation sets of a training run: --train_list and --val_list; or the
    folds of --train_list (--folds, --fold); or, with --overfit_batches N, the first N batches
    of the training set, unaugmented, for both."""
    if args.overfit_batches:
        samples = args.overfit_batches * args.batch_size * world_size()
        data = build_dataset(args, train=True)
        part = Part(data, range(min(samples, len(data))))
        return part, part
    if args.folds:
        if not reads_lists(args.data_type):
            raise UserError(f"--folds splits --train_list, but --data_type {args.data_type} reads no list file; "
                            "use --data_type list or seg_list (or csv) with --folds.")
        train_data, val_data = build_dataset(args, True), build_dataset(args, False, list_path=args.train_list)
        labels = [entry.label for entry in getattr(train_data, "entries", [None] * len(train_data))]
        train_indices, val_indices = fold_indices(labels, args.folds, args.fold)
        return Part(train_data, train_indices), Part(val_data, val_indices)
    train_set, val_set = build_dataset(args, train=True), build_dataset(args, train=False)
    lists = reads_lists(args.data_type)
    check_classes_fit(train_set.class_names, val_set, f"--val_list {args.val_list}" if lists else "the validation set",
                      f"the training list {args.train_list}" if lists else "the training set")
    return train_set, val_set


def check_classes_fit(class_names: list[str], data: Dataset, flag: str, owner: str) -> None:
    """`data`'s classes must be among `class_names` (the training set's, or a checkpoint's):
    a label the model has no output for is refused now, before a run folder exists, not when
    validation meets it after a whole epoch. Names are compared where both sides have them
    (a classes.txt); numbered classes ("0", "1", ...) only by their count."""
    names = getattr(data, "class_names", None)
    if names is None:
        return
    if len(names) > len(class_names):
        outside = next((entry for entry in getattr(data, "entries", []) if isinstance(entry.label, int)
                        and entry.label >= len(class_names)), None)
        example = f" (class id {outside.label} at {outside.where})" if outside else ""
        raise UserError(f"{flag} has {len(names)} classes{example}, but {owner} has {len(class_names)} (ids 0 to "
                        f"{len(class_names) - 1}): the model has no output for the others. Use lists of the same "
                        "classes (a classes.txt beside a list names them, one a line).")
    differ = [i for i, (name, own) in enumerate(zip(names, class_names)) if name != own
              and not (numbered(names) or numbered(class_names))]
    if differ:
        raise UserError(f"{flag} names class {differ[0]} {names[differ[0]]!r}, but {owner} names it "
                        f"{class_names[differ[0]]!r}; give both the same classes.txt.")


def numbered(class_names: list[str]) -> bool:
    """Classes without names (no classes.txt): "0", "1", ..."""
    return list(class_names) == [str(i) for i in range(len(class_names))]


def training_labels(dataset: Dataset) -> torch.Tensor | None:
    """The training set's labels without reading a picture (for --class_weights auto and
    --sampler balanced): class ids (N,) or several labels (N, C); None for masks or a set
    that keeps them elsewhere."""
    while hasattr(dataset, "dataset") and not hasattr(dataset, "entries"):  # a seeded view
        dataset = dataset.dataset
    indices = getattr(dataset, "indices", None)  # a fold or --overfit_batches' part
    base = dataset.dataset if indices is not None else dataset
    if hasattr(base, "entries"):
        labels = [entry.label for entry in base.entries]
    elif hasattr(getattr(base, "data", None), "targets"):  # a torchvision set
        labels = list(base.data.targets)
    else:
        return None
    labels = [labels[i] for i in indices] if indices is not None else labels
    if not labels or isinstance(labels[0], Path):
        return None
    return torch.stack([torch.as_tensor(label) for label in labels])


def select_train_loader(args: Namespace, dataset: Dataset) -> DataLoader:
    """Batches of the training set; order and augmentation depend only on --seed and the
    epoch (see data/seeded_sampling.py), which is what makes resuming exact."""
    seeded = SeededDataset(dataset)
    limit = args.limit_train_batches * args.batch_size if args.limit_train_batches else None
    # Under torchrun each process gets its share of every epoch; --batch_size is per process.
    sampler = SeededSampler(seeded, num_replicas=world_size(), rank=rank(), seed=args.seed,
                            shuffle=not args.overfit_batches, limit=limit, weights=sample_weights(args, dataset))
    # The last, incomplete batch is dropped (other samples each epoch): a batch of one breaks
    # BatchNorm, and equal batches keep the processes under torchrun in step.
    return _loader(seeded, args, sampler=sampler, drop_last=True)


def select_eval_loader(args: Namespace, dataset: Dataset, limit_batches: int = 0) -> DataLoader:
    """Batches of an evaluation set in order, every sample exactly once (under torchrun, split
    across the processes without repeats: see ShardSampler); the first `limit_batches` only."""
    if limit_batches:
        dataset = Part(dataset, range(min(len(dataset), limit_batches * args.batch_size * world_size())))
    sampler = ShardSampler(len(dataset), rank(), world_size()) if world_size() > 1 else None
    return _loader(dataset, args, sampler=sampler)


def sample_weights(args: Namespace, dataset: Dataset) -> torch.Tensor | None:
    """--sampler balanced: every class drawn about equally often (each sample weighs 1 / its
    class's count; several labels: its rarest label's); None for the plain shuffle."""
    if getattr(args, "sampler", "shuffle") != "balanced" or args.overfit_batches:
        return None
    labels = training_labels(dataset)
    if labels is None:
        raise UserError(f"--sampler balanced draws by class, but the training set of --data_type {args.data_type} "
                        "has no class ids or labels to count (masks, or targets); leave --sampler out.")
    if labels.ndim == 2:  # several labels (or targets): by the rarest label a sample has
        if labels.dtype.is_floating_point and not ((labels == 0) | (labels == 1)).all():
            raise UserError("--sampler balanced draws by class, but regression targets have none; leave it out.")
        frequency = labels.float().sum(0).clamp(min=1)
        return (labels.float() / frequency).max(dim=1).values.clamp(min=1 / len(labels)).double()
    counts = torch.bincount(labels.long())
    return (1.0 / counts[labels.long()]).double()


def _loader(dataset: Dataset, args: Namespace, sampler: Sampler | None, drop_last: bool = False) -> DataLoader:
    if drop_last and len(sampler) < args.batch_size:
        raise UserError(f"--batch_size {args.batch_size} is larger than the {len(sampler)} training samples "
                        f"each process gets, so no full batch exists; use a smaller --batch_size.")
    workers = worker_count(args.num_workers, dataset)
    return DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        worker_init_fn=ignore_ctrl_c,
        # Workers' base seed comes from here, not from torch's global generator, which the
        # training step owns (per-sample seeds make the workers' own streams irrelevant).
        generator=torch.Generator().manual_seed(args.seed),
    )


def worker_count(num_workers: int | None, dataset: Dataset) -> int:
    """--num_workers, or by default 2; but none, on a machine without a GPU, for a set read a
    batch at a time from memory: with nothing to decode or augment, a worker would only copy
    each batch once more, and its process would take CPU from the model's threads. (With a
    GPU, workers prepare the next batches while the host drives the training step.)"""
    if num_workers is not None:
        return num_workers
    return 0 if getattr(dataset, "reads_batches", False) and not torch.cuda.is_available() else 2


def ignore_ctrl_c(worker_id: int) -> None:
    """Ctrl-C reaches every process of the terminal's group; it is for the main process,
    which saves and then stops the workers. (SIGTERM is left alone: Python's exit clean-up
    stops worker processes with it.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def describe_data(args: Namespace, train_set: Dataset, val_set: Dataset) -> dict:
    """What a run trained and validated on, to tell later whether a resumed run still sees
    the same data: sample counts, and what the samples were read from (a list or CSV file, a
    folder) with its SHA-256 (and the fold)."""
    def described(data: Dataset) -> dict:
        while hasattr(data, "dataset"):  # a fold's part, a seeded view: the data set they show
            data = data.dataset
        source = getattr(data, "list_path", None)
        return {"list": str(source) if source is not None else None, "samples": 0,
                "sha256": getattr(data, "sha256", None)}
    return {"train": described(train_set) | {"samples": len(train_set)},
            "val": described(val_set) | {"samples": len(val_set)},
            "folds": args.folds, "fold": args.fold if args.folds else None}


def check_same_data(saved: dict, now: dict, checkpoint: Path) -> None:
    """A resumed run must see the data it started with, or it cannot continue exactly."""
    for split in ("train", "val"):
        if saved[split] != now[split] or (saved["folds"], saved["fold"]) != (now["folds"], now["fold"]):
            was, new = saved[split], now[split]
            raise UserError(f"--resume: the {split} data changed since the run started ({new['list']}: "
                            f"{was['samples']} -> {new['samples']} samples, list SHA-256 "
                            f"{str(was['sha256'])[:12]} -> {str(new['sha256'])[:12]}), so it cannot continue "
                            "exactly. Put the list back as it was, or start a new run from the weights: "
                            f"--load_model_path {checkpoint}.")


def eval_set_name(args: Namespace) -> str:
    """A short name for the evaluated data, used to name result folders: the list's stem
    (`val` for data/demo/val.txt) or, for other sets, e.g. `mnist_test`."""
    if reads_lists(args.data_type):
        return Path(args.val_list).stem
    return f"{args.data_type}_test"
