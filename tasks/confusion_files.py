"""eval.py's files of a confusion matrix, shared by the tasks that count one: confusion.csv
(the counts, with class names), confusion.png and per_class.png (bars of a per-class value)."""

import csv
import io
from pathlib import Path

from torch import Tensor
from torchvision.utils import save_image

from utils.atomic import atomic_write_text
from utils.charts import MAX_CLASSES_DRAWN, bars_picture, confusion_picture


def confusion_csv(confusion: Tensor, class_names: list[str]) -> str:
    """Rows: true class, columns: predicted class, each cell a count; the first row and column name them."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true \\ predicted", *class_names])
    writer.writerows([name, *row] for name, row in zip(class_names, confusion.long().tolist()))
    return buffer.getvalue()


def save_confusion_files(confusion: Tensor, class_names: list[str], folder: Path, per_class: dict[str, float],
                         per_class_title: str) -> None:
    """confusion.csv, and up to MAX_CLASSES_DRAWN classes confusion.png and per_class.png
    (`per_class`: class name -> value in [0, 1])."""
    confusion = confusion.cpu()
    atomic_write_text(folder / "confusion.csv", confusion_csv(confusion, class_names))
    if len(class_names) > MAX_CLASSES_DRAWN:
        return
    save_image(confusion_picture(confusion, class_names), folder / "confusion.png")
    save_image(bars_picture(per_class, per_class_title), folder / "per_class.png")
