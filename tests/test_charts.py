"""utils/charts.py and utils/viz.py: the pictures eval.py and TensorBoard get, drawn for any
number of classes (names of any length), as (3, H, W) values in [0, 1]."""

import pytest
import torch

from utils.charts import bars_picture, confusion_picture
from utils.viz import classification_grid, segmentation_grid


def check_picture(picture: torch.Tensor) -> None:
    assert picture.ndim == 3 and picture.shape[0] == 3
    assert 0 <= picture.min() and picture.max() <= 1
    assert picture.std() > 0  # something is drawn on it


@pytest.mark.parametrize("classes", [1, 5, 150])
def test_a_confusion_matrix_of_any_size_names_its_classes(classes: int) -> None:
    confusion = torch.randint(0, 10**6, (classes, classes))
    names = [f"a rather long class name {i}" for i in range(classes)]
    picture = confusion_picture(confusion, names)
    check_picture(picture)
    assert picture.shape[1] >= 8 * classes and picture.shape[2] >= 8 * classes  # a cell per pair, at least 8 px


def test_bars_take_a_class_the_set_lacks() -> None:
    check_picture(bars_picture({"circle": 0.9, "square": float("nan"), "ring": 0.0}, "accuracy per class"))


def test_classification_tiles_are_enlarged_and_captioned() -> None:
    pictures, label, pred = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]), torch.randn(4, 3)
    grid = classification_grid(pictures, label, pred, ["circle", "square", "triangle"])
    check_picture(grid)
    assert grid.shape[1] > 128 + 16  # tiles of at least 128 pixels, and a caption under each


def test_a_segmentation_grid_has_titles_and_a_legend() -> None:
    pictures, label, pred = torch.rand(2, 3, 32, 32), torch.randint(0, 6, (2, 32, 32)), torch.randn(2, 6, 32, 32)
    grid = segmentation_grid(pictures, label, pred, [f"class {i}" for i in range(6)])
    check_picture(grid)
    rows_only = 2 * (128 + 2) + 2
    assert grid.shape[1] > rows_only + 20 + 18  # the title line above, a legend line below


def test_past_the_drawing_limit_only_the_csv_is_written(tmp_path) -> None:
    """An 8000-pixel matrix every epoch helps nobody: above MAX_CLASSES_DRAWN classes the
    counts go to confusion.csv alone."""
    from tasks.classification import ClassificationTask
    from utils.charts import MAX_CLASSES_DRAWN

    task = ClassificationTask([f"c{i}" for i in range(MAX_CLASSES_DRAWN + 1)], -100)
    counts = {"confusion": torch.eye(MAX_CLASSES_DRAWN + 1, dtype=torch.long)}
    assert task.count_pictures(counts) == {}
    task.save_count_files(counts, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.csv"]
