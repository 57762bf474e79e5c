"""Host time of each piece of the template's per-step bookkeeping, measured alone.

Why: on a GPU the host queues kernels ahead of the device. When a step's kernels are small
(resnet18 on 32x32 pictures), the host is the bottleneck, and every microsecond of Python and
of kernel launches that the template adds to a step shows in the epoch time. Each piece runs
alone, many times, on the real shapes of a batch; the figures are microseconds per training
step, printed next to the plain loop's whole step. Used by bench/trainer_vs_plain.py (on
CUDA); nothing here waits for the GPU inside a timed loop.
"""

import time
from collections.abc import Callable

import torch
from torch.utils.data import default_collate

from tasks import Meter
from train import Trainer
from utils.logger import ProgressBar

REPEATS = 300


def wait_for_device() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def host_microseconds(function: Callable[[], object], repeats: int = REPEATS) -> float:
    """Host time of one call, averaged over `repeats` calls queued back to back."""
    function()  # warm-up
    wait_for_device()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    elapsed = time.perf_counter() - start
    wait_for_device()
    return elapsed / repeats * 1e6


def bookkeeping(trainer: Trainer) -> dict[str, Callable[[], object]]:
    """What train_per_epoch does for each batch besides the forward, backward and optimizer step:
    the label check, and train.measure's two parts (the loss's mean into the Meter; the task's
    counts: argmax and confusion matrix, top-5 accuracy with more than 5 classes)."""
    dataset = trainer.val_loader.dataset
    batch = default_collate([dataset[i] for i in range(min(trainer.args.batch_size, len(dataset)))])
    with torch.no_grad():
        out = trainer.train_step(batch)
    meter, samples, pred = Meter(), len(out["label"]), out["pred"].detach()
    return {
        "label check (on the CPU batch)": lambda: trainer.task.check_labels(batch["label"], batch["path"]),
        "loss mean (Meter.add_mean)": lambda: meter.add_mean("loss", out["loss"], samples),
        "task counts (Task.measure: argmax, confusion matrix)": lambda: trainer.task.measure(meter, pred,
                                                                                           out["label"]),
    }


def progress_bar_microseconds(repeats: int = 3 * REPEATS) -> float:
    """Per batch: the ProgressBar's timing and tqdm update."""
    items = list(range(repeats))
    start = time.perf_counter()
    for _ in ProgressBar(items, "progress bar alone"):
        pass
    return (time.perf_counter() - start) / repeats * 1e6


def print_step_overhead(trainer: Trainer, plain_step_us: float) -> None:
    """The pieces' host time per step, and their sum as a share of the plain loop's step."""
    pieces = {name: host_microseconds(function) for name, function in bookkeeping(trainer).items()}
    pieces["progress bar"] = progress_bar_microseconds()
    print(f"host time per training step, each piece of the template's bookkeeping alone (plain loop's whole "
          f"step: {plain_step_us:.0f} us):")
    for name, microseconds in pieces.items():
        print(f"  {name:52s} {microseconds:7.1f} us")
    total = sum(pieces.values())
    print(f"  {'together':52s} {total:7.1f} us = {total / plain_step_us:.1%} of the plain step")
