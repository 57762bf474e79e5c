"""options.py: defaults, checks with clear errors, flags from constructor signatures, --config.
It parses and checks only: nothing is written (the run folder is utils/run_dir.py's)."""

import json
import os
from argparse import BooleanOptionalAction
from pathlib import Path

import pytest
from helpers import tiny_train_argv

import options
from model import model_entry


def parse_train(argv: list[str]):
    args, _ = options.parse_train_args(argv)
    return args


def test_defaults_train_on_the_demo_data(tmp_path: Path) -> None:
    args = parse_train(["--checkpoints_dir", str(tmp_path)])
    assert (args.model_type, args.data_type) == ("base", "list")
    assert args.train_list == "data/demo/train.txt" and args.val_list == "data/demo/val.txt"
    assert args.epochs >= 1 and args.lr > 0 and args.monitor is None  # None: the task's main metric
    assert list(tmp_path.iterdir()) == []  # parsing writes nothing


def test_default_augmentation_is_off_for_any_image_domain(tmp_path: Path) -> None:
    args = parse_train(["--checkpoints_dir", str(tmp_path)])
    assert (args.hflip, args.vflip, args.crop_padding, args.aug_policy, args.random_erasing) == (0, 0, 0, "none", 0)
    assert (args.mixup, args.cutmix) == (0, 0)
    assert args.loss is None and args.label_smoothing is None  # the task's loss, with its own defaults


def test_segmentation_data_defaults_to_the_demo_mask_lists(tmp_path: Path) -> None:
    args = parse_train(["--checkpoints_dir", str(tmp_path), "--data_type", "seg_list"])
    assert args.train_list == "data/demo/seg_train.txt" and args.val_list == "data/demo/seg_val.txt"


@pytest.mark.parametrize("parser", [options.build_parser("train.py"), options.build_parser("eval.py"),
                                    options.build_parser("predict.py"),
                                    options.build_parser("train.py", model_type="unet", data_type="mnist",
                                                         optimizer="sgd", scheduler="step")])
def test_every_flag_has_help(parser) -> None:
    for action in parser._actions:
        assert action.help, f"{action.option_strings} has no help text"


@pytest.mark.parametrize("flags, message", [
    (["--batch_size", "0"], "--batch_size 0 must be 1 or more"),
    (["--epochs", "-3"], "--epochs -3 must be 1 or more"),
    (["--lr", "0"], "--lr 0.0 must be a positive number"),
    (["--lr", "inf"], "--lr inf must be a positive number"),
    (["--num_workers", "-1"], "--num_workers -1 must be 0 or more"),
    (["--momentum", "1.5"], "--optimizer adamw cannot be built with momentum=1.5: momentum "
                            "must be in [0, 1), not 1.5"),
    (["--label_smoothing", "1"], "--loss cross_entropy cannot be built with label_smoothing=1.0: label_smoothing "
                                 "must be in [0, 1), not 1.0"),
    (["--loss", "dice", "--label_smoothing", "0.1"], "--label_smoothing 0.1 is a flag of --loss cross_entropy / "
                                                     "ce_dice, but this run's loss is --loss dice"),
    (["--ema_decay", "nan"], "--ema_decay nan must be in [0, 1)"),
    (["--hflip", "2"], "--hflip 2.0 is a probability: it must be in [0, 1]"),
    (["--warmup_epochs", "-1"], "--warmup_epochs -1.0 must be 0 or more"),
    (["--patience", "-2"], "--patience -2 must be 0 or more"),
    (["--num_workers", "100000"], "--num_workers 100000 is more worker processes than this machine can run"),
    (["--min_lr", "1"], "--scheduler cosine cannot be built with min_lr=1.0: min_lr must be 0 or more and below "
                        "--lr 0.003"),
    (["--min_lr", "1e-5", "--scheduler", "step"], "unrecognized arguments: --min_lr 1e-5 (--min_lr is a flag of "
                                                  "--scheduler cosine: add that to the command)"),
    (["--lr_rate", "0.1"], "unrecognized arguments: --lr_rate 0.1 (did you mean --lr"),
    (["--monitor", "accuracy"], "--monitor 'accuracy' must name a curve"),
    (["--monitor", "val_ema/acc"], "--monitor val_ema/acc needs the averaged weights: add --ema_decay"),
    (["--folds", "3", "--fold", "3"], "--folds 3 --fold 3: use --folds 2 or more and --fold from 0"),
    (["--save_prefix", "../../x"], "--save_prefix '../../x' is not a folder name"),
    (["--save_prefix", "a/b"], "--save_prefix 'a/b' is not a folder name"),
    (["--exp", ".."], "--exp '..' is not a folder name"),
    (["--train_list", "nowhere/train.txt"], "--train_list nowhere/train.txt does not exist"),
    (["--load_model_path", "nowhere.pth"], "--load_model_path nowhere.pth does not exist"),
    (["--model_type", "transformer"], "invalid choice: 'transformer'"),
    (["--data_type", "imagenet"], "invalid choice: 'imagenet'"),
    (["--optimizer", "lion"], "invalid choice: 'lion'"),
    (["--aug_policy", "fancy"], "invalid choice: 'fancy'"),
    (["--width", "wide"], "argument --width: invalid int value: 'wide'"),
])
def test_bad_values_exit_2_naming_the_value_and_write_nothing(
        flags: list[str], message: str, tiny_demo: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_train(tiny_train_argv(tiny_demo, tmp_path) + flags)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "usage:" not in err and err.count("\n") == 2  # the message and a pointer to -h, no usage block
    assert list(tmp_path.iterdir()) == []


def test_gpus_without_cuda_is_a_clear_error(tiny_demo: Path, tmp_path: Path, capsys) -> None:
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit):
        parse_train(tiny_train_argv(tiny_demo, tmp_path) + ["--gpus", "0"])
    assert "no CUDA GPU is available" in capsys.readouterr().err


