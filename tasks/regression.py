"""Regression: one or more numbers per picture (the targets), predicted as the model's outputs.

Metrics, from sums over the epoch (exact across a resumed epoch and torchrun's processes):
the mean absolute error (MAE, the default --monitor: lower is better), the root mean squared
error (RMSE) and R² (1 - squared error / the targets' variance), over all targets, and per
target in eval.py's result.txt.
"""

from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.utils import make_grid, save_image

from data.augment import Augment, denormalize
from tasks.task import Meter
from tasks.tta import refuse_untrained_flips
from utils.errors import UserError
from utils.viz import enlarged


class RegressionTask:
    """Numbers per picture (see tasks/task.py for what each member is for)."""

    name = "regression"
    main_metric = "mae"
    lower_is_better = ("mae", "rmse")
    default_loss = "mse"

    def __init__(self, class_names: list[str], ignore_index: int) -> None:
        self.class_names, self.num_classes = class_names, len(class_names)  # the targets' names
        self.loss_supplied = {}
        self.evaluation_header = ["path", *(f"{kind}_{name}" for name in class_names for kind in ("target", "pred"))]

    def check_labels(self, label: Tensor, paths: list[str]) -> None:
        if label.ndim != 2 or label.shape[1] != self.num_classes or not label.dtype.is_floating_point:
            raise UserError(f"Regression targets of shape {tuple(label.shape)} for {paths[0]} ...; expected "
                            f"(batch, {self.num_classes}) numbers.")
        if not torch.isfinite(label).all():
            index = int((~torch.isfinite(label)).any(dim=1).nonzero()[0])
            raise UserError(f"The target of {paths[index]} is not a finite number: {label[index].tolist()}.")

    def check_output(self, pred: Tensor, model_type: str) -> None:
        if pred.ndim != 2 or pred.shape[1] != self.num_classes:
            raise UserError(f"--model_type {model_type} gives outputs of shape {tuple(pred.shape)}, but regression "
                            f"needs one number per target (N, {self.num_classes}).")

    def batch_augment(self, augment: Augment, loss: str) -> nn.Module | None:
        for flag, value in (("--mixup", augment.mixup), ("--cutmix", augment.cutmix)):
            if value:
                raise UserError(f"{flag} {value} mixes class ids; regression targets are numbers. Leave it out.")
        return None

    def check_tta(self, flips: tuple[tuple[int, ...], ...], trained: Augment | None) -> None:
        refuse_untrained_flips(flips, trained)  # flips it trained with left its targets as they were

    def flip_back(self, pred: Tensor, dims: tuple[int, ...]) -> Tensor:
        return pred  # as in training: a flipped picture kept its targets

    def average_views(self, views: list[Tensor]) -> Tensor:
        return sum(views) / len(views)  # the mean value

    def measure(self, meter: Meter, pred: Tensor, label: Tensor) -> None:
        error, label = (pred.detach().double() - label.double()), label.double()
        C, device = self.num_classes, pred.device
        for name, value in (("abs_error", error.abs()), ("squared_error", error**2), ("target", label),
                            ("squared_target", label**2)):
            meter.counter(name, (C,), device, torch.float64).add_(value.sum(0))
        meter.counter("count", (1,), device).add_(len(label))

    def results(self, counts: dict[str, Tensor], per_class: bool) -> dict[str, float]:
        n = counts["count"].double()
        mae, mse = counts["abs_error"] / n, counts["squared_error"] / n
        variance = counts["squared_target"] / n - (counts["target"] / n) ** 2
        r2 = 1 - mse / variance
        results = {"mae": mae.mean().item(), "rmse": mse.mean().sqrt().item(), "r2": r2.mean().item()}
        if per_class and self.num_classes > 1:
            for i, name in enumerate(self.class_names):
                results |= {f"mae/{name}": mae[i].item(), f"rmse/{name}": mse[i].sqrt().item(),
                            f"r2/{name}": r2[i].item()}
        return results

    def pictures(self, image: Tensor, label: Tensor, pred: Tensor, count: int = 32) -> Tensor:
        return make_grid(denormalize(image[:count]), nrow=8, padding=2)

    def save_pictures(self, image: Tensor, label: Tensor, pred: Tensor, folder: Path, indices: list[int]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for index, picture, target, value in zip(indices, enlarged(denormalize(image), image.shape[-1]),
                                                 label.tolist(), pred.detach().float().tolist()):
            save_image(picture, folder / f"{index:06d}_target-{target[0]:.4g}_pred-{value[0]:.4g}.png")

    def evaluation_rows(self, paths: list[str], label: Tensor, pred: Tensor, folder: Path,
                        indices: list[int]) -> list[list]:
        return [[path, *(f"{v:.6g}" for pair in zip(t, p) for v in pair)]
                for path, t, p in zip(paths, label.tolist(), pred.detach().float().tolist())]

    def prediction_header(self, top_k: int) -> list[str]:
        return ["path", *self.class_names]

    def prediction_rows(self, paths: list[str], sizes: Tensor, pred: Tensor, folder: Path, indices: list[int],
                        top_k: int) -> list[list]:
        return [[path, *(f"{v:.6g}" for v in p)] for path, p in zip(paths, pred.float().tolist())]
