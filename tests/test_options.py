"""options.py: defaults, checks with clear errors, and the run / result directories it creates."""

import json
import shlex
from argparse import ArgumentParser
from pathlib import Path

import pytest
from helpers import tiny_train_argv

import options


def test_defaults_train_on_the_demo_data(tmp_path: Path) -> None:
    args = options.prepare_train_args(["--checkpoints_dir", str(tmp_path)])
    assert (args.model_type, args.data_type) == ("base", "list")
    assert args.train_list == "data/demo/train.txt" and args.val_list == "data/demo/val.txt"
    assert args.epochs >= 1 and args.lr > 0 and args.monitor is None  # None: the task's main metric


def test_segmentation_data_defaults_to_the_demo_mask_lists(tmp_path: Path) -> None:
    args = options.prepare_train_args(["--checkpoints_dir", str(tmp_path), "--data_type", "seg_list"])
    assert args.train_list == "data/demo/seg_train.txt" and args.val_list == "data/demo/seg_val.txt"


@pytest.mark.parametrize("add", [options.parse_train_args, options.parse_test_args])
def test_every_flag_has_help(add) -> None:
    parser = add(ArgumentParser())
    for action in parser._actions:
        assert action.help, f"{action.option_strings} has no help text"


def test_prepare_train_args_creates_and_records_the_run_dir(tiny_demo: Path, tmp_path: Path) -> None:
    argv = tiny_train_argv(tiny_demo, tmp_path) + ["--save_prefix", "first try"]
    args = options.prepare_train_args(argv)
    run_dir = Path(args.run_dir)
    assert run_dir.parent == tmp_path
    assert run_dir.name.startswith("base_first try_")
    saved = json.loads((run_dir / "args.json").read_text())
    assert saved["save_prefix"] == "first try" and saved["run_dir"] == str(run_dir)
    assert "batch_size: 16\n" in (run_dir / "args.txt").read_text()
    command = (run_dir / "command.sh").read_text().splitlines()[-1]
    assert shlex.split(command) == ["python", "train.py", *argv]
    assert (run_dir / "log.txt").is_file()


def test_two_runs_in_the_same_second_get_two_directories(tiny_demo: Path, tmp_path: Path) -> None:
    first = options.prepare_train_args(tiny_train_argv(tiny_demo, tmp_path))
    second = options.prepare_train_args(tiny_train_argv(tiny_demo, tmp_path))
    assert first.run_dir != second.run_dir
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(d).name for d in (first.run_dir, second.run_dir))


@pytest.mark.parametrize("flags, message", [
    (["--batch_size", "0"], "--batch_size 0 must be 1 or more"),
    (["--epochs", "-3"], "--epochs -3 must be 1 or more"),
    (["--lr", "0"], "--lr 0.0 must be a positive number"),
    (["--num_workers", "-1"], "--num_workers -1 is negative"),
    (["--momentum", "1.5"], "--momentum 1.5 must be in [0, 1)"),
    (["--monitor", "accuracy"], "--monitor 'accuracy' must name a curve"),
    (["--train_list", "nowhere/train.txt"], "--train_list nowhere/train.txt does not exist"),
    (["--load_model_path", "nowhere.pth"], "--load_model_path nowhere.pth does not exist"),
    (["--model_type", "transformer"], "invalid choice: 'transformer'"),
    (["--data_type", "imagenet"], "invalid choice: 'imagenet'"),
    (["--optimizer", "lion"], "invalid choice: 'lion'"),
])
def test_bad_values_exit_2_naming_the_value_and_write_nothing(
        flags: list[str], message: str, tiny_demo: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        options.prepare_train_args(tiny_train_argv(tiny_demo, tmp_path) + flags)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_gpus_without_cuda_is_a_clear_error(tiny_demo: Path, tmp_path: Path, capsys) -> None:
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit):
        options.prepare_train_args(tiny_train_argv(tiny_demo, tmp_path) + ["--gpus", "0"])
    assert "no CUDA GPU is available" in capsys.readouterr().err


def test_eval_takes_model_and_data_flags_from_the_checkpoint(trained_run: Path, tiny_demo: Path) -> None:
    args = options.prepare_test_args(["--load_model_path", str(trained_run), "--num_workers", "0"])
    assert args.load_model_path == str(trained_run / "best.pth")
    assert args.model_type == "base" and args.val_list == str(tiny_demo / "val.txt")
    result_dir = Path(args.result_dir)
    assert result_dir.parent == trained_run / "best" and result_dir.name.startswith("val_eval")
    assert json.loads((result_dir / "args.json").read_text())["model_type"] == "base"


def test_eval_without_a_path_takes_the_newest_run(trained_run: Path) -> None:
    args = options.prepare_test_args(["--checkpoints_dir", str(trained_run.parent)])
    assert args.load_model_path == str(trained_run / "best.pth")


def test_eval_with_no_runs_at_all_is_a_clear_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        options.prepare_test_args(["--checkpoints_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "No --load_model_path given and no run directory" in capsys.readouterr().err
