"""tools/average_checkpoints.py: the kept top-k weights averaged, BatchNorm statistics measured
again on the training data (checked against the first layer's activations by hand), a plain
checkpoint eval.py and predict.py take, and bad input refused with nothing written."""

import shutil
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from helpers import tiny_train_argv

import eval as evaluate
import predict
import train
from data.data_entry import select_train_loader, training_sets
from model.base import BaseNet
from tools import average_checkpoints

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def top_run(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 epochs, the 2 best kept as top_epoch_<N>.pth, then averaged."""
    checkpoints = tmp_path_factory.mktemp("average")
    assert train.main(tiny_train_argv(tiny_demo, checkpoints, epochs=3) + ["--save_top_k", "2"]) == 0
    (run_dir,) = checkpoints.iterdir()
    assert average_checkpoints.main([str(run_dir)]) == 0
    return run_dir


def exit_code(argv: list[str]) -> int:
    try:
        return average_checkpoints.main(argv)
    except SystemExit as stop:
        return stop.code


def test_the_weights_are_the_mean_of_the_kept_epochs(top_run: Path) -> None:
    averaged = torch.load(top_run / "averaged_top2.pth")
    epochs = averaged["averaged"]["epochs"]
    sources = [torch.load(top_run / f"top_epoch_{epoch}.pth")["model"] for epoch in epochs]
    assert sorted(epochs) == sorted(e for _, e in torch.load(top_run / "last.pth")["checkpoints"]["top"])
    for name, tensor in averaged["model"].items():
        if "running" not in name and "num_batches" not in name:
            assert torch.allclose(tensor, (sources[0][name] + sources[1][name]) / 2, atol=1e-7), name
    assert averaged["task"] == "classification" and averaged["model_kwargs"]["num_classes"] == 5


def test_batchnorm_statistics_are_those_of_the_averaged_weights_on_the_training_data(top_run: Path) -> None:
    averaged = torch.load(top_run / "averaged_top2.pth")
    model = BaseNet(num_classes=5, in_channels=3)
    model.load_state_dict(averaged["model"])
    conv = model.features[0][0]  # the first BatchNorm's input depends on this convolution alone
    args = Namespace(**averaged["args"])
    loader = select_train_loader(args, training_sets(args)[0])
    loader.sampler.set_epoch(1)
    with torch.no_grad():
        means = [conv(batch["image"]).mean(dim=(0, 2, 3)) for batch in loader]
    first_bn = averaged["model"]["features.0.1.running_mean"]
    assert torch.allclose(first_bn, torch.stack(means).mean(0), atol=1e-5)
    assert averaged["averaged"]["batchnorm_batches"] == len(means)
    naive = sum(torch.load(top_run / f"top_epoch_{e}.pth")["model"]["features.0.1.running_mean"]
                for e in averaged["averaged"]["epochs"]) / 2
    assert not torch.allclose(first_bn, naive, atol=1e-4)  # what averaging alone would have left


def test_eval_and_predict_take_the_averaged_checkpoint(top_run: Path, tiny_demo: Path) -> None:
    checkpoint = str(top_run / "averaged_top2.pth")
    assert evaluate.main(["--load_model_path", checkpoint, "--num_workers", "0"]) == 0
    assert "acc: " in (top_run / "averaged_top2" / "val_eval" / "result.txt").read_text()
    assert predict.main(["--load_model_path", checkpoint, "--num_workers", "0", "--input",
                         str(tiny_demo / "images" / "val")]) == 0
    assert (top_run / "averaged_top2" / "predict_val" / "predictions.csv").is_file()


def test_an_existing_output_is_never_replaced(top_run: Path, capsys) -> None:
    before = (top_run / "averaged_top2.pth").read_bytes()
    assert exit_code([str(top_run)]) == 2
    assert "exists; an averaged checkpoint is never replaced" in capsys.readouterr().err
    assert (top_run / "averaged_top2.pth").read_bytes() == before


def test_bad_input_is_exit_2_and_writes_nothing(top_run: Path, trained_run: Path, tmp_path: Path, capsys) -> None:
    no_top = Path(shutil.copytree(trained_run, tmp_path / "no_top"))
    cases = [([str(no_top)], "keeps 0 top-k checkpoint(s)"),
             ([str(top_run), "--top_k", "5", "--output", str(tmp_path / "a.pth")], "--top_k 5: "),
             ([str(top_run), "--top_k", "1", "--output", str(tmp_path / "a.pth")], "--top_k 1: "),
             ([str(tmp_path / "nowhere")], "is not a run directory"),
             ([str(top_run), "--output", str(tmp_path / "no" / "dir.pth")], "does not exist")]
    for argv, message in cases:
        assert exit_code(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert sorted(p.name for p in no_top.iterdir()) == sorted(p.name for p in trained_run.iterdir())
    assert not (tmp_path / "a.pth").exists()
