"""The task-specific pieces, chosen by name in one place: `TASKS`.

The Trainer and Evaluator are the same for every task: they ask the task for its loss, its
label check, its metrics (from one confusion matrix summed over the data set), its pictures
and its rows for predictions.csv. A data set says which task it serves (`dataset.task`).
To add a task (e.g. detection), write a class with the same methods and add it to `TASKS`;
README.md, "Adding a new task", walks through it with segmentation as the example.
"""

from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from data.augment import denormalize
from loss import NO_IGNORE, build_loss
from metrics import (
    ConfusionMeter,
    confusion_matrix,
    mean_iou,
    overall_accuracy,
    per_class_accuracy,
    per_class_iou,
    topk_accuracy,
)
from utils.errors import UserError
from utils.viz import classification_grid, save_classification_pngs, save_segmentation_pngs, segmentation_grid


class ClassificationTask:
    """One class id per picture; metrics: accuracy (top-5 too with more than 5 classes)."""

    name = "classification"
    prediction_header = ["path", "label", "prediction", "score"]
    main_metric = "acc"  # the default --monitor: val/acc
    default_loss = "cross_entropy"  # --loss when not given

    def __init__(self, num_classes: int, class_names: list[str], ignore_index: int) -> None:
        self.num_classes, self.class_names = num_classes, class_names

    def loss(self, name: str | None, label_smoothing: float = 0.0) -> nn.Module:
        """--loss, or this task's default; no label is ignored: every sample has a class."""
        return build_loss(name or self.default_loss, label_smoothing=label_smoothing)

    def check_labels(self, label: Tensor, paths: list[str]) -> None:
        """A class id the model cannot predict is a data error, reported with its sample."""
        bad = ((label < 0) | (label >= self.num_classes)).nonzero()
        if len(bad):
            index = int(bad[0])
            raise UserError(f"Label {int(label[index])} of {paths[index]} is outside [0, {self.num_classes}): "
                            "the model has that many classes.")

    def check_output(self, pred: Tensor, model_type: str) -> None:
        if pred.ndim != 2:
            raise UserError(f"--model_type {model_type} gives outputs of shape {tuple(pred.shape)}, but "
                            "classification needs one score per class (N, C); pick a classification model.")

    def meter(self, state: Tensor | None = None) -> ConfusionMeter:
        return ConfusionMeter(self.num_classes, state=state)

    def batch_metrics(self, pred: Tensor, label: Tensor) -> dict[str, Tensor]:
        return {"top5_acc": topk_accuracy(pred, label, k=5)} if self.num_classes > 5 else {}

    def results(self, confusion: Tensor, per_class: bool) -> dict[str, float]:
        results = {"acc": overall_accuracy(confusion)}
        if per_class:
            results |= {f"acc/{n}": v for n, v in zip(self.class_names, per_class_accuracy(confusion).tolist())}
        return results

    def pictures(self, image: Tensor, label: Tensor, pred: Tensor, count: int = 32) -> Tensor:
        """A grid of the first `count` samples for TensorBoard; only those leave the GPU."""
        image, label, pred = image[:count], label[:count], pred[:count]
        return classification_grid(denormalize(image), label.cpu(), pred.detach().cpu(), max_images=count)

    def save_pictures(self, image: Tensor, label: Tensor, pred: Tensor, folder: Path, indices: list[int]) -> None:
        pictures = denormalize(image)
        save_classification_pngs(pictures, label.cpu(), pred.detach().cpu(), self.class_names, folder, indices)

    def save_predictions(self, pred: Tensor, folder: Path, indices: list[int]) -> None:
        """Nothing beyond predictions.csv: a class id fits in a row."""

    def prediction_rows(self, paths: list[str], label: Tensor, pred: Tensor) -> list[list]:
        """`[path, label, prediction, score]` per sample; score = the predicted class's probability."""
        score, predicted = pred.softmax(dim=1).max(dim=1)
        return [[p, t, c, f"{s:.6f}"] for p, t, c, s in zip(paths, label.tolist(), predicted.tolist(), score.tolist())]


