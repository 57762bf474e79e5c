"""Classification metrics on one batch, and the confusion matrix for whole-set values.

Batch functions return 0-d tensors (no `.item()`, so no GPU sync per step); the training
loop weights them by batch size in `utils.logger.Recorder`, which makes the epoch value
exact over the data set. Per-class accuracy needs counts, so it comes from a confusion
matrix summed over all batches.
"""

import torch
from torch import Tensor


def accuracy(pred: Tensor, label: Tensor) -> Tensor:
    """Fraction of samples whose highest score is the true class. pred: (N, C), label: (N,)."""
    return (pred.argmax(dim=1) == label).float().mean()


def topk_accuracy(pred: Tensor, label: Tensor, k: int) -> Tensor:
    """Fraction of samples whose true class is among the `k` highest scores."""
    k = min(k, pred.shape[1])
    top = pred.topk(k, dim=1).indices
    return (top == label.unsqueeze(1)).any(dim=1).float().mean()


def confusion_matrix(pred_class: Tensor, label: Tensor, num_classes: int) -> Tensor:
    """Counts (num_classes x num_classes): row = true class, column = predicted class."""
    index = label.flatten().long() * num_classes + pred_class.flatten().long()
    return torch.bincount(index, minlength=num_classes**2).view(num_classes, num_classes)


def per_class_accuracy(confusion: Tensor) -> Tensor:
    """Accuracy within each true class (recall); NaN for a class with no samples."""
    confusion = confusion.double()
    return confusion.diagonal() / confusion.sum(dim=1)
