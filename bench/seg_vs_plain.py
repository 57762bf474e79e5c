"""Benchmark: template segmentation against a plain hand-written loop. Prints figures; not a test.

Needs a real segmentation set in the list format; the digits set (bench/digits_data.py, which
needs scikit-learn) is the reference:

    python bench/seg_vs_plain.py speed --data /tmp/digits [--rounds 8] [--config=--no-in_memory ...] [-- <flags>]
    python bench/seg_vs_plain.py parts --data /tmp/digits [--rounds 3] [-- <train.py flags>]
    python bench/seg_vs_plain.py plain --data /tmp/digits --epochs 25 [--seed 0]

The plain loop is what a new user writes by hand: the pictures and masks decoded once into
uint8 tensors in memory, shuffled with torch.randperm, full batches only (as the template
drops the last, incomplete one), scaled to [-1, 1] per batch, the same U-Net class
(model/unet) with the same weights, Adam, cross entropy; after each training epoch, the
validation set's mean IoU from one confusion matrix.

- `speed`: in one process, epochs of the template (Trainer.run_epoch: training, validation,
  curves, pictures, checkpoints, as `train.py` runs them) alternate with epochs of the plain
  loop (training + validation); prints the median epoch times, the median of the paired
  ratios, and the CPU seconds of each (this process and its loader workers): on a machine
  whose cores are all busy, the wall-time ratio approaches the CPU ratio.
- `parts`: where a template epoch's time goes, each part timed as a real epoch runs (its
  functions wrapped in timers here, not in the template): the wait for batches, forward,
  backward, optimizer step, per-step bookkeeping (label check, the Meter's loss mean and
  confusion matrix, the bar's loss, the per-step curves), TensorBoard pictures, validation,
  curves and the checkpoint save; then, measured alone, what the loader does each epoch:
  decoding pictures and masks (from disk), reading the batches.
- `plain`: the plain loop alone, as a program: the mean IoU of every epoch (the curve to
  compare `train.py`'s metrics.csv with) and its time.

Flags after `--` go to the template's Trainer (besides --batch_size 32 --optimizer adam, the
issue's setting, and --loss cross_entropy, the plain loop's). Run it on a quiet machine:
other work on the cores skews both sides. On a busy one, `OMP_NUM_THREADS=1` makes the
figures repeatable (two intra-op threads wait for each other whenever the scheduler takes
one off its core).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from unittest.mock import patch

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere

import train  # noqa: E402
from data.list_dataset import ListDataset, read_class_names, read_list_file  # noqa: E402
from model.unet import UNet  # noqa: E402
from options import parse_train_args  # noqa: E402
from tasks import Meter  # noqa: E402
from train import Trainer  # noqa: E402
from utils.host_memory import keep_freed_memory  # noqa: E402
from utils.logger import Logger, ProgressBar  # noqa: E402
from utils.run_dir import RunDir  # noqa: E402
from utils.torch_utils import unwrap_model  # noqa: E402

# The issue's setting, and the plain loop's loss (the template's default for segmentation,
# ce_dice, adds a Dice term: time it with --config="--loss ce_dice").
ISSUE_FLAGS = ["--batch_size", "32", "--optimizer", "adam", "--loss", "cross_entropy"]


# ---------------------------------------------------------------------------- the plain loop
def load_in_memory(list_path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every picture (N, 3, H, W) and mask (N, H, W) of a list, decoded once, as uint8."""
    entries = read_list_file(list_path)
    images = [torch.from_numpy(np.array(Image.open(e.image).convert("RGB"))).permute(2, 0, 1) for e in entries]
    masks = [torch.from_numpy(np.array(Image.open(e.label))) for e in entries]
    return torch.stack(images), torch.stack(masks)


def to_input(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255 - 0.5) / 0.5  # the template's normalisation: [0, 1] -> [-1, 1]


def plain_train_epoch(model, images, masks, optimizer, batch_size: int, generator: torch.Generator) -> float:
    """One epoch of full, shuffled batches; returns the last batch's loss."""
    model.train()
    order = torch.randperm(len(images), generator=generator)
    for start in range(0, len(order) - batch_size + 1, batch_size):
        index = order[start:start + batch_size]
        optimizer.zero_grad()
        loss = F.cross_entropy(model(to_input(images[index])), masks[index].long())
        loss.backward()
        optimizer.step()
    return loss.item()


@torch.no_grad()
def plain_miou(model, images, masks, num_classes: int, batch_size: int) -> float:
    """Mean IoU over the set from one confusion matrix (classes absent from labels and
    predictions left out, as the template does)."""
    model.eval()
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.long)
    for start in range(0, len(images), batch_size):
        pred = model(to_input(images[start:start + batch_size])).argmax(1)
        label = masks[start:start + batch_size].long()
        confusion += torch.bincount((label * num_classes + pred).flatten(), minlength=num_classes**2)
    confusion = confusion.view(num_classes, num_classes).double()
    true_positive = confusion.diagonal()
    return (true_positive / (confusion.sum(0) + confusion.sum(1) - true_positive)).nanmean().item()