# --- flags from constructor signatures ------------------------------------------------------

def test_a_models_own_parameters_are_flags_in_its_group(capsys) -> None:
    with pytest.raises(SystemExit):
        options.build_parser("train.py", model_type="unet", data_type="seg_list").parse_args(["-h"])
    help_text = capsys.readouterr().out
    unet_group = help_text.split("model unet:")[1].split("data set seg_list:")[0]
    assert "--width WIDTH" in unet_group and "default: 16" in unet_group
    data_group = help_text.split("data set seg_list:")[1]
    assert "--image_size IMAGE_SIZE" in data_group and "--in_memory, --no-in_memory" in data_group
    assert "default: unset, build_seg_list_dataset" in " ".join(data_group.split())  # bool | None: the code chooses


def test_model_flags_follow_the_chosen_model(tmp_path: Path) -> None:
    assert parse_train(["--model_type", "unet", "--data_type", "seg_list"]).width == 16
    assert parse_train(["--model_type", "base", "--width", "8"]).width == 8
    assert not hasattr(parse_train(["--model_type", "resnet18"]), "width")


def test_data_flags_follow_the_chosen_data_set() -> None:
    args = parse_train(["--data_type", "mnist", "--data_root", "somewhere", "--download"])
    assert (args.data_root, args.download) == ("somewhere", True) and not hasattr(args, "image_size")


