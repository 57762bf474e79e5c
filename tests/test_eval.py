"""eval.py end to end: result.txt checked against an independent computation, pictures, no overwrites."""

import csv
import shutil
from pathlib import Path

import pytest
import torch
from helpers import run_python
from PIL import Image

import eval as evaluate
from data.augment import eval_transform
from data.list_dataset import load_image, read_list_file
from model.base import BaseNet
from tasks.classification import ClassificationTask


def read_result(result_dir: Path) -> dict[str, float]:
    lines = (result_dir / "result.txt").read_text().splitlines()
    return {name: float(value) for name, value in (line.split(": ") for line in lines)}


def only_result_dir(run_dir: Path) -> Path:
    (result_dir,) = (run_dir / "best").iterdir()
    return result_dir


@pytest.fixture(scope="module")
def run_dir(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's own copy of the shared run, so its result folders are the only ones."""
    return Path(shutil.copytree(trained_run, tmp_path_factory.mktemp("eval") / trained_run.name))


@pytest.fixture(scope="module")
def evaluated(run_dir: Path) -> Path:
    """One evaluation of the run's best.pth, with pictures of every batch."""
    argv = ["--load_model_path", str(run_dir / "best.pth"), "--num_workers", "0", "--batch_size", "16",
            "--save_viz", "--viz_freq", "1"]
    assert evaluate.main(argv) == 0
    return only_result_dir(run_dir)


def test_accuracy_equals_an_independent_computation(evaluated: Path, run_dir: Path, tiny_demo: Path) -> None:
    # Independently: the model class, the weights and the list file, without the template's loop.
    model = BaseNet(num_classes=5, in_channels=3)
    model.load_state_dict(torch.load(run_dir / "best.pth")["model"])
    model.eval()
    entries = read_list_file(tiny_demo / "val.txt")
    images = torch.stack([eval_transform(32)(load_image(e.image, e.where)) for e in entries])
    with torch.no_grad():
        predicted = model(images).argmax(1)
    expected = (predicted == torch.tensor([e.label for e in entries])).float().mean().item()
    result = read_result(evaluated)
    assert result["acc"] == pytest.approx(expected, abs=1e-6)
    assert result["acc"] == pytest.approx(torch.load(run_dir / "best.pth")["checkpoints"]["best"], abs=1e-6)


def test_result_txt_has_loss_and_per_class_accuracy(evaluated: Path) -> None:
    result = read_result(evaluated)
    # Contains, not equals: a metric a user adds to the task's results is one more line.
    assert {"loss", "acc", "acc/circle", "acc/square", "acc/triangle", "acc/cross", "acc/ring"} <= set(result)


def test_predictions_csv_has_one_row_per_sample_matching_result_txt(evaluated: Path, tiny_demo: Path) -> None:
    with open(evaluated / "predictions.csv") as file:
        rows = list(csv.DictReader(file))
    assert [row["path"] for row in rows] == [str(e.image) for e in read_list_file(tiny_demo / "val.txt")]
    right = sum(row["label"] == row["prediction"] for row in rows)
    assert read_result(evaluated)["acc"] == pytest.approx(right / len(rows), abs=1e-6)
    assert all(0.2 <= float(row["score"]) <= 1 for row in rows)  # the top of 5 probabilities


def test_save_viz_writes_one_png_per_sample(evaluated: Path) -> None:
    pictures = sorted((evaluated / "viz").glob("*.png"))
    assert len(pictures) == 30
    assert pictures[0].name.startswith("000000_true-circle_pred-")


def test_predictions_csv_names_the_classes_and_keeps_their_ids(evaluated: Path, run_dir: Path) -> None:
    names = torch.load(run_dir / "best.pth")["class_names"]
    with open(evaluated / "predictions.csv") as file:
        rows = list(csv.DictReader(file))
    assert all(row["label"] == names[int(row["label_id"])] for row in rows)
    assert all(row["prediction"] == names[int(row["prediction_id"])] for row in rows)


def test_confusion_csv_holds_every_sample_once_under_class_names(evaluated: Path, run_dir: Path) -> None:
    """Issue 26: the confusion matrix was computed but shown nowhere a person looks."""
    names = torch.load(run_dir / "best.pth")["class_names"]
    with open(evaluated / "confusion.csv") as file:
        header, *rows = list(csv.reader(file))
    assert header[1:] == names and [row[0] for row in rows] == names
    counts = torch.tensor([[int(value) for value in row[1:]] for row in rows])
    assert counts.sum() == len((evaluated / "predictions.csv").read_text().splitlines()) - 1
    assert read_result(evaluated)["acc"] == pytest.approx((counts.diagonal().sum() / counts.sum()).item(), abs=1e-6)
    for picture in ("confusion.png", "per_class.png", "mistakes.png"):
        with Image.open(evaluated / picture) as image:
            assert image.width > 100 and image.height > 100, picture


def test_the_most_confident_mistakes_are_drawn_wherever_they_are(run_dir: Path, tmp_path: Path) -> None:
    """--save_viz draws batch 0 (every --viz_freq-th) and the set's worst mistakes, which
    before were missed when not in batch 0 (all 6 of the demo's)."""
    argv = ["--load_model_path", str(run_dir / "best.pth"), "--num_workers", "0", "--batch_size", "8",
            "--save_viz", "--viz_freq", "1000", "--output_dir", str(tmp_path)]
    assert evaluate.main(argv) == 0
    (result_dir,) = tmp_path.iterdir()
    with open(result_dir / "predictions.csv") as file:
        wrong = [(float(row["score"]), i) for i, row in enumerate(csv.DictReader(file))
                 if row["label"] != row["prediction"]]
    assert wrong, "the tiny run should make mistakes"
    drawn = {int(path.name[:6]) for path in (result_dir / "viz").glob("*.png")}
    most_confident = {i for _, i in sorted(wrong, reverse=True)[:ClassificationTask.gallery_size]}
    assert most_confident <= drawn and set(range(8)) <= drawn  # and batch 0, as before
    assert (result_dir / "mistakes.png").is_file()


def test_a_task_without_the_picture_members_still_evaluates(run_dir: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The picture members are optional (tasks/task.py, TaskPictures): without them eval.py
    writes its results, just not those pictures."""
    for name in ("count_pictures", "save_count_files", "mistake_scores", "mistakes_picture"):
        monkeypatch.delattr(ClassificationTask, name)
    argv = ["--load_model_path", str(run_dir / "best.pth"), "--num_workers", "0", "--output_dir", str(tmp_path)]
    assert evaluate.main(argv) == 0
    (result_dir,) = tmp_path.iterdir()
    assert "acc" in read_result(result_dir)
    assert not (result_dir / "confusion.png").exists() and not (result_dir / "mistakes.png").exists()


def test_a_second_evaluation_never_overwrites_the_first(evaluated: Path, run_dir: Path) -> None:
    before = (evaluated / "result.txt").read_text()
    assert evaluate.main(["--load_model_path", str(run_dir), "--num_workers", "0"]) == 0
    result_dirs = sorted(p.name for p in (run_dir / "best").iterdir())
    assert result_dirs == ["val_eval", "val_eval_1"]
    assert (evaluated / "result.txt").read_text() == before


@pytest.mark.slow
def test_eval_py_as_a_user_runs_it(run_dir: Path, tmp_path: Path) -> None:
    result = run_python(["eval.py", "--load_model_path", str(run_dir / "last.pth"), "--num_workers", "0"])
    assert result.returncode == 0, result.stderr
    (result_dir,) = (run_dir / "last").iterdir()
    assert read_result(result_dir)["acc"] >= 0


@pytest.mark.slow
def test_a_checkpoint_of_another_model_is_a_clear_error(run_dir: Path) -> None:
    result = run_python(["eval.py", "--load_model_path", str(run_dir), "--model_type", "better"])
    assert result.returncode == 2
    assert f"Checkpoint {run_dir / 'best.pth'} does not fit the model" in result.stderr
    assert "Traceback" not in result.stderr