class PlainLoop:
    """The plain loop's state: data in memory, model, optimizer, shuffling generator."""

    def __init__(self, data: Path, batch_size: int, lr: float, seed: int, width: int = 16,
                 up: str | None = None, model: torch.nn.Module | None = None) -> None:
        torch.manual_seed(seed)
        self.train_images, self.train_masks = load_in_memory(str(data / "seg_train.txt"))
        self.val_images, self.val_masks = load_in_memory(str(data / "seg_val.txt"))
        self.num_classes = len(read_class_names(data / "seg_train.txt", dense=True))
        kwargs = {"up": up} if up else {}
        self.model = model or UNet(self.num_classes, in_channels=3, width=width, **kwargs)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def epoch(self) -> float:
        """Train one epoch, then validate: the validation mean IoU."""
        plain_train_epoch(self.model, self.train_images, self.train_masks, self.optimizer, self.batch_size,
                          self.generator)
        return plain_miou(self.model, self.val_images, self.val_masks, self.num_classes, self.batch_size)


def plain(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    loop = PlainLoop(args.data, args.batch_size, args.lr, args.seed, args.width, args.up)
    print(f"plain loop: batch {args.batch_size}, Adam lr {args.lr}, seed {args.seed}; data loaded in "
          f"{time.perf_counter() - start:.2f} s", flush=True)
    print("epoch,val_miou,seconds")
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        miou = loop.epoch()
        print(f"{epoch},{miou:.4f},{time.perf_counter() - start:.3f}", flush=True)


# ---------------------------------------------------------------------------- the template
def template_trainer(data: Path, flags: list[str], folder: Path) -> Trainer:
    """A Trainer as train.py builds it, with its run folder opened as `Trainer.train` would
    (run records, curves, pictures and checkpoints are written as in a real run)."""
    argv = ["--data_type", "seg_list", "--model_type", "unet", "--train_list", str(data / "seg_train.txt"),
            "--val_list", str(data / "seg_val.txt"), "--checkpoints_dir", str(folder), "--epochs", "1000",
            "--seed", "0", *ISSUE_FLAGS, *flags]
    args, _ = parse_train_args(argv)
    trainer = Trainer(args)
    run = RunDir.new(folder, "bench")
    run.open(args, "train.py", argv)
    trainer.run, trainer.logger = run, Logger(run.path)
    trainer.checkpoints.open(run.path)
    return trainer


def plain_beside(trainer: Trainer, data: Path) -> PlainLoop:
    """The plain loop on a copy of the template's model (same class, arguments and weights)."""
    model = type(unwrap_model(trainer.model))(**trainer.model_kwargs)
    model.load_state_dict(unwrap_model(trainer.model).state_dict())
    return PlainLoop(data, trainer.args.batch_size, trainer.args.lr, trainer.args.seed, model=model)


def cpu_seconds() -> float:
    """CPU seconds used so far by this process (every thread) and its live child processes (the
    loaders' workers): the work an epoch costs, which other programs on the cores do not
    change as they change its wall time (with one intra-op thread, which never spin-waits)."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == os.getpid():  # fields after the name: state, ppid, ..., utime (12), stime (13)
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def speed(args: argparse.Namespace, flags: list[str]) -> None:
    """Epochs of the plain loop and of each template configuration, interleaved, the order
    rotating every round; round 0 warms up and is dropped."""
    with tempfile.TemporaryDirectory() as folder:
        configs = args.config or [""]
        trainers = {config: template_trainer(args.data, flags + config.split(), Path(folder)) for config in configs}
        loop = plain_beside(next(iter(trainers.values())), args.data)
        sides: dict[str, Callable[[int], object]] = {"plain": lambda epoch: loop.epoch()}
        for config, trainer in trainers.items():
            sides[f"template {config}".strip()] = trainer.run_epoch
        times: dict[str, list[float]] = {name: [] for name in sides}
        cpu: dict[str, list[float]] = {name: [] for name in sides}
        names = list(sides)
        for round_index in range(args.rounds + 1):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                start, start_cpu = time.perf_counter(), cpu_seconds()
                sides[name](round_index + 1)
                if round_index:
                    times[name].append(time.perf_counter() - start)
                    cpu[name].append(cpu_seconds() - start_cpu)
        for trainer in trainers.values():
            trainer.checkpoints.wait()
            trainer.run.close()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; template flags: "
          f"{' '.join(ISSUE_FLAGS + flags)}; median of {args.rounds} epochs (training + validation) a side; "
          "ratio: the median of each round's template / plain epoch (paired, so drift cancels)")
    for name, seconds in times.items():
        ratios = [mine / plain for mine, plain in zip(seconds, times["plain"])]
        cpu_ratio = statistics.median(cpu[name]) / statistics.median(cpu["plain"])
        print(f"{name:40s} {statistics.median(seconds):7.3f} s (min {min(seconds):.3f}, max {max(seconds):.3f})   "
              f"ratio {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})   "
              f"CPU {statistics.median(cpu[name]):7.3f} s, ratio {cpu_ratio:.3f}")


class PartTimers:
    """Wall seconds per named part, exclusive: time spent in a timed part inside another
    (a picture drawn during validation) counts for the inner one only."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.stack: list[list] = []  # [name, start, seconds of timed parts inside]
        self.active = True

    def wrap(self, function: Callable, name: str) -> Callable:
        def timed_call(*args, **kwargs):
            if not self.active:
                return function(*args, **kwargs)
            self.stack.append([name, time.perf_counter(), 0.0])
            try:
                return function(*args, **kwargs)
            finally:
                part, start, inner = self.stack.pop()
                elapsed = time.perf_counter() - start
                self.seconds[part] += elapsed - inner
                if self.stack:
                    self.stack[-1][2] += elapsed
        return timed_call


PART_ORDER = ["data wait", "forward + loss", "backward", "optimizer step", "per-step bookkeeping",
              "pictures (TensorBoard)", "validation", "curves + metrics.csv", "checkpoint save", "loop, other"]


def epoch_parts(trainer: Trainer, epoch: int) -> dict[str, float]:
    """One template epoch (Trainer.run_epoch) with each part's wall time taken as it runs."""
    timers, bars = PartTimers(), []

    class RecordedBar(ProgressBar):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            bars.append(self)

        show = timers.wrap(ProgressBar.show, "per-step bookkeeping")  # the running loss on the bar

    def training_only(function: Callable, name: str) -> Callable:
        wrapped = timers.wrap(function, name)
        return lambda *a, **k: wrapped(*a, **k) if not in_validation else function(*a, **k)

    in_validation = False
    task = trainer.task
    real_val = trainer.validate

    def validation() -> dict:
        nonlocal in_validation
        in_validation = True
        try:
            return timers.wrap(real_val, "validation")()
        finally:
            in_validation = False

    patches = [
        patch.object(train, "ProgressBar", RecordedBar),  # training's bar, and validation's (train.evaluate)
        patch.object(trainer, "train_step", timers.wrap(trainer.train_step, "forward + loss")),
        patch.object(torch.Tensor, "backward", timers.wrap(torch.Tensor.backward, "backward")),
        patch.object(trainer, "optimizer_step", timers.wrap(trainer.optimizer_step, "optimizer step")),
        patch.object(task, "check_labels", training_only(task.check_labels, "per-step bookkeeping")),
        patch.object(train, "measure", training_only(train.measure, "per-step bookkeeping")),  # Meter: loss, counts
        patch.object(Meter, "local_mean", training_only(Meter.local_mean, "per-step bookkeeping")),  # the bar's loss
        patch.object(train, "check_finite", training_only(train.check_finite, "per-step bookkeeping")),
        patch.object(trainer.logger, "record_step", timers.wrap(trainer.logger.record_step, "per-step bookkeeping")),
        patch.object(trainer, "save_mid_epoch_if_due", timers.wrap(trainer.save_mid_epoch_if_due,
                                                                   "per-step bookkeeping")),
        patch.object(task, "pictures", timers.wrap(task.pictures, "pictures (TensorBoard)")),
        patch.object(trainer.logger, "save_imgs", timers.wrap(trainer.logger.save_imgs, "pictures (TensorBoard)")),
        patch.object(trainer, "validate", validation),
        patch.object(trainer.logger, "save_curves", timers.wrap(trainer.logger.save_curves, "curves + metrics.csv")),
        patch.object(trainer, "save_checkpoints", timers.wrap(trainer.save_checkpoints, "checkpoint save")),
    ]
    for item in patches:
        item.start()
    try:
        start = time.perf_counter()
        trainer.run_epoch(epoch)
        total = time.perf_counter() - start
    finally:
        for item in reversed(patches):
            item.stop()
    parts = dict(timers.seconds)
    parts["data wait"] = bars[0].wait_time  # the training bar; validation's wait is inside "validation"
    parts["loop, other"] = total - sum(parts.values())
    parts["epoch"] = total
    return parts


def isolated_data_costs(trainer: Trainer) -> dict[str, float]:
    """Seconds, in this process alone, to decode every training and validation sample (image
    and mask: what reading from disk costs every epoch) and to read every batch as the loaders
    do (in memory: whole batches where the set reads batches, else the paired transforms
    sample by sample): work the loader does each epoch, in its workers if it has any."""
    seconds = {"decode image + mask": 0.0, "reading the batches": 0.0}
    for loader in (trainer.train_loader, trainer.val_loader):
        dataset = loader.dataset
        while not isinstance(dataset, ListDataset):
            dataset = dataset.dataset
        start = time.perf_counter()
        for i in range(len(dataset)):
            ListDataset.load_raw(dataset, i)
        seconds["decode image + mask"] += time.perf_counter() - start
        in_process = DataLoader(loader.dataset, batch_sampler=loader.batch_sampler, collate_fn=loader.collate_fn)
        start = time.perf_counter()
        for _ in in_process:
            pass
        seconds["reading the batches"] += time.perf_counter() - start
    return seconds


def plain_parts(loop: PlainLoop) -> dict[str, float]:
    start = time.perf_counter()
    plain_train_epoch(loop.model, loop.train_images, loop.train_masks, loop.optimizer, loop.batch_size, loop.generator)
    middle = time.perf_counter()
    plain_miou(loop.model, loop.val_images, loop.val_masks, loop.num_classes, loop.batch_size)
    end = time.perf_counter()
    return {"plain training": middle - start, "plain validation": end - middle, "plain epoch": end - start}


def parts(args: argparse.Namespace, flags: list[str]) -> None:
    """The median seconds of each part over --rounds template epochs (after one warm-up),
    interleaved with plain epochs; then the data costs measured alone."""
    with tempfile.TemporaryDirectory() as folder:
        trainer = template_trainer(args.data, flags, Path(folder))
        loop = plain_beside(trainer, args.data)
        rows: dict[str, list[float]] = defaultdict(list)
        for epoch in range(1, args.rounds + 2):
            measured = epoch_parts(trainer, epoch) | plain_parts(loop)
            if epoch > 1:
                for name, value in measured.items():
                    rows[name].append(value)
        trainer.checkpoints.wait()
        trainer.run.close()
        alone = {name: [] for name in ("decode image + mask", "reading the batches")}
        for _ in range(3):
            for name, value in isolated_data_costs(trainer).items():
                alone[name].append(value)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; template flags: "
          f"{' '.join(ISSUE_FLAGS + flags)}; {len(trainer.train_loader)} training batches; median seconds "
          f"of {args.rounds} epochs")
    print("| part of a template epoch | seconds | share |\n| --- | --- | --- |")
    epoch = statistics.median(rows["epoch"])
    for name in PART_ORDER:
        value = statistics.median(rows[name]) if rows[name] else 0.0
        print(f"| {name} | {value:.3f} | {value / epoch:.0%} |")
    print(f"| **template epoch** | **{epoch:.3f}** | |")
    for name in ("plain training", "plain validation", "plain epoch"):
        print(f"| {name} | {statistics.median(rows[name]):.3f} | |")
    print(f"| ratio template / plain | {epoch / statistics.median(rows['plain epoch']):.3f} | |")
    print("Measured alone in this process (what the loader does each epoch, in its workers if it has any):")
    for name, values in alone.items():
        print(f"| {name}, all {len(trainer.train_loader.dataset) + len(trainer.val_loader.dataset)} "
              f"samples | {statistics.median(values):.3f} | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["speed", "parts", "plain"], help="what to measure (see above)")
    parser.add_argument("--data", type=Path, default=Path("/tmp/digits"),
                        help="folder with seg_train.txt, seg_val.txt, seg_classes.txt (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=25, help="plain: epochs to train (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=32, help="plain: batch size (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-3, help="plain: Adam's learning rate (default: %(default)s)")
    parser.add_argument("--width", type=int, default=16, help="plain: the U-Net's width (default: %(default)s)")
    parser.add_argument("--up", default=None, help="plain: the U-Net's upsampling (default: the model's)")
    parser.add_argument("--seed", type=int, default=0, help="plain: seed (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=8,
                        help="speed, parts: measured epochs a side (default: %(default)s)")
    parser.add_argument("--default_malloc", action="store_true",
                        help="leave glibc's malloc as it is (train.py keeps freed memory: utils/host_memory.py); "
                             "both sides share this process, so both get the same either way")
    parser.add_argument("--config", action="append",
                        help="speed: a template configuration (extra train.py flags, one string) to time "
                             "beside the plain loop; repeat for several (default: the flags after --)")
    argv = sys.argv[1:]
    flags = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    kept = not args.default_malloc and keep_freed_memory()  # as train.py does
    print(f"freed memory kept for reuse (utils/host_memory.py): {'yes' if kept else 'no'}", flush=True)
    if args.mode == "plain":
        plain(args)
    elif args.mode == "speed":
        speed(args, flags)
    else:
        parts(args, flags)


if __name__ == "__main__":
    main()
