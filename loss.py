"""The losses, by name (`--loss`). Each entry builds an nn.Module called as loss(pred, target).

`pred` holds scores with the classes on dimension 1: (N, C) for classification, (N, C, H, W)
for segmentation; `target` holds class ids, (N,) or (N, H, W). Targets equal to
`ignore_index` (segmentation: 255 by default, `--ignore_index`) count for nothing. Cross
entropy also takes soft targets, class probabilities (N, C), as `--mixup` / `--cutmix` make them.
L1 and MSE compare softmax probabilities with one-hot targets when the target holds class
ids, so they also run on the demo; with float targets (regression) they are the plain losses.
"""

import torch.nn.functional as F
from torch import Tensor, nn

from utils.errors import UserError

NO_IGNORE = -100  # PyTorch's default: not a class id, so nothing is ignored


def one_hot_valid(pred: Tensor, target: Tensor, ignore_index: int) -> tuple[Tensor, Tensor]:
    """One-hot targets shaped like `pred` (classes on dim 1) and the mask of counted targets."""
    valid = target != ignore_index
    one_hot = F.one_hot(target.where(valid, 0), num_classes=pred.shape[1]).movedim(-1, 1).to(pred.dtype)
    return one_hot, valid.unsqueeze(1)


class ProbabilityLoss(nn.Module):
    """L1 or MSE; class-id targets are compared as one-hot vectors with softmax(pred)."""

    def __init__(self, kind: str, ignore_index: int = NO_IGNORE) -> None:
        super().__init__()
        self.loss = nn.L1Loss(reduction="none") if kind == "l1" else nn.MSELoss(reduction="none")
        self.ignore_index = ignore_index

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        if target.dtype.is_floating_point:
            return self.loss(pred, target).mean()
        one_hot, valid = one_hot_valid(pred, target, self.ignore_index)
        valid = valid.expand_as(one_hot).to(pred.dtype)  # a weight, not a boolean index: no GPU sync
        return (self.loss(pred.softmax(dim=1), one_hot) * valid).sum() / valid.sum().clamp(min=1)


class DiceLoss(nn.Module):
    """1 - the soft Dice score averaged over classes: robust to a large background class."""

    def __init__(self, ignore_index: int = NO_IGNORE, smooth: float = 1.0) -> None:
        super().__init__()
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
    """Cross entropy plus Dice: per-pixel accuracy and per-class overlap, both."""

    def __init__(self, ignore_index: int = NO_IGNORE) -> None:
        super().__init__()
        self.cross_entropy = nn.CrossEntropyLoss(ignore_index=ignore_index)
        self.dice = DiceLoss(ignore_index)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return self.cross_entropy(pred, target) + self.dice(pred, target)


LOSSES = {
    "cross_entropy": lambda ignore_index: nn.CrossEntropyLoss(ignore_index=ignore_index),
    "l1": lambda ignore_index: ProbabilityLoss("l1", ignore_index),
    "mse": lambda ignore_index: ProbabilityLoss("mse", ignore_index),
    "dice": lambda ignore_index: DiceLoss(ignore_index),
    "ce_dice": lambda ignore_index: CrossEntropyDiceLoss(ignore_index),
}
# The losses that take soft targets (class probabilities, as --mixup / --cutmix make them).
SOFT_TARGET_LOSSES = ("cross_entropy",)


def build_loss(name: str, ignore_index: int = NO_IGNORE, label_smoothing: float = 0.0) -> nn.Module:
    """The loss called `name`; an unknown name is a UserError listing the valid ones.
    `label_smoothing` (--label_smoothing) is cross entropy's own option."""
    if name not in LOSSES:
        raise UserError(f"Unknown --loss {name!r}; valid names: {', '.join(LOSSES)}.")
    if label_smoothing and name != "cross_entropy":
        raise UserError(f"--label_smoothing {label_smoothing} applies to --loss cross_entropy only, not {name}; "
                        "add --loss cross_entropy to smooth its labels.")
    if name == "cross_entropy":
        return nn.CrossEntropyLoss(ignore_index=ignore_index, label_smoothing=label_smoothing)
    return LOSSES[name](ignore_index)
