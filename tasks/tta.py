"""--tta (eval.py, predict.py): test-time augmentation by flips. The model sees each picture
as it is and flipped; each flipped view's scores are first turned back by the task
(`Task.flip_back`: segmentation flips its score maps back, a class stays what it is), then
the task averages the views (`Task.average_views`), and it decides which flips its labels
can follow (`Task.check_tta`).

Classes average their softmax probabilities, handed on as log-probabilities: the softmax of
those is the averaged probabilities again, their argmax is the averaged prediction, and cross
entropy on them is the loss of the averaged prediction. Several labels average their sigmoid
probabilities, handed on as logits; regression averages the values. So the loss, the metrics
and the rows of eval.py and predict.py need no change.
"""

import torch
from torch import Tensor, nn

from data.augment import Augment
from utils.errors import UserError

# --tta choice -> the flips besides the picture itself, as image dimensions (-1: left-right, -2: up-down).
TTA_FLIPS: dict[str, tuple[tuple[int, ...], ...]] = {
    "none": (),
    "hflip": ((-1,),),
    "vflip": ((-2,),),
    "hvflip": ((-1,), (-2,), (-2, -1)),
}
FLIP_FLAGS = {-1: "--hflip", -2: "--vflip"}  # the training flag that flips along a dimension


class FlipAverage(nn.Module):
    """A model under --tta: the task's average of the scores of the picture and its `flips`
    (see the module docstring)."""

    def __init__(self, model: nn.Module, task, flips: tuple[tuple[int, ...], ...]) -> None:
        super().__init__()
        self.model, self.task, self.flips = model, task, flips

    def forward(self, image: Tensor) -> Tensor:
        views = [self.model(image).float()]
        views += [self.task.flip_back(self.model(image.flip(dims)), dims).float() for dims in self.flips]
        return self.task.average_views(views)


def mean_softmax(views: list[Tensor]) -> Tensor:
    """Class scores: the mean of the views' softmax probabilities, as log-probabilities."""
    mean = sum(view.softmax(dim=1) for view in views) / len(views)
    return mean.clamp_min(torch.finfo(mean.dtype).tiny).log()  # an underflowed 0 would give -inf


def mean_sigmoid(views: list[Tensor]) -> Tensor:
    """Several labels' scores: the mean of the views' sigmoid probabilities, as logits."""
    mean = sum(view.sigmoid() for view in views) / len(views)
    tiny = torch.finfo(mean.dtype).eps
    return mean.clamp(tiny, 1 - tiny).logit()


def with_tta(model: nn.Module, task, tta: str, saved_args: dict | None) -> nn.Module:
    """The model as --tta asks (unchanged for "none"); what the task refuses is a UserError,
    raised before anything is written. `saved_args`: the checkpoint's training flags."""
    flips = TTA_FLIPS[tta]
    if not flips:
        return model
    if not all(hasattr(task, member) for member in ("check_tta", "flip_back", "average_views")):
        raise UserError(f"--tta: the {task.name} task does not say how its predictions follow a flip (its class has "
                        "no check_tta, flip_back and average_views; see tasks/task.py and tasks/classification.py).")
    task.check_tta(flips, trained_augment(saved_args))
    return FlipAverage(model, task, flips)


def trained_augment(saved_args: dict | None) -> Augment | None:
    """The flips a run trained with (from its checkpoint's flags); None for a checkpoint that
    does not say (not written by train.py)."""
    if not isinstance(saved_args, dict) or "hflip" not in saved_args:
        return None
    if saved_args.get("overfit_batches"):  # --overfit_batches trains without augmentation
        return Augment()
    return Augment(hflip=saved_args.get("hflip") or 0.0, vflip=saved_args.get("vflip") or 0.0)


def refuse_untrained_flips(flips: tuple[tuple[int, ...], ...], trained: Augment | None) -> None:
    """A flip the run never trained with may turn a picture into one its labels do not fit
    (a mirrored digit or letter, an upside-down scan): only the training flags say it does
    not, so --tta applies the flips the run trained with (--hflip / --vflip above 0)."""
    if trained is None:
        return
    probability = {-1: trained.hflip, -2: trained.vflip}
    for dim in sorted({dim for dims in flips for dim in dims}):
        if not probability[dim]:
            raise UserError(f"--tta: the run trained without {FLIP_FLAGS[dim]}, so a picture flipped that way may "
                            "be one its labels do not fit (digits, text); test-time flips are the ones the run "
                            f"trained with. Train with {FLIP_FLAGS[dim]} 0.5 to use them, or leave --tta out.")
