"""--tta: the averaged softmax scores of a picture and its flips (segmentation's score maps
flipped back), checked against the computation by hand; eval.py and predict.py with it; and
what a task refuses (a flip the run never trained with), before anything is written."""

import csv
import shutil
from pathlib import Path

import pytest
import torch
from helpers import tiny_train_argv
from torch import nn

import eval as evaluate
import predict
import train
from data.augment import eval_transform
from data.list_dataset import load_image, read_list_file
from model.base import BaseNet
from tasks import TASKS
from tasks.tta import TTA_FLIPS, FlipAverage, with_tta
from utils.errors import UserError

CLASSES = ["a", "b", "c", "d"]


def test_classification_averages_the_softmax_of_the_picture_and_its_mirror() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4))  # not mirror-symmetric
    task = TASKS["classification"](CLASSES, 255)
    x = torch.randn(5, 3, 6, 6)
    expected = (model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2
    averaged = FlipAverage(model, task, TTA_FLIPS["hflip"])(x)
    assert torch.allclose(averaged.exp(), expected, atol=1e-6)
    assert torch.allclose(averaged.softmax(1), expected, atol=1e-6)  # what eval.py's rows and loss read


def test_segmentation_flips_each_score_map_back_before_averaging() -> None:
    torch.manual_seed(0)
    model = nn.Conv2d(3, 4, 3, padding=1)  # a 3 x 3 kernel: not equivariant to flips
    task = TASKS["segmentation"](CLASSES, 255)
    x = torch.randn(2, 3, 8, 8)
    views = [model(x).softmax(1), model(x.flip(-1)).softmax(1).flip(-1), model(x.flip(-2)).softmax(1).flip(-2),
             model(x.flip(-2, -1)).softmax(1).flip(-2, -1)]
    averaged = FlipAverage(model, task, TTA_FLIPS["hvflip"])(x)
    assert torch.allclose(averaged.exp(), sum(views) / 4, atol=1e-6)


def test_a_flip_equivariant_model_gains_nothing_and_loses_nothing() -> None:
    model = nn.Conv2d(3, 4, 1)  # 1 x 1: flipping the input flips the output
    task = TASKS["segmentation"](CLASSES, 255)
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(FlipAverage(model, task, TTA_FLIPS["hflip"])(x).exp(), model(x).softmax(1), atol=1e-6)


def test_several_labels_average_their_sigmoids_and_regression_its_values() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4))
    x = torch.randn(5, 3, 6, 6)
    multilabel = FlipAverage(model, TASKS["multilabel"](CLASSES, 255), TTA_FLIPS["hflip"])(x)
    assert torch.allclose(multilabel.sigmoid(), (model(x).sigmoid() + model(x.flip(-1)).sigmoid()) / 2, atol=1e-6)
    regression = FlipAverage(model, TASKS["regression"](CLASSES, 255), TTA_FLIPS["hvflip"])(x)
    views = [model(x), model(x.flip(-1)), model(x.flip(-2)), model(x.flip(-2, -1))]
    assert torch.allclose(regression, sum(views) / 4, atol=1e-6)


@pytest.mark.parametrize("task_name", list(TASKS))
def test_a_flip_the_run_did_not_train_with_is_refused(task_name: str) -> None:
    task = TASKS[task_name](CLASSES, 255)
    model = nn.Identity()
    with pytest.raises(UserError, match="trained without --vflip"):
        with_tta(model, task, "vflip", {"hflip": 0.5, "vflip": 0.0})
    with pytest.raises(UserError, match="trained without --hflip"):
        with_tta(model, task, "hflip", {"hflip": 0.5, "overfit_batches": 2})  # --overfit_batches: no augmentation
    assert isinstance(with_tta(model, task, "hvflip", {"hflip": 0.5, "vflip": 0.5}), FlipAverage)
    assert isinstance(with_tta(model, task, "hflip", None), FlipAverage)  # a checkpoint that does not say
    assert with_tta(model, task, "none", {"hflip": 0.0}) is model


