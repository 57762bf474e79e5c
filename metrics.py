"""Metrics for classification and segmentation, exact over a whole data set.

Whole-set values come from one confusion matrix summed over every batch (`ConfusionMeter`):
the epoch accuracy is (right samples / samples) and the mean IoU is computed once from the
total counts, never a mean of per-batch values. Batch functions return 0-d tensors (no
`.item()`, so no GPU sync per step).
"""

import torch
from torch import Tensor

from utils.distributed import sum_across_ranks


def topk_accuracy(pred: Tensor, label: Tensor, k: int) -> Tensor:
    """Fraction of samples whose true class is among the `k` highest scores."""
    k = min(k, pred.shape[1])
    top = pred.topk(k, dim=1).indices
    return (top == label.unsqueeze(1)).any(dim=1).float().mean()


def confusion_bins(pred_class: Tensor, label: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """Each sample's (or pixel's) bin in a flattened confusion matrix: label * num_classes +
    predicted class, in one kernel; labels equal to `ignore_index` go to one extra, last bin."""
    label = label.flatten().long()
    index = torch.add(pred_class.flatten().long(), label, alpha=num_classes)
    if ignore_index is not None:
        index = torch.where(label == ignore_index, num_classes**2, index)
    return index


def predicted_class(scores: Tensor) -> Tensor:
    """The class with the highest score, along dimension 1: (N, C) -> (N,), (N, C, H, W) -> (N, H, W).

    `max(dim=1).indices`, not `argmax(dim=1)`: the same indices (the first maximum on ties),
    but on the CPU, across the channels of (N, C, H, W) scores, argmax takes 10 to 30 times as
    long (20 ms for 32 x 11 x 32 x 32 scores), which the confusion matrix would pay every step."""
    return scores.max(dim=1).indices


def confusion_matrix(pred_class: Tensor, label: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """Counts (num_classes x num_classes): row = true class, column = predicted class.

    Works for class ids of any shape (samples or pixels); labels equal to `ignore_index`
    are left out. Written with index_add_ and no boolean indexing: on a GPU, bincount and
    masks wait for the device, this does not."""
    index = confusion_bins(pred_class, label, num_classes, ignore_index)
    counts = torch.zeros(num_classes**2 + 1, dtype=torch.long, device=index.device)
    counts.index_add_(0, index, torch.ones_like(index))
    return counts[:-1].view(num_classes, num_classes)


def per_class_accuracy(confusion: Tensor) -> Tensor:
    """Accuracy within each true class (recall); NaN for a class with no samples."""
    confusion = confusion.double()
    return confusion.diagonal() / confusion.sum(dim=1)


def per_class_iou(confusion: Tensor) -> Tensor:
    """Intersection over union per class: TP / (TP + FP + FN); NaN for a class that is
    neither in the labels nor in the predictions."""
    confusion = confusion.double()
    true_positive = confusion.diagonal()
    return true_positive / (confusion.sum(dim=0) + confusion.sum(dim=1) - true_positive)


def overall_accuracy(confusion: Tensor) -> float:
    """Right / all: sample accuracy for classification, pixel accuracy for segmentation."""
    total = confusion.sum().item()
    return confusion.diagonal().sum().item() / total if total else float("nan")


def mean_iou(confusion: Tensor) -> float:
    """The mean of the per-class IoUs, over the classes that occur (labels or predictions)."""
    return per_class_iou(confusion).nanmean().item()


class ConfusionMeter:
    """A confusion matrix summed over batches, kept on the device (no sync per step)."""

    def __init__(self, num_classes: int, ignore_index: int | None = None, state: Tensor | None = None) -> None:
        """`state`: the counts of a mid-epoch checkpoint, to continue an epoch exactly."""
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.state = state
        # The counts flattened, plus a last bin for ignored labels, added to in place: a step
        # costs three small kernels and no new matrix (on a GPU the host's time per step counts).
        self.bins: Tensor | None = None

    def update(self, pred_class: Tensor, label: Tensor) -> None:
        index = confusion_bins(pred_class, label, self.num_classes, self.ignore_index)
        if self.bins is None:  # the first batch: made on its device
            self.bins = torch.zeros(self.num_classes**2 + 1, dtype=torch.long, device=index.device)
            if self.state is not None:  # a resumed epoch's counts so far, copied over once
                self.bins[:-1] += self.state.flatten().to(index.device)
        self.bins.index_add_(0, index, torch.ones_like(index))

    def counts(self) -> Tensor:
        """The summed counts on the CPU (zeros before the first batch); under torchrun,
        summed over every process, so they cover the whole data set. A copy: later batches
        are added in place."""
        if self.bins is not None:
            confusion = self.bins[:-1].view(self.num_classes, self.num_classes)
        else:
            confusion = self.state if self.state is not None else torch.zeros(
                self.num_classes, self.num_classes, dtype=torch.long)
        return sum_across_ranks(confusion).to("cpu", copy=True)
