"""Classification: one class id per picture. Metrics: accuracy (and top-5 accuracy with more
than 5 classes), from one confusion matrix per epoch."""

from pathlib import Path

import torch
from torch import Tensor, nn

from data.augment import Augment, batch_mix, denormalize
from loss import LOSSES
from metrics import add_confusion, overall_accuracy, per_class_accuracy, predicted_class, topk_accuracy
from tasks.confusion_files import save_confusion_files
from tasks.task import Meter
from tasks.tta import mean_softmax, refuse_untrained_flips
from utils.charts import MAX_CLASSES_DRAWN, confusion_picture
from utils.errors import UserError
from utils.viz import classification_grid, save_classification_pngs, titled_with_legend


class ClassificationTask:
    """A class id per picture (see tasks/task.py for what each member is for)."""

    name = "classification"
    main_metric = "acc"
    lower_is_better = ()
    default_loss = "cross_entropy"
    evaluation_header = ["path", "label", "prediction", "score", "label_id", "prediction_id"]
    gallery_size = 32  # eval.py's mistakes.png: this many of the most confident mistakes

    def __init__(self, class_names: list[str], ignore_index: int) -> None:
        self.class_names, self.num_classes = class_names, len(class_names)
        self.loss_supplied = {}  # every picture has a class: nothing to ignore

    def check_labels(self, label: Tensor, paths: list[str]) -> None:
        bad = ((label < 0) | (label >= self.num_classes)).nonzero()
        if len(bad):
            index = int(bad[0])
            raise UserError(f"Label {int(label[index])} of {paths[index]} is outside [0, {self.num_classes}): "
                            "the model has that many classes.")

    def check_output(self, pred: Tensor, model_type: str) -> None:
        if pred.ndim != 2:
            raise UserError(f"--model_type {model_type} gives outputs of shape {tuple(pred.shape)}, but "
                            "classification needs one score per class (N, C); pick a classification model.")

    def batch_augment(self, augment: Augment, loss: str) -> nn.Module | None:
        """--mixup / --cutmix make soft targets (class probabilities): only a loss that takes them can train on them."""
        mix = batch_mix(augment, self.num_classes)
        if mix is not None and not getattr(LOSSES[loss], "takes_soft_targets", False):
            takes = [name for name, builder in LOSSES.items() if getattr(builder, "takes_soft_targets", False)]
            raise UserError(f"--mixup / --cutmix make soft targets, which --loss {loss} does not take; use "
                            f"--loss {' or '.join(takes)}.")
        return mix

    def check_tta(self, flips: tuple[tuple[int, ...], ...], trained: Augment | None) -> None:
        refuse_untrained_flips(flips, trained)

    def flip_back(self, pred: Tensor, dims: tuple[int, ...]) -> Tensor:
        return pred  # a flipped picture has the same class

    def average_views(self, views: list[Tensor]) -> Tensor:
        return mean_softmax(views)  # averaged probabilities, as log-probabilities

    def measure(self, meter: Meter, pred: Tensor, label: Tensor) -> None:
        add_confusion(meter.counter("confusion", (self.num_classes,) * 2, pred.device), predicted_class(pred), label)
        if self.num_classes > 5:
            meter.add_mean("top5_acc", topk_accuracy(pred, label, k=5), len(label))

    def results(self, counts: dict[str, Tensor], per_class: bool) -> dict[str, float]:
        confusion = counts["confusion"].double()
        recall = per_class_accuracy(confusion)
        precision = confusion.diagonal() / confusion.sum(dim=0)
        f1 = 2 * confusion.diagonal() / (confusion.sum(dim=0) + confusion.sum(dim=1))
        results = {"acc": overall_accuracy(confusion), "macro_f1": f1.nanmean().item()}
        if per_class:
            for i, name in enumerate(self.class_names):
                results |= {f"acc/{name}": recall[i].item(), f"precision/{name}": precision[i].item(),
                            f"f1/{name}": f1[i].item()}
        return results

    def pictures(self, image: Tensor, label: Tensor, pred: Tensor, count: int = 32) -> Tensor:
        image, label, pred = image[:count], label[:count], pred[:count]
        return classification_grid(denormalize(image), label.cpu(), pred.detach().cpu(), self.class_names,
                                   max_images=count)

    def count_pictures(self, counts: dict[str, Tensor]) -> dict[str, Tensor]:
        """The epoch's confusion matrix with class names, for TensorBoard (up to MAX_CLASSES_DRAWN classes)."""
        if self.num_classes > MAX_CLASSES_DRAWN:
            return {}
        return {"confusion": confusion_picture(counts["confusion"].cpu(), self.class_names)}

    def save_count_files(self, counts: dict[str, Tensor], folder: Path) -> None:
        """confusion.csv, confusion.png and per_class.png (each class's accuracy: its recall)."""
        confusion = counts["confusion"].double().cpu()
        recall = per_class_accuracy(confusion).tolist()
        save_confusion_files(confusion, self.class_names, folder, dict(zip(self.class_names, recall)),
                             "accuracy per class (recall; n/a: not in the set)")

    def mistake_scores(self, label: Tensor, pred: Tensor) -> Tensor:
        """How sure the model was of each wrong prediction (its probability); 0 for a right one."""
        probability, predicted = pred.float().softmax(dim=1).max(dim=1)
        return torch.where(predicted == label, torch.zeros_like(probability), probability)

    def mistakes_picture(self, image: Tensor, label: Tensor, pred: Tensor, indices: list[int]) -> Tensor:
        """eval.py's mistakes.png: the samples given (the most confident mistakes first), each
        captioned `true / predicted probability`."""
        grid = classification_grid(denormalize(image), label.cpu(), pred.float().cpu(), self.class_names,
                                   max_images=self.gallery_size)
        return titled_with_legend(grid, ["the most confident mistakes: true / predicted probability"], [], [])

    def save_pictures(self, image: Tensor, label: Tensor, pred: Tensor, folder: Path, indices: list[int]) -> None:
        save_classification_pngs(denormalize(image), label.cpu(), pred.detach().cpu(), self.class_names, folder,
                                 indices)

    def evaluation_rows(self, paths: list[str], label: Tensor, pred: Tensor, folder: Path,
                        indices: list[int]) -> list[list]:
        """`[path, label, prediction, score, label_id, prediction_id]` per sample: class names,
        then the predicted class's probability, then the class ids."""
        score, predicted = pred.float().softmax(dim=1).max(dim=1)
        names = self.class_names
        return [[p, names[t], names[c], f"{s:.6f}", t, c]
                for p, t, c, s in zip(paths, label.tolist(), predicted.tolist(), score.tolist())]

    def prediction_header(self, top_k: int) -> list[str]:
        return ["path", "prediction", "class_id", "score", *(f"top{n}" for n in range(1, self.top(top_k) + 1))]

    def prediction_rows(self, paths: list[str], sizes: Tensor, pred: Tensor, folder: Path, indices: list[int],
                        top_k: int) -> list[list]:
        """`path, prediction, class_id, score, top1..topK`: the score is the predicted class's
        probability, each topN `name:probability`."""
        scores, ids = pred.float().softmax(dim=1).topk(self.top(top_k), dim=1)
        rows = []
        for path, top_scores, top_ids in zip(paths, scores.tolist(), ids.tolist()):
            top = [f"{self.class_names[i]}:{s:.6f}" for i, s in zip(top_ids, top_scores)]
            rows.append([path, self.class_names[top_ids[0]], top_ids[0], f"{top_scores[0]:.6f}", *top])
        return rows

    def top(self, top_k: int) -> int:
        """--top_k, at most the number of classes."""
        return min(top_k, self.num_classes)