@pytest.fixture(scope="module")
def flipped_run(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained with --hflip 0.5, so that --tta hflip applies."""
    checkpoints = tmp_path_factory.mktemp("tta")
    assert train.main(tiny_train_argv(tiny_demo, checkpoints, epochs=2) + ["--hflip", "0.5"]) == 0
    (run_dir,) = checkpoints.iterdir()
    return run_dir


def by_hand(run_dir: Path, demo: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The averaged probabilities of best.pth on the validation pictures, and their labels."""
    model = BaseNet(num_classes=5, in_channels=3)
    model.load_state_dict(torch.load(run_dir / "best.pth")["model"])
    model.eval()
    entries = read_list_file(demo / "val.txt")
    images = torch.stack([eval_transform(32)(load_image(e.image, e.where)) for e in entries])
    with torch.no_grad():
        probabilities = (model(images).softmax(1) + model(images.flip(-1)).softmax(1)) / 2
    return probabilities, torch.tensor([e.label for e in entries])


@pytest.mark.slow
def test_eval_with_tta_equals_the_computation_by_hand(flipped_run: Path, tiny_demo: Path) -> None:
    argv = ["--load_model_path", str(flipped_run), "--num_workers", "0", "--batch_size", "16", "--gpus", "-1"]
    assert evaluate.main(argv + ["--tta", "hflip"]) == 0
    folder = flipped_run / "best" / "val_eval_tta-hflip"
    result = dict(line.split(": ") for line in (folder / "result.txt").read_text().splitlines())
    probabilities, labels = by_hand(flipped_run, tiny_demo)
    assert float(result["acc"]) == pytest.approx((probabilities.argmax(1) == labels).float().mean().item(), abs=1e-6)
    loss = nn.functional.nll_loss(probabilities.log(), labels).item()  # cross entropy of the averaged prediction
    assert float(result["loss"]) == pytest.approx(loss, abs=1e-5)
    with open(folder / "predictions.csv") as file:
        scores = [float(row["score"]) for row in csv.DictReader(file)]
    assert scores == pytest.approx(probabilities.max(1).values.tolist(), abs=1e-5)


@pytest.mark.slow
def test_predict_with_tta_writes_the_averaged_scores(flipped_run: Path, tiny_demo: Path) -> None:
    argv = ["--load_model_path", str(flipped_run), "--input", str(tiny_demo / "val.txt"), "--num_workers", "0",
            "--gpus", "-1", "--tta", "hflip"]
    assert predict.main(argv) == 0
    with open(flipped_run / "best" / "predict_val_tta-hflip" / "predictions.csv") as file:
        scores = [float(row["score"]) for row in csv.DictReader(file)]
    assert scores == pytest.approx(by_hand(flipped_run, tiny_demo)[0].max(1).values.tolist(), abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("main", [evaluate.main, predict.main])
def test_tta_on_a_run_trained_without_flips_is_refused_and_writes_nothing(main, trained_run, tiny_demo, tmp_path,
                                                                          capsys) -> None:
    run_dir = Path(shutil.copytree(trained_run, tmp_path / trained_run.name))
    argv = ["--load_model_path", str(run_dir), "--num_workers", "0", "--tta", "hflip"]
    argv += ["--input", str(tiny_demo / "images" / "val")] if main is predict.main else []
    assert main(argv) == 2
    assert "--tta: the run trained without --hflip" in capsys.readouterr().err
    assert not (run_dir / "best").exists()


@pytest.mark.slow
def test_segmentation_with_tta_end_to_end(tiny_demo: Path, tmp_path: Path) -> None:
    argv = tiny_train_argv(tiny_demo, tmp_path, epochs=1) + [
        "--model_type", "unet", "--data_type", "seg_list", "--train_list", str(tiny_demo / "seg_train.txt"),
        "--val_list", str(tiny_demo / "seg_val.txt"), "--width", "8", "--hflip", "0.5", "--vflip", "0.5"]
    assert train.main(argv) == 0
    (run_dir,) = tmp_path.iterdir()
    eval_argv = ["--load_model_path", str(run_dir), "--num_workers", "0", "--batch_size", "16"]
    assert evaluate.main(eval_argv + ["--tta", "hvflip"]) == 0
    folder = run_dir / "best" / "seg_val_eval_tta-hvflip"
    assert "miou: " in (folder / "result.txt").read_text() and len(list((folder / "predictions").iterdir())) == 30


def test_a_task_without_the_tta_members_is_a_clear_error() -> None:
    class OldTask:  # a task written before --tta existed
        name = "old"

    with pytest.raises(UserError, match="the old task does not say how its predictions follow a flip"):
        with_tta(nn.Identity(), OldTask(), "hflip", None)
