"""Segmentation: a class id per pixel. Metrics: mean IoU and pixel accuracy, from one confusion
matrix per epoch; pixels equal to --ignore_index count for nothing."""

from pathlib import Path

from torch import Tensor, nn
from torch.nn import functional as F

from data.augment import Augment, denormalize
from metrics import add_confusion, confusion_matrix, mean_iou, overall_accuracy, per_class_iou, predicted_class
from tasks.confusion_files import save_confusion_files
from tasks.task import Meter
from tasks.tta import mean_softmax, refuse_untrained_flips
from utils.charts import MAX_CLASSES_DRAWN, confusion_picture
from utils.errors import UserError
from utils.viz import save_palette_mask, save_segmentation_pngs, segmentation_grid


class SegmentationTask:
    """A class id per pixel (see tasks/task.py for what each member is for)."""

    name = "segmentation"
    main_metric = "miou"
    lower_is_better = ()
    # Cross entropy alone can leave a class unlearned for good: one seed of the digits set
    # ended at 0.82 mIoU with digit 6 at IoU 0.02; the Dice term weighs every class alike
    # (docs/performance.md, Accuracy).
    default_loss = "ce_dice"
    evaluation_header = ["path", "pixel_acc", "iou", "mask"]
    gallery_size = 8  # eval.py's mistakes.png: this many of the worst samples (rows of three pictures)

    def __init__(self, class_names: list[str], ignore_index: int) -> None:
        self.class_names, self.num_classes, self.ignore_index = class_names, len(class_names), ignore_index
        self.loss_supplied = {"ignore_index": ignore_index}

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

    def batch_augment(self, augment: Augment, loss: str) -> nn.Module | None:
        """Masks must keep their class ids: only geometric steps (flips, crops) move a picture and its mask alike."""
        refused = {"--mixup": augment.mixup, "--cutmix": augment.cutmix, "--random_erasing": augment.random_erasing,
                   "--aug_policy": augment.policy != "none" and augment.policy}
        for flag, value in refused.items():
            if value:
                raise UserError(f"{flag} {value} cannot apply to segmentation: it would change the image without "
                                "changing the mask the same way (or mix class ids). For segmentation use the "
                                "geometric flags: --crop_padding, --hflip, --vflip.")
        return None

    def check_tta(self, flips: tuple[tuple[int, ...], ...], trained: Augment | None) -> None:
        refuse_untrained_flips(flips, trained)

    def flip_back(self, pred: Tensor, dims: tuple[int, ...]) -> Tensor:
        return pred.flip(dims)  # the score map of a flipped picture, flipped back onto the picture

    def average_views(self, views: list[Tensor]) -> Tensor:
        return mean_softmax(views)  # averaged probabilities, as log-probabilities

    def measure(self, meter: Meter, pred: Tensor, label: Tensor) -> None:
        confusion = meter.counter("confusion", (self.num_classes,) * 2, pred.device)
        add_confusion(confusion, predicted_class(pred), label, self.ignore_index)

    def results(self, counts: dict[str, Tensor], per_class: bool) -> dict[str, float]:
        confusion = counts["confusion"]
        results = {"miou": mean_iou(confusion), "pixel_acc": overall_accuracy(confusion)}
        if per_class:
            results |= {f"iou/{name}": v for name, v in zip(self.class_names, per_class_iou(confusion).tolist())}
        return results

    def pictures(self, image: Tensor, label: Tensor, pred: Tensor, count: int = 8) -> Tensor:
        """Input | prediction | truth of the first `count` samples."""
        image, label, pred = image[:count], label[:count], pred[:count]
        return segmentation_grid(denormalize(image), label.cpu(), pred.detach().cpu(), self.class_names,
                                 max_images=count)

    def save_pictures(self, image: Tensor, label: Tensor, pred: Tensor, folder: Path, indices: list[int]) -> None:
        save_segmentation_pngs(denormalize(image), label.cpu(), pred.detach().cpu(), folder, indices,
                               self.class_names)

    def count_pictures(self, counts: dict[str, Tensor]) -> dict[str, Tensor]:
        """The epoch's confusion matrix of pixels with class names, for TensorBoard (up to MAX_CLASSES_DRAWN)."""
        if self.num_classes > MAX_CLASSES_DRAWN:
            return {}
        return {"confusion": confusion_picture(counts["confusion"].cpu(), self.class_names)}

    def save_count_files(self, counts: dict[str, Tensor], folder: Path) -> None:
        """confusion.csv (pixel counts), confusion.png and per_class.png (each class's IoU)."""
        confusion = counts["confusion"].cpu()
        iou = per_class_iou(confusion).tolist()
        save_confusion_files(confusion, self.class_names, folder, dict(zip(self.class_names, iou)),
                             "IoU per class (n/a: in neither truth nor prediction)")

    def mistake_scores(self, label: Tensor, pred: Tensor) -> Tensor:
        """Each sample's share of wrong pixels (those not --ignore_index); 0 when all are right."""
        counted = label != self.ignore_index
        wrong = (predicted_class(pred) != label) & counted
        return wrong.flatten(1).sum(1).float() / counted.flatten(1).sum(1).clamp(min=1)

    def mistakes_picture(self, image: Tensor, label: Tensor, pred: Tensor, indices: list[int]) -> Tensor:
        """eval.py's mistakes.png: the samples given (the worst first), input | prediction |
        truth, each row captioned with its sample's index and pixel accuracy."""
        counted = label != self.ignore_index
        right = ((predicted_class(pred).cpu() == label.cpu()) & counted.cpu()).flatten(1).sum(1)
        accuracy = (right / counted.cpu().flatten(1).sum(1).clamp(min=1)).tolist()
        captions = [f"sample {index}: pixel accuracy {value:.3f}" for index, value in zip(indices, accuracy)]
        return segmentation_grid(denormalize(image), label.cpu(), pred.float().cpu(), self.class_names,
                                 max_images=self.gallery_size, captions=captions)

    def evaluation_rows(self, paths: list[str], label: Tensor, pred: Tensor, folder: Path,
                        indices: list[int]) -> list[list]:
        """`[path, pixel_acc, iou, mask]` per sample, the IoU averaged over the classes in that
        sample; the predicted mask is `predictions/<index>.png`, a palette PNG of class ids."""
        (folder / "predictions").mkdir(parents=True, exist_ok=True)
        rows = []
        for path, index, sample_label, sample_pred in zip(paths, indices, label, predicted_class(pred).cpu()):
            confusion = confusion_matrix(sample_pred, sample_label.cpu(), self.num_classes, self.ignore_index)
            mask = Path("predictions") / f"{index:06d}.png"
            save_palette_mask(sample_pred, folder / mask)
            iou = per_class_iou(confusion).nanmean().item()
            rows.append([path, f"{overall_accuracy(confusion):.6f}", f"{iou:.6f}", mask.as_posix()])
        return rows

    def prediction_header(self, top_k: int) -> list[str]:
        return ["path", "mask"]

    def prediction_rows(self, paths: list[str], sizes: Tensor, pred: Tensor, folder: Path, indices: list[int],
                        top_k: int) -> list[list]:
        """`path, mask` per picture; the mask `predictions/<index>.png` is a palette PNG of class
        ids at the picture's own size (scores, not ids, are scaled back: smooth borders)."""
        (folder / "predictions").mkdir(exist_ok=True)
        rows = []
        for offset, (path, index, size) in enumerate(zip(paths, indices, sizes.tolist())):
            scores = F.interpolate(pred[offset:offset + 1].float(), size=size, mode="bilinear", align_corners=False)
            mask = Path("predictions") / f"{index:06d}.png"
            save_palette_mask(scores[0].argmax(0), folder / mask)
            rows.append([path, mask.as_posix()])
        return rows
