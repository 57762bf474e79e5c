"""Every kind of bad input: exit code 2, one message naming the bad value, no traceback, and
an earlier run directory in the same checkpoints folder left exactly as it was."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import run_python, tiny_train_argv

import eval as evaluate
import train
from data.data_entry import DATASETS
from loss import LOSSES
from model.better import BetterNet
from model.model_entry import MODELS
from utils.optim import OPTIMIZERS, SCHEDULERS


@pytest.fixture
def earlier(trained_run: Path, tmp_path: Path) -> Path:
    """An earlier, finished run in the checkpoints folder the bad runs also use."""
    return Path(shutil.copytree(trained_run, tmp_path / "checkpoints" / trained_run.name))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_main(main, argv: list[str], capsys) -> tuple[int, str]:
    """Call an entry point as the command line would; returns (exit code, stderr)."""
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err


def assert_refused(argv: list[str], message: str, earlier: Path, tiny_demo: Path, capsys, main=train.main) -> str:
    before = snapshot(earlier)
    base = tiny_train_argv(tiny_demo, earlier.parent) if main is train.main else []
    code, err = run_main(main, base + argv, capsys)
    assert code == 2
    assert message in err, err[-1500:]
    assert "Traceback" not in err
    assert snapshot(earlier) == before
    return err


# The registries as they are (a user adds to them): the message lists whatever they hold.
REGISTRIES = {"--model_type": MODELS, "--data_type": DATASETS, "--optimizer": OPTIMIZERS, "--scheduler": SCHEDULERS,
              "--loss": LOSSES}


@pytest.mark.parametrize("flag", list(REGISTRIES))
def test_unknown_names_list_the_valid_ones(flag, earlier, tiny_demo, capsys) -> None:
    choices = ", ".join(repr(name) for name in REGISTRIES[flag])
    assert_refused([flag, "no_such_name"], f"argument {flag}: invalid choice: 'no_such_name' (choose from {choices})",
                   earlier, tiny_demo, capsys)


@pytest.mark.parametrize("flag, value, message", [
    ("--batch_size", "0", "--batch_size 0 must be 1 or more"),
    ("--epochs", "0", "--epochs 0 must be 1 or more"),
    ("--lr", "-0.1", "--lr -0.1 must be a positive number"),
    ("--lr", "nan", "--lr nan must be a positive number"),
    ("--image_size", "1000000", "--image_size 1000000 is implausibly large (the limit is 8192"),
])
def test_numbers_out_of_range(flag, value, message, earlier, tiny_demo, capsys) -> None:
    assert_refused([flag, value], message, earlier, tiny_demo, capsys)


def test_missing_list_file(earlier, tiny_demo, capsys) -> None:
    assert_refused(["--train_list", "no/such/train.txt"], "--train_list no/such/train.txt does not exist",
                   earlier, tiny_demo, capsys)


def write_list(folder: Path, text: str, classes: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if classes is not None:
        (folder / "classes.txt").write_text(classes)
    (folder / "train.txt").write_text(text)
    return folder / "train.txt"


def test_empty_list_file(earlier, tiny_demo, tmp_path, capsys) -> None:
    bad = write_list(tmp_path / "lists", "\n# nothing here\n")
    assert_refused(["--train_list", str(bad)], f"List file {bad} holds no samples", earlier, tiny_demo, capsys)


def test_malformed_line_names_file_and_line(earlier, tiny_demo, tmp_path, capsys) -> None:
    bad = write_list(tmp_path / "lists", f"{tiny_demo}/images/train/00000.png 0\njust_a_path.png\n")
    assert_refused(["--train_list", str(bad)], f"Malformed line {bad}:2: 'just_a_path.png'",
                   earlier, tiny_demo, capsys)


def test_missing_image_names_path_and_list_line(earlier, tiny_demo, tmp_path, capsys) -> None:
    bad = write_list(tmp_path / "lists", f"{tiny_demo}/images/train/00000.png 0\ngone.png 1\n")
    assert_refused(["--train_list", str(bad), "--batch_size", "1"],
                   f"The image {bad.parent}/gone.png (listed at {bad}:2) does not exist",
                   earlier, tiny_demo, capsys)


def test_undecodable_image_names_path_and_list_line(earlier, tiny_demo, tmp_path, capsys) -> None:
    bad = write_list(tmp_path / "lists", f"{tiny_demo}/images/train/00000.png 0\nbroken.png 1\n")
    (bad.parent / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    message = f"The image {bad.parent}/broken.png (listed at {bad}:2) cannot be decoded"
    assert_refused(["--train_list", str(bad), "--batch_size", "1"], message, earlier, tiny_demo, capsys)


def test_label_outside_the_classes(earlier, tiny_demo, tmp_path, capsys) -> None:
    lines = f"{tiny_demo}/images/train/00000.png 0\n{tiny_demo}/images/train/00001.png 3\n"
    bad = write_list(tmp_path / "lists", lines, classes="circle\nsquare\n")
    assert_refused(["--train_list", str(bad)], f"Class id 3 at {bad}:2 is outside [0, 2)", earlier, tiny_demo, capsys)


def test_eval_label_the_model_cannot_predict(earlier, tiny_demo, tmp_path, capsys) -> None:
    """Found before the result folder exists, not by the evaluation loop."""
    bad = write_list(tmp_path / "lists", f"{tiny_demo}/images/val/00000.png 0\n{tiny_demo}/images/val/00001.png 7\n")
    before = snapshot(earlier)
    code, err = run_main(evaluate.main, ["--load_model_path", str(earlier), "--val_list", str(bad)], capsys)
    assert code == 2 and "Traceback" not in err
    assert f"--val_list {bad} has 8 classes (class id 7 at {bad}:2), but the model {earlier / 'best.pth'} has 5" in err
    assert snapshot(earlier) == before  # no result folder either


def test_validation_labels_outside_the_training_classes_are_refused_before_the_run_folder(earlier, tiny_demo,
                                                                                          tmp_path, capsys) -> None:
    samples = "".join(f"{tiny_demo}/images/train/{i:05d}.png {i % 5}\n" for i in range(32))
    train = write_list(tmp_path / "train", samples)
    val = write_list(tmp_path / "val", f"{tiny_demo}/images/val/00000.png 0\n{tiny_demo}/images/val/00001.png 7\n")
    assert_refused(["--train_list", str(train), "--val_list", str(val)],
                   f"--val_list {val} has 8 classes (class id 7 at {val}:2), but the training list {train} has 5",
                   earlier, tiny_demo, capsys)
    assert [p.name for p in earlier.parent.iterdir()] == [earlier.name]  # no new run folder


def test_lists_that_name_their_classes_differently_are_refused(earlier, tiny_demo, tmp_path, capsys) -> None:
    samples = "".join(f"{tiny_demo}/images/train/{i:05d}.png {i % 2}\n" for i in range(32))
    train = write_list(tmp_path / "train", samples, classes="cat\ndog\n")
    val = write_list(tmp_path / "val", f"{tiny_demo}/images/val/00000.png 0\n", classes="dog\ncat\n")
    assert_refused(["--train_list", str(train), "--val_list", str(val)],
                   f"--val_list {val} names class 0 'dog', but the training list {train} names it 'cat'",
                   earlier, tiny_demo, capsys)


def test_gpus_without_cuda(earlier, tiny_demo, capsys, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert_refused(["--gpus", "0"], "--gpus 0 asks for CUDA, but no CUDA GPU is available here",
                   earlier, tiny_demo, capsys)


def test_gpu_id_that_does_not_exist(earlier, tiny_demo, capsys, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert_refused(["--gpus", "0", "5"], "--gpus 5: no such GPU; ids 0 to 1 exist", earlier, tiny_demo, capsys)


def test_load_model_path_missing(earlier, tiny_demo, capsys) -> None:
    assert_refused(["--load_model_path", "no/such.pth"], "--load_model_path no/such.pth does not exist",
                   earlier, tiny_demo, capsys)


def test_load_model_path_that_is_not_a_checkpoint(earlier, tiny_demo, tmp_path, capsys) -> None:
    (tmp_path / "notes.pth").write_text("these are my notes")
    assert_refused(["--load_model_path", str(tmp_path / "notes.pth")],
                   f"{tmp_path / 'notes.pth'} is not a loadable PyTorch checkpoint", earlier, tiny_demo, capsys)


def test_load_model_path_that_does_not_fit_lists_the_keys(earlier, tiny_demo, capsys) -> None:
    err = assert_refused(["--load_model_path", str(earlier), "--model_type", "better"],
                         f"Checkpoint {earlier / 'best.pth'} does not fit the model", earlier, tiny_demo, capsys)
    assert "missing from the checkpoint: stem.0.weight" in err and "not in the model: features.0.0.weight" in err


def test_load_not_strict_reports_loaded_and_skipped(earlier, tiny_demo, tmp_path, caplog) -> None:
    state = BetterNet(num_classes=5).state_dict()
    state["classifier.weight"] = torch.zeros(9, 128)  # another head: skipped
    torch.save({"model": state}, tmp_path / "other_head.pth")
    argv = tiny_train_argv(tiny_demo, earlier.parent) + ["--model_type", "better", "--load_not_strict",
                                                         "--load_model_path", str(tmp_path / "other_head.pth")]
    assert train.main(argv) == 0
    assert "loaded 55 of the model's 56 tensors; shape mismatch: classifier.weight (9, 128) vs (5, 128)" in caplog.text


def test_resume_missing(earlier, tiny_demo, capsys) -> None:
    assert_refused(["--resume", "no/such/run"], "--resume no/such/run does not exist", earlier, tiny_demo, capsys)


def test_resume_from_something_that_is_not_a_run(earlier, tiny_demo, tmp_path, capsys) -> None:
    torch.save(BetterNet(num_classes=5).state_dict(), tmp_path / "weights_only.pth")
    assert_refused(["--resume", str(tmp_path / "weights_only.pth")],
                   "resume takes a run directory (or its last.pth), not weights_only.pth. To start a new run from "
                   f"those weights: --load_model_path {tmp_path / 'weights_only.pth'}", earlier, tiny_demo, capsys)


def test_resume_whose_weights_do_not_fit_its_model(earlier, tiny_demo, tmp_path, capsys) -> None:
    run_dir = Path(shutil.copytree(earlier, tmp_path / "copy"))
    checkpoint = torch.load(run_dir / "last.pth")
    checkpoint["model"] = BetterNet(num_classes=5).state_dict()
    checkpoint["args"].update(epochs=1, scheduler="none")  # a schedule that may be extended
    torch.save(checkpoint, run_dir / "last.pth")
    before = snapshot(run_dir)
    err = assert_refused(["--resume", str(run_dir), "--epochs", "4"],
                         f"Checkpoint {run_dir / 'last.pth'} does not fit the model", earlier, tiny_demo, capsys)
    assert "not in the model: stem.0.weight" in err
    assert snapshot(run_dir) == before  # refused before the run was reopened: nothing written


def test_a_failed_run_records_the_error(earlier, tiny_demo, tmp_path, capsys) -> None:
    bad = write_list(tmp_path / "lists", "gone.png 4\n")  # label 4: the five classes of the val list
    # Read from disk, the missing picture is found during the first epoch, with the run's folder open.
    assert_refused(["--train_list", str(bad), "--save_prefix", "doomed", "--batch_size", "1", "--no-in_memory"],
                   "does not exist", earlier, tiny_demo, capsys)
    (failed,) = earlier.parent.glob("base_doomed_*")
    status = json.loads((failed / "status.json").read_text())
    assert status["status"] == "failed" and "UserError: The image" in status["error"]


@pytest.mark.slow
def test_debug_shows_the_traceback(tiny_demo, tmp_path) -> None:
    bad = write_list(tmp_path / "lists", "gone.png 4\n")  # label 4: the five classes of the val list
    argv = tiny_train_argv(tiny_demo, tmp_path / "ckpt") + ["--train_list", str(bad), "--debug", "--batch_size", "1"]
    result = run_python(["train.py", *argv])
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "utils.errors.UserError: The image" in result.stderr
