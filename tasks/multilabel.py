"""Multi-label classification: any number of labels per picture, a score (logit) per label.

A label is predicted where its probability (sigmoid) reaches 0.5. Metrics, from sums over
the epoch (exact across a resumed epoch and torchrun's processes): micro and macro precision,
recall and F1 at that threshold, and the mean average precision (mAP, threshold-free), from
histograms of the probabilities (1,000 bins) of positives and negatives per label. eval.py's
result.txt also gives each label's AP, F1 and the threshold that maximises its F1.
"""

from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.utils import make_grid, save_image

from data.augment import Augment, denormalize
from tasks.task import Meter
from tasks.tta import mean_sigmoid, refuse_untrained_flips
from utils.errors import UserError
from utils.viz import enlarged, framed

BINS = 1000  # of the probability histograms behind mAP and the best thresholds
THRESHOLD = 0.5


class MultiLabelTask:
    """Several labels per picture (see tasks/task.py for what each member is for)."""

    name = "multilabel"
    main_metric = "map"
    lower_is_better = ()
    default_loss = "bce"
    evaluation_header = ["path", "labels", "predicted", "scores"]

    def __init__(self, class_names: list[str], ignore_index: int) -> None:
        self.class_names, self.num_classes = class_names, len(class_names)
        self.loss_supplied = {}

    def check_labels(self, label: Tensor, paths: list[str]) -> None:
        if label.ndim != 2 or label.shape[1] != self.num_classes:
            raise UserError(f"Multi-label targets of shape {tuple(label.shape)} for {paths[0]} ...; expected "
                            f"(batch, {self.num_classes}): one 0 / 1 per label.")

    def check_output(self, pred: Tensor, model_type: str) -> None:
        if pred.ndim != 2 or pred.shape[1] != self.num_classes:
            raise UserError(f"--model_type {model_type} gives outputs of shape {tuple(pred.shape)}, but multi-label "
                            f"classification needs one score per label (N, {self.num_classes}).")

    def batch_augment(self, augment: Augment, loss: str) -> nn.Module | None:
        for flag, value in (("--mixup", augment.mixup), ("--cutmix", augment.cutmix)):
            if value:
                raise UserError(f"{flag} {value} mixes pictures of one class id each; multi-label targets have "
                                "several labels. Leave it out.")
        return None

    def check_tta(self, flips: tuple[tuple[int, ...], ...], trained: Augment | None) -> None:
        refuse_untrained_flips(flips, trained)  # flips it trained with left its targets as they were

    def flip_back(self, pred: Tensor, dims: tuple[int, ...]) -> Tensor:
        return pred  # as in training: a flipped picture kept its targets

    def average_views(self, views: list[Tensor]) -> Tensor:
        return mean_sigmoid(views)  # averaged probabilities, as logits

    def measure(self, meter: Meter, pred: Tensor, label: Tensor) -> None:
        probability, label = pred.float().sigmoid(), label.float()
        predicted = (probability >= THRESHOLD).float()
        C, device = self.num_classes, pred.device
        meter.counter("true_positive", (C,), device).add_((predicted * label).sum(0).long())
        meter.counter("false_positive", (C,), device).add_((predicted * (1 - label)).sum(0).long())
        meter.counter("false_negative", (C,), device).add_(((1 - predicted) * label).sum(0).long())
        bins = (probability * BINS).long().clamp(0, BINS - 1) + torch.arange(C, device=device) * BINS
        meter.counter("positives", (C, BINS), device).view(-1).index_add_(0, bins.flatten(), label.flatten().long())
        meter.counter("negatives", (C, BINS), device).view(-1).index_add_(0, bins.flatten(),
                                                                          (1 - label).flatten().long())

    def results(self, counts: dict[str, Tensor], per_class: bool) -> dict[str, float]:
        tp, fp, fn = (counts[name].double() for name in ("true_positive", "false_positive", "false_negative"))
        precision, recall = tp / (tp + fp), tp / (tp + fn)
        f1 = 2 * tp / (2 * tp + fp + fn)
        ap = average_precision(counts["positives"].double(), counts["negatives"].double())
        micro = 2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum())
        results = {"map": ap.nanmean().item(), "micro_f1": micro.item(), "macro_f1": f1.nanmean().item(),
                   "macro_precision": precision.nanmean().item(), "macro_recall": recall.nanmean().item()}
        if per_class:
            best = best_thresholds(counts["positives"].double(), counts["negatives"].double())
            for i, name in enumerate(self.class_names):
                results |= {f"ap/{name}": ap[i].item(), f"f1/{name}": f1[i].item(),
                            f"best_threshold/{name}": best[i].item()}
        return results

    def pictures(self, image: Tensor, label: Tensor, pred: Tensor, count: int = 32) -> Tensor:
        """The first samples, framed green where every label is right."""
        image, label, pred = image[:count], label[:count], pred[:count]
        right = ((pred.detach().float().sigmoid() >= THRESHOLD) == (label >= 0.5)).all(dim=1)
        return make_grid(framed(denormalize(image), right.cpu()), nrow=8, padding=2)

    def save_pictures(self, image: Tensor, label: Tensor, pred: Tensor, folder: Path, indices: list[int]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        right = ((pred.detach().float().sigmoid() >= THRESHOLD) == (label >= 0.5)).all(dim=1).cpu()
        pictures = enlarged(framed(denormalize(image), right), side=image.shape[-1])
        for index, picture in zip(indices, pictures):
            save_image(picture, folder / f"{index:06d}.png")

    def names(self, hot: Tensor) -> str:
        return ";".join(name for name, on in zip(self.class_names, hot.tolist()) if on)

    def evaluation_rows(self, paths: list[str], label: Tensor, pred: Tensor, folder: Path,
                        indices: list[int]) -> list[list]:
        """`path, labels, predicted, scores`: names joined by `;`, scores `name:probability`."""
        probability = pred.float().sigmoid().cpu()
        return [[path, self.names(truth >= 0.5), self.names(p >= THRESHOLD),
                 ";".join(f"{n}:{v:.6f}" for n, v in zip(self.class_names, p.tolist()))]
                for path, truth, p in zip(paths, label.cpu(), probability)]

    def prediction_header(self, top_k: int) -> list[str]:
        return ["path", "predicted", "scores"]

    def prediction_rows(self, paths: list[str], sizes: Tensor, pred: Tensor, folder: Path, indices: list[int],
                        top_k: int) -> list[list]:
        probability = pred.float().sigmoid().cpu()
        return [[path, self.names(p >= THRESHOLD), ";".join(f"{n}:{v:.6f}" for n, v in zip(self.class_names,
                                                                                           p.tolist()))]
                for path, p in zip(paths, probability)]


def average_precision(positives: Tensor, negatives: Tensor) -> Tensor:
    """Each label's AP from histograms (labels x bins) of its positives' and negatives'
    probabilities: precision at every bin, from the highest down, weighted by the recall
    it adds. NaN for a label without positives."""
    tp = positives.flip(1).cumsum(1)
    fp = negatives.flip(1).cumsum(1)
    precision = tp / (tp + fp).clamp(min=1)
    return (precision * positives.flip(1)).sum(1) / positives.sum(1)


def best_thresholds(positives: Tensor, negatives: Tensor) -> Tensor:
    """Each label's probability threshold (a bin edge) with the highest F1."""
    tp = positives.flip(1).cumsum(1)  # predicted positive at or above each bin, from the top
    fp = negatives.flip(1).cumsum(1)
    fn = positives.sum(1, keepdim=True) - tp
    f1 = 2 * tp / (2 * tp + fp + fn).clamp(min=1)
    best = f1.argmax(1)  # index from the top: the threshold is that bin's lower edge
    return (BINS - 1 - best).double() / BINS
