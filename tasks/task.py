"""What a task must provide, written down: the `Task` protocol; and the `Meter` it measures
into, whose sums make metrics exact over a whole data set, across a resumed epoch and across
torchrun's processes.

The loops in train.py, eval.py and predict.py never look inside labels or outputs: they
call these members and nothing else, so a new task (multi-label, regression, detection)
is one class in its own file plus one line in `TASKS` (tasks/__init__.py). A task is built
as `TaskClass(class_names, ignore_index)`; classification.py is the smallest to copy.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from data.augment import Augment
from utils.distributed import rank, sum_across_ranks


class Meter:
    """An epoch's running sums, from which its exact values come: batch means weighted by the
    batch's size (the loss; `add_mean`), and counts (a confusion matrix; `counter`). Added to
    in place on the device, so a step costs no GPU sync; read once, at the end. Under
    torchrun every reading is summed over the processes, so it covers the whole data set.
    `state_dict()` goes into a mid-epoch checkpoint, and `Meter(state)` continues from it."""

    def __init__(self, state: dict | None = None) -> None:
        if rank() != 0:  # a resumed epoch's sums cover every process: rank 0 alone continues from them
            state = None
        self.sums: dict[str, Tensor] = {name: value.clone() for name, value in (state or {}).get("sums", {}).items()}
        self.weights: dict[str, int] = dict((state or {}).get("weights", {}))  # samples behind each mean

    def add_mean(self, name: str, value: Tensor | float, n: int) -> None:
        """A mean over a batch of `n` samples; value x n is exact in float64."""
        self._add(name, torch.as_tensor(value).detach(), n)
        self.weights[name] = self.weights.get(name, 0) + n

    def counter(self, name: str, shape: tuple[int, ...], device: torch.device,
                dtype: torch.dtype = torch.long) -> Tensor:
        """The running counts (or float64 sums) called `name`, zeros at first, to add a batch to
        in place: `add_confusion(meter.counter("confusion", (C, C), pred.device), ...)`."""
        total = self.sums.get(name)
        if total is None:
            total = self.sums[name] = torch.zeros(shape, dtype=dtype, device=device)
        elif total.device != device:  # counts restored on the CPU, a batch on the GPU: moved once
            total = self.sums[name] = total.to(device)
        return total

    def _add(self, name: str, value: Tensor, weight: int) -> None:
        total = self.sums.get(name)
        if total is None:
            self.sums[name] = value.double() * weight if value.is_floating_point() else value * weight
        elif total.device != value.device:  # sums restored on the CPU, values on the GPU: moved once
            self.sums[name] = total.to(value.device).add_(value, alpha=weight)
        else:
            total.add_(value, alpha=weight)

    def local_mean(self, name: str) -> float:
        """This process's running mean of `name` (the progress bar: no exchange between
        processes; one read from the GPU)."""
        return (self.sums[name] / self.weights[name]).item()

    def state_dict(self) -> dict:
        """The sums so far, of every process, on the CPU: a mid-epoch checkpoint's, from which
        rank 0 alone continues."""
        sums = {name: sum_across_ranks(value).to("cpu", copy=True) for name, value in self.sums.items()}
        weights = {name: int(total) for name, total in zip(self.weights, sum_across_ranks(
            torch.tensor(list(self.weights.values()), dtype=torch.float64)).tolist())} if self.weights else {}
        return {"sums": sums, "weights": weights}

    def results(self) -> tuple[dict[str, float], dict[str, Tensor]]:
        """The epoch's means, and its counts (for the task's `results`), over every process."""
        state = self.state_dict()
        means = {name: state["sums"][name].item() / weight for name, weight in state["weights"].items()}
        counts = {name: value for name, value in state["sums"].items() if name not in state["weights"]}
        return means, counts


class Task(Protocol):
    """The task-specific pieces of training, evaluation and prediction."""

    name: str  # its key in TASKS; saved in every checkpoint, so eval.py and predict.py rebuild it
    class_names: list[str]  # one name per model output (a class, a label, a target)
    main_metric: str  # the default --monitor is val/<main_metric>
    lower_is_better: tuple[str, ...]  # metrics that improve downwards (the loss always does), for --monitor
    default_loss: str  # the --loss when none is given (a key of LOSSES)
    loss_supplied: dict[str, object]  # what the task hands its loss besides the loss flags (e.g. ignore_index)
    evaluation_header: list[str]  # the columns of eval.py's predictions.csv

    def check_labels(self, label: Tensor, paths: list[str]) -> None:
        """Raise UserError naming the first sample whose label the model cannot learn."""

    def check_output(self, pred: Tensor, model_type: str) -> None:
        """Raise UserError when the model's outputs have the wrong shape for this task."""

    def batch_augment(self, augment: Augment, loss: str) -> Callable | None:
        """Refuse the augmentation flags the labels cannot follow (UserError); return the
        batch-wide mix (--mixup / --cutmix: images and labels -> images and soft targets) or None.
        `loss` is the run's --loss (a key of LOSSES)."""

    def check_tta(self, flips: tuple[tuple[int, ...], ...], trained: Augment | None) -> None:
        """--tta: raise UserError for a flip (image dimensions: -1 left-right, -2 up-down) that
        the labels cannot follow, or that the run did not train with (`trained`: its
        augmentation; None when the checkpoint does not say)."""

    def flip_back(self, pred: Tensor, dims: tuple[int, ...]) -> Tensor:
        """--tta: the model's scores for a picture flipped along `dims`, as scores for the
        picture itself (segmentation flips its score maps back; a class stays what it is)."""

    def average_views(self, views: list[Tensor]) -> Tensor:
        """--tta: one prediction from the scores of the picture and its flipped views (already
        flipped back), in the form the loss, metrics and rows take (tasks/tta.py)."""

    def measure(self, meter: Meter, pred: Tensor, label: Tensor) -> None:
        """Add one batch's counts (or means) to the epoch's meter, in place and on the device:
        no `.item()`, so no GPU sync. Whatever `results` needs must be a sum: then a resumed
        epoch and the processes under torchrun add up exactly."""

    def results(self, counts: dict[str, Tensor], per_class: bool) -> dict[str, float]:
        """The epoch's metrics from the meter's counts (summed over every batch and process);
        with `per_class`, also one value per class (eval.py's result.txt)."""

    def pictures(self, image: Tensor, label: Tensor, pred: Tensor) -> Tensor:
        """One grid (3, H, W) of a batch's first samples for TensorBoard; only those leave the GPU."""

    def save_pictures(self, image: Tensor, label: Tensor, pred: Tensor, folder: Path, indices: list[int]) -> None:
        """eval.py --save_viz: PNG pictures of a batch, named by the samples' indices."""

    def evaluation_rows(self, paths: list[str], label: Tensor, pred: Tensor, folder: Path,
                        indices: list[int]) -> list[list]:
        """eval.py's predictions.csv rows of a batch (`evaluation_header`), writing any
        per-sample files they name (segmentation: the predicted masks) into `folder`."""

    def prediction_header(self, top_k: int) -> list[str]:
        """The columns of predict.py's predictions.csv (`--top_k` best classes, where that applies)."""

    def prediction_rows(self, paths: list[str], sizes: Tensor, pred: Tensor, folder: Path, indices: list[int],
                        top_k: int) -> list[list]:
        """predict.py's rows for a batch of unlabelled pictures (`sizes`: each picture's own
        (height, width)), writing any files they name into `folder` first."""


class TaskPictures(Protocol):
    """Optional members: a task that has them gets pictures of its counts and mistakes; one
    without them trains, evaluates and predicts the same, without those files. The loops ask
    for each with `getattr(task, name, None)`."""

    gallery_size: int  # how many of the worst samples eval.py's mistakes.png shows

    def count_pictures(self, counts: dict[str, Tensor]) -> dict[str, Tensor]:
        """Pictures (3, H, W) of the epoch's counts by name (`confusion`): TensorBoard's
        `val/<name>` each epoch."""

    def save_count_files(self, counts: dict[str, Tensor], folder: Path) -> None:
        """eval.py: files of the set's counts in its result folder (confusion.csv,
        confusion.png, per_class.png)."""

    def mistake_scores(self, label: Tensor, pred: Tensor) -> Tensor:
        """How bad each sample's mistake is, (N,): higher is worse, 0 for a right one; eval.py
        keeps the `gallery_size` worst of the set."""

    def mistakes_picture(self, image: Tensor, label: Tensor, pred: Tensor, indices: list[int]) -> Tensor:
        """eval.py's mistakes.png (3, H, W): the samples given, the worst first, with what was
        true and what was predicted written on each."""
