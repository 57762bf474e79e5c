"""The losses, by name (`--loss`). Each entry builds an nn.Module called as loss(pred, target).

For classification `pred` is (N, C) logits and `target` (N,) class ids. L1 and MSE compare
softmax probabilities with one-hot targets when the target holds class ids, so they also
run on the demo; with float targets (regression) they are the plain losses.
"""

import torch.nn.functional as F
from torch import Tensor, nn

from utils.errors import UserError


class ProbabilityLoss(nn.Module):
    """L1 or MSE; class-id targets are compared as one-hot vectors with softmax(pred)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.loss = nn.L1Loss() if kind == "l1" else nn.MSELoss()

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        if target.dtype.is_floating_point:
            return self.loss(pred, target)
        one_hot = F.one_hot(target, num_classes=pred.shape[1]).to(pred.dtype)
        return self.loss(pred.softmax(dim=1), one_hot)


LOSSES = {
    "cross_entropy": lambda: nn.CrossEntropyLoss(),
    "label_smoothing_ce": lambda: nn.CrossEntropyLoss(label_smoothing=0.1),
    "l1": lambda: ProbabilityLoss("l1"),
    "mse": lambda: ProbabilityLoss("mse"),
}


def build_loss(name: str) -> nn.Module:
    """The loss called `name`; an unknown name is a UserError listing the valid ones."""
    if name not in LOSSES:
        raise UserError(f"Unknown --loss {name!r}; valid names: {', '.join(LOSSES)}.")
    return LOSSES[name]()