class SegmentationTask:
    """A class id per pixel; metrics: pixel accuracy and mean IoU; `ignore_index` pixels skipped."""

    name = "segmentation"
    prediction_header = ["path", "pixel_acc", "iou"]
    main_metric = "miou"  # the default --monitor: val/miou
    # --loss when not given. Cross entropy alone can leave a class unlearned for good: one seed
    # of the digits set ended at 0.82 mIoU with digit 6 at IoU 0.02; the Dice term weighs every
    # class alike (docs/performance.md, Accuracy).
    default_loss = "ce_dice"

    def __init__(self, num_classes: int, class_names: list[str], ignore_index: int) -> None:
        self.num_classes, self.class_names, self.ignore_index = num_classes, class_names, ignore_index

    def loss(self, name: str | None, label_smoothing: float = 0.0) -> nn.Module:
        """--loss, or this task's default."""
        return build_loss(name or self.default_loss, self.ignore_index, label_smoothing)

    def check_labels(self, label: Tensor, paths: list[str]) -> None:
        """Mask values must be class ids or the ignore value; name the first file that breaks it."""
        bad = (label != self.ignore_index) & ((label < 0) | (label >= self.num_classes))
        if bad.any():
            index = int(bad.flatten(1).any(dim=1).nonzero()[0])
            value = int(label[index][bad[index]][0])
            raise UserError(f"The mask of {paths[index]} holds the value {value}, outside [0, {self.num_classes}) "
                            f"and not the ignore value {self.ignore_index} (--ignore_index); the class names "
                            "file (seg_classes.txt) defines the classes.")

    def check_output(self, pred: Tensor, model_type: str) -> None:
        if pred.ndim != 4:
            raise UserError(f"--model_type {model_type} gives outputs of shape {tuple(pred.shape)}, but "
                            "segmentation needs scores per pixel (N, C, H, W); pick a segmentation model, e.g. unet.")

    def meter(self, state: Tensor | None = None) -> ConfusionMeter:
        return ConfusionMeter(self.num_classes, ignore_index=self.ignore_index, state=state)

    def batch_metrics(self, pred: Tensor, label: Tensor) -> dict[str, Tensor]:
        return {}

    def results(self, confusion: Tensor, per_class: bool) -> dict[str, float]:
        results = {"miou": mean_iou(confusion), "pixel_acc": overall_accuracy(confusion)}
        if per_class:
            results |= {f"iou/{name}": v for name, v in zip(self.class_names, per_class_iou(confusion).tolist())}
        return results

    def pictures(self, image: Tensor, label: Tensor, pred: Tensor, count: int = 8) -> Tensor:
        """Input | prediction | truth of the first `count` samples; only those leave the GPU."""
        image, label, pred = image[:count], label[:count], pred[:count]
        return segmentation_grid(denormalize(image), label.cpu(), pred.detach().cpu(), max_images=count)

    def save_pictures(self, image: Tensor, label: Tensor, pred: Tensor, folder: Path, indices: list[int]) -> None:
        save_segmentation_pngs(denormalize(image), label.cpu(), pred.detach().cpu(), folder, indices)

    def save_predictions(self, pred: Tensor, folder: Path, indices: list[int]) -> None:
        """The predicted masks, `<index>.png` (one class id per pixel, index = row of
        predictions.csv)."""
        folder.mkdir(parents=True, exist_ok=True)
        for index, mask in zip(indices, pred.argmax(1).to(torch.uint8).cpu()):
            Image.fromarray(mask.numpy()).save(folder / f"{index:06d}.png")

    def prediction_rows(self, paths: list[str], label: Tensor, pred: Tensor) -> list[list]:
        """`[path, pixel_acc, iou]` per sample, the IoU averaged over the classes in that sample."""
        rows = []
        for path, sample_label, sample_pred in zip(paths, label, pred.argmax(1)):
            confusion = confusion_matrix(sample_pred, sample_label, self.num_classes, self.ignore_index)
            iou = per_class_iou(confusion).nanmean().item()
            rows.append([path, f"{overall_accuracy(confusion):.6f}", f"{iou:.6f}"])
        return rows


TASKS = {
    "classification": ClassificationTask,
    "segmentation": SegmentationTask,
}


def select_task(name: str, num_classes: int, class_names: list[str],
                ignore_index: int = NO_IGNORE) -> ClassificationTask | SegmentationTask:
    """The task a data set serves, sized for its classes."""
    if name not in TASKS:
        raise UserError(f"Unknown task {name!r} (from the data set); valid names: {', '.join(TASKS)}.")
    return TASKS[name](num_classes, class_names, ignore_index)
