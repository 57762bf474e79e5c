"""The losses, by name (`--loss`): each entry builds an nn.Module called as loss(pred, target).

A loss's typed keyword parameters are its flags, as a model's are: `label_smoothing: float =
0.0` is `--label_smoothing`, listed by `python train.py -h`, saved with the run and taken up
by eval.py and --resume (the docstring's `Args:` lines are the flags' help). The task hands
over `ignore_index` itself (segmentation: --ignore_index) to a loss that takes it. To add a
loss: a class here and one line in `LOSSES`.

`pred` holds scores with the classes on dimension 1: (N, C) for classification, (N, C, H, W)
for segmentation; `target` holds class ids, (N,) or (N, H, W), or floats (N, C): several
labels' 0 / 1 (multilabel), or regression targets. Targets equal to `ignore_index` count for
nothing. A loss with `takes_soft_targets = True` also takes class probabilities (N, C), as
`--mixup` / `--cutmix` make them. `--class_weights auto` is turned into numbers from the
training labels by train.py (`balanced_weights`) and saved so, so eval.py weighs alike.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NO_IGNORE = -100  # PyTorch's default: not a class id, so nothing is ignored


def one_hot_valid(pred: Tensor, target: Tensor, ignore_index: int) -> tuple[Tensor, Tensor]:
    """One-hot targets shaped like `pred` (classes on dim 1) and the mask of counted targets."""
    valid = target != ignore_index
    one_hot = F.one_hot(target.where(valid, 0), num_classes=pred.shape[1]).movedim(-1, 1).to(pred.dtype)
    return one_hot, valid.unsqueeze(1)


def class_weight_tensor(class_weights: str) -> Tensor | None:
    """--class_weights: `none`, or one positive number per class (label), comma-separated
    (`auto` has become numbers by the time a loss is built for training)."""
    if class_weights in ("none", ""):
        return None
    try:
        weights = torch.tensor([float(w) for w in class_weights.split(",")])
    except ValueError:
        raise ValueError(f"class_weights must be none, auto, or numbers separated by commas, not {class_weights!r}") \
            from None
    if not (weights >= 0).all() or not torch.isfinite(weights).all():
        raise ValueError(f"class_weights must be 0 or more, not {class_weights!r}")
    return weights


def balanced_weights(labels: Tensor, num_classes: int) -> list[float]:
    """`--class_weights auto` from the training labels: class ids (N,) get N / (C x count of
    the class), 1 for a class without samples (scikit-learn's "balanced"); several labels
    (N, C) get, per label, negatives / positives (BCE's pos_weight)."""
    if labels.ndim == 2:
        positives = labels.float().sum(0)
        return (((len(labels) - positives) / positives.clamp(min=1)).where(positives > 0, 1.0)).tolist()
    counts = torch.bincount(labels.long(), minlength=num_classes).double()
    return (len(labels) / (num_classes * counts.clamp(min=1))).where(counts > 0, 1.0).tolist()


class CrossEntropy(nn.CrossEntropyLoss):
    """Cross entropy of the softmax scores, on class ids or on soft targets.

    Args:
        label_smoothing: the share of each target spread over all classes, e.g. 0.1 (0: off)
        class_weights: how much each class's samples count: none, auto (balanced from the training labels), or
            one number per class, comma-separated
    """

    takes_soft_targets = True

    def __init__(self, ignore_index: int = NO_IGNORE, label_smoothing: float = 0.0,
                 class_weights: str = "none") -> None:
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), not {label_smoothing}")
        super().__init__(weight=class_weight_tensor(class_weights), ignore_index=ignore_index,
                         label_smoothing=label_smoothing)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): cross entropy that down-weights the samples already
    classified well, so the hard (often the rare) ones count more.

    Args:
        focal_gamma: how strongly well-classified samples are down-weighted (0: cross entropy)
        class_weights: as for cross_entropy: none, auto, or one number per class
    """

    def __init__(self, ignore_index: int = NO_IGNORE, focal_gamma: float = 2.0, class_weights: str = "none") -> None:
        super().__init__()
        if not focal_gamma >= 0:
            raise ValueError(f"focal_gamma must be 0 or more, not {focal_gamma}")
        self.ignore_index, self.gamma = ignore_index, focal_gamma
        self.register_buffer("weight", class_weight_tensor(class_weights), persistent=False)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        ce = F.cross_entropy(pred.float(), target, ignore_index=self.ignore_index, reduction="none")
        p_true = (-ce).exp()  # the probability of the true class
        weight = self.weight[target.where(target != self.ignore_index, 0)] if self.weight is not None else 1.0
        counted = (target != self.ignore_index).to(ce.dtype)
        return ((1 - p_true) ** self.gamma * ce * weight * counted).sum() / counted.sum().clamp(min=1)


class BinaryCrossEntropy(nn.BCEWithLogitsLoss):
    """Binary cross entropy of each label's score (sigmoid), for several labels per picture.

    Args:
        class_weights: how much each label's positives count (BCE's pos_weight): none, auto (negatives / positives
            of the training labels), or one number per label
    """

    def __init__(self, class_weights: str = "none") -> None:
        super().__init__(pos_weight=class_weight_tensor(class_weights))

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return super().forward(pred, target.to(pred.dtype))


class Huber(nn.HuberLoss):
    """Huber loss for regression: squared error below `huber_delta`, absolute error above.

    Args:
        huber_delta: where the loss turns from squared to absolute error
    """

    def __init__(self, huber_delta: float = 1.0) -> None:
        if not huber_delta > 0:
            raise ValueError(f"huber_delta must be positive, not {huber_delta}")
        super().__init__(delta=huber_delta)


class ProbabilityLoss(nn.Module):
    """L1 or MSE (`elementwise`); class-id targets are compared as one-hot vectors with
    softmax(pred), float targets (regression) with pred itself."""

    elementwise = nn.L1Loss

    def __init__(self, ignore_index: int = NO_IGNORE) -> None:
        super().__init__()
        self.loss = self.elementwise(reduction="none")
        self.ignore_index = ignore_index

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        if target.dtype.is_floating_point:
            return self.loss(pred, target).mean()
        one_hot, valid = one_hot_valid(pred, target, self.ignore_index)
        valid = valid.expand_as(one_hot).to(pred.dtype)  # a weight, not a boolean index: no GPU sync
        return (self.loss(pred.softmax(dim=1), one_hot) * valid).sum() / valid.sum().clamp(min=1)


class L1(ProbabilityLoss):
    """Mean absolute difference (of probabilities and one-hot targets, for class ids)."""

    elementwise = nn.L1Loss


class MSE(ProbabilityLoss):
    """Mean squared difference (of probabilities and one-hot targets, for class ids)."""

    elementwise = nn.MSELoss


class DiceLoss(nn.Module):
    """1 - the soft Dice score averaged over classes: robust to a large background class.

    Args:
        smooth: added to the overlap and the total of every class, so an absent class scores 1
    """

    def __init__(self, ignore_index: int = NO_IGNORE, smooth: float = 1.0) -> None:
        super().__init__()
        if not smooth >= 0:
            raise ValueError(f"smooth must be 0 or more, not {smooth}")
        self.ignore_index = ignore_index
        self.smooth = smooth

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        one_hot, valid = one_hot_valid(pred, target, self.ignore_index)
        probabilities = pred.softmax(dim=1) * valid
        dims = [0, *range(2, pred.ndim)]  # all but the class dimension
        overlap = (probabilities * one_hot).sum(dims)
        total = probabilities.sum(dims) + one_hot.sum(dims)
        return 1 - ((2 * overlap + self.smooth) / (total + self.smooth)).mean()


class CrossEntropyDiceLoss(nn.Module):
    """Cross entropy plus Dice: per-pixel accuracy and per-class overlap, both.

    Args:
        label_smoothing: cross entropy's label smoothing, e.g. 0.1 (0: off)
    """

    def __init__(self, ignore_index: int = NO_IGNORE, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.cross_entropy = CrossEntropy(ignore_index, label_smoothing)
        self.dice = DiceLoss(ignore_index)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return self.cross_entropy(pred, target) + self.dice(pred, target)


LOSSES = {
    "cross_entropy": CrossEntropy,
    "focal": FocalLoss,
    "bce": BinaryCrossEntropy,
    "huber": Huber,
    "l1": L1,
    "mse": MSE,
    "dice": DiceLoss,
    "ce_dice": CrossEntropyDiceLoss,
}
# What the task hands a loss itself (when the loss takes it); its other parameters are flags.
SUPPLIED = ("ignore_index",)