def test_a_parameter_named_like_a_flag_is_a_start_up_error_naming_both(monkeypatch, capsys) -> None:
    from torch import nn

    class Clash(nn.Module):
        def __init__(self, num_classes: int, in_channels: int = 3, lr: float = 0.1) -> None:
            super().__init__()

    monkeypatch.setitem(model_entry.MODELS, "clash", Clash)
    monkeypatch.setitem(options.MODELS, "clash", Clash)
    with pytest.raises(SystemExit) as exit_info:
        options.parse_train_args(["--model_type", "clash"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "model clash: the parameter 'lr' of" in err and "has the name of the flag --lr (training)" in err


def test_typed_parameters_become_typed_flags() -> None:
    from typing import Literal

    from torch import nn

    class Typed(nn.Module):
        def __init__(self, num_classes: int, in_channels: int = 3, dropout: float = 0.1, norm: bool = True,
                     kind: Literal["a", "b"] = "a", widths: tuple[int, ...] = (8, 16), name: str | None = None):
            super().__init__()

    parser = options.Parser("t.py")
    options.add_signature_flags(parser, "model typed", Typed, model_entry.SUPPLIED, {})
    args = parser.parse_args(["--dropout", "0.5", "--no-norm", "--kind", "b", "--widths", "1", "2", "3"])
    assert (args.dropout, args.norm, args.kind, args.widths, args.name) == (0.5, False, "b", [1, 2, 3], None)
    actions = {a.dest: a for a in parser._actions}
    assert isinstance(actions["norm"], BooleanOptionalAction) and actions["kind"].choices == ["a", "b"]


# --- --config and eval's defaults --------------------------------------------------------------

def test_config_takes_every_flag_and_the_command_line_wins(trained_run: Path) -> None:
    args = parse_train(["--config", str(trained_run), "--lr", "0.01"])
    saved = json.loads((trained_run / "args.json").read_text())
    assert args.lr == 0.01 and args.epochs == saved["epochs"] == 2 and args.train_list == saved["train_list"]
    assert {name: value for name, value in vars(args).items() if name in saved and name not in ("lr", "config")} == \
        {name: value for name, value in saved.items() if name not in ("lr", "config")}  # None stays None
    assert saved["in_memory"] is None  # the default, by the set's size: --config keeps it so


def test_config_with_unknown_or_invalid_keys_names_them(trained_run: Path, tmp_path: Path, capsys) -> None:
    saved = json.loads((trained_run / "args.json").read_text())
    (tmp_path / "unknown.json").write_text(json.dumps({**saved, "lrr": 0.1, "speed": 3}))
    (tmp_path / "invalid.json").write_text(json.dumps({**saved, "lr": "fast"}))
    with pytest.raises(SystemExit):
        parse_train(["--config", str(tmp_path / "unknown.json")])
    assert "unknown flag(s) lrr, speed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_train(["--config", str(tmp_path / "invalid.json")])
    err = capsys.readouterr().err
    assert f"--config {tmp_path / 'invalid.json'}: argument --lr: invalid float value: 'fast'" in err


@pytest.mark.parametrize("value, message", [
    ("false", 'deterministic is "false": --deterministic is on or off, so give true or false'),
    ("true", 'deterministic is "true": --deterministic is on or off'),
    (0, "deterministic is 0: --deterministic is on or off"),
])
def test_a_config_on_off_flag_takes_only_true_or_false(value, message: str, trained_run: Path, tmp_path: Path,
                                                       capsys) -> None:
    saved = json.loads((trained_run / "args.json").read_text())
    (tmp_path / "args.json").write_text(json.dumps({**saved, "deterministic": value}))
    with pytest.raises(SystemExit):
        parse_train(["--config", str(tmp_path / "args.json")])
    assert message in capsys.readouterr().err
    (tmp_path / "args.json").write_text(json.dumps({**saved, "deterministic": False}))
    assert parse_train(["--config", str(tmp_path / "args.json")]).deterministic is False


@pytest.mark.parametrize("make, message", [
    (lambda path: path.write_text("[" * 100_000), "is not readable JSON (JSON nested too deeply)"),
    (lambda path: os.mkfifo(path), "is not readable JSON"),  # read, a FIFO would block for ever
    (lambda path: path.write_text(json.dumps({"lr": [0.1, 0.2]})), "lr is [0.1, 0.2]: --lr takes one value"),
    (lambda path: path.write_text(json.dumps({"save_prefix": {"a": 1}})), 'save_prefix is {"a": 1}: --save_prefix'),
])
def test_a_hostile_config_file_is_one_message(make, message: str, tmp_path: Path, capsys) -> None:
    make(tmp_path / "args.json")
    with pytest.raises(SystemExit) as exit_info:
        parse_train(["--config", str(tmp_path / "args.json"), "--checkpoints_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err


def test_a_config_value_that_starts_with_a_dash_stays_a_value(trained_run: Path, tmp_path: Path) -> None:
    saved = json.loads((trained_run / "args.json").read_text())
    (tmp_path / "args.json").write_text(json.dumps({**saved, "save_prefix": "-x"}))
    assert parse_train(["--config", str(tmp_path / "args.json")]).save_prefix == "-x"


def test_eval_takes_model_and_data_flags_from_the_checkpoint(trained_run: Path, tiny_demo: Path) -> None:
    args, checkpoint = options.parse_eval_args(["--load_model_path", str(trained_run), "--num_workers", "0"])
    assert args.load_model_path == str(trained_run / "best.pth") and checkpoint["epoch"] >= 1
    assert args.model_type == "base" and args.val_list == str(tiny_demo / "val.txt") and args.image_size == 32
    assert args.save_prefix == "eval" and args.batch_size == 64  # not inherited: how to run, not what


def test_eval_without_a_path_takes_the_newest_run(trained_run: Path) -> None:
    args, _ = options.parse_eval_args(["--checkpoints_dir", str(trained_run.parent)])
    assert args.load_model_path == str(trained_run / "best.pth")


def test_eval_without_a_path_takes_the_newest_run_of_the_asked_data_type(trained_run: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        options.parse_eval_args(["--checkpoints_dir", str(trained_run.parent), "--data_type", "seg_list"])
    err = capsys.readouterr().err
    assert "no run under" in err and "was trained with --data_type seg_list" in err and trained_run.name in err


def test_eval_with_no_runs_at_all_is_a_clear_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        options.parse_eval_args(["--checkpoints_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "No --load_model_path given and no run directory" in capsys.readouterr().err


@pytest.mark.parametrize("parse", [options.parse_eval_args, options.parse_predict_args])
def test_help_needs_no_checkpoint(parse, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(["--checkpoints_dir", str(tmp_path), "-h"])
    assert exit_info.value.code == 0 and "--load_model_path" in capsys.readouterr().out
