"""Fine-tuning, offline: --model_type torchvision with --pretrained weights from a torch hub
cache the tests write themselves (never a download), the weights' own preprocessing,
--freeze_epochs, --backbone_lr_scale / --layer_decay parameter groups with a curve each,
and --resume without the initial weights."""

import csv
import os
from pathlib import Path

import pytest
import torch
from helpers import ONE_TORCHRUN_AT_A_TIME, REPO, run_python, tiny_train_argv
from torchvision.models import get_model, get_model_weights

import eval as evaluate
import options
import train
from model.base import BaseNet
from model.finetune import backbone_units, head_names, parameter_groups
from model.torchvision_net import TorchvisionNet
from utils.errors import UserError

ARCH = "mobilenet_v3_small"  # the smallest torchvision classifier with BatchNorm and a Linear head


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TORCH_HOME holding ARCH's DEFAULT weights: a random state_dict with 1000 classes,
    saved where torchvision's own download would put it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    path = tmp_path / "torch_home" / "hub" / "checkpoints" / Path(get_model_weights(ARCH).DEFAULT.url).name
    path.parent.mkdir(parents=True)
    torch.manual_seed(1)
    torch.save(get_model(ARCH, weights=None).state_dict(), path)
    return path


def test_pretrained_weights_load_into_the_backbone_and_the_head_is_sized_for_the_data(hub: Path) -> None:
    model = TorchvisionNet(num_classes=5, arch=ARCH, pretrained="DEFAULT")
    message = model.load_pretrained()
    saved = torch.load(hub)
    state = model.net.state_dict()
    assert torch.equal(state["features.0.0.weight"], saved["features.0.0.weight"])
    assert state["classifier.3.weight"].shape == (5, 1024)  # the head: the data's 5 classes, a new start
    assert "a new start for classifier.3.bias, classifier.3.weight" in message


def test_missing_weights_say_where_to_put_the_file_and_never_download(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    model = TorchvisionNet(num_classes=5, arch=ARCH, pretrained="DEFAULT")
    expected = tmp_path / "empty" / "hub" / "checkpoints" / Path(get_model_weights(ARCH).DEFAULT.url).name
    with pytest.raises(UserError, match=f"Put the file at {expected} \\(download it elsewhere from https://"):
        model.load_pretrained()
    with pytest.raises(UserError, match="is neither a weights name of --arch"):
        TorchvisionNet(num_classes=5, arch=ARCH, pretrained="no/such/file.pth").load_pretrained()


def test_a_state_dict_file_works_too_and_one_channel_gets_the_filters_mean(hub: Path, tmp_path: Path) -> None:
    model = TorchvisionNet(num_classes=3, in_channels=1, arch=ARCH, pretrained=str(hub))
    model.load_pretrained()
    first = torch.load(hub)["features.0.0.weight"]
    assert torch.allclose(model.net.state_dict()["features.0.0.weight"], first.mean(dim=1, keepdim=True))


def test_the_weights_preprocessing_is_the_default_unless_flags_say_otherwise(hub: Path) -> None:
    args, _ = options.parse_train_args(["--model_type", "torchvision", "--arch", ARCH, "--pretrained", "DEFAULT"])
    assert (args.mean, args.std, args.image_size) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 224)
    args, _ = options.parse_train_args(["--model_type", "torchvision", "--arch", ARCH, "--pretrained", "DEFAULT",
                                        "--image_size", "64", "--mean", "0.5"])
    assert (args.mean, args.image_size) == ([0.5], 64)
    args, _ = options.parse_train_args(["--model_type", "torchvision", "--arch", ARCH])  # no weights: no defaults
    assert (args.mean, args.image_size) == (None, 32)


def test_an_unknown_architecture_is_one_message() -> None:
    with pytest.raises(ValueError, match="--arch 'resnet_2000' is not a torchvision classification model"):
        TorchvisionNet(num_classes=3, arch="resnet_2000")


def test_heads_and_units_of_several_architectures() -> None:
    for model, head in ((BaseNet(5), {"classifier.weight", "classifier.bias"}),
                        (TorchvisionNet(5, arch="resnet18"), {"net.fc.weight", "net.fc.bias"})):
        assert head_names(model) == head
        units = backbone_units(model)
        assert len(units) > 2 and not head & {name for unit in units for name in unit}
        assert sum(map(len, units)) + len(head) == len(list(model.parameters()))


def test_layer_decay_gives_the_units_nearest_the_input_the_smallest_rates() -> None:
    model = TorchvisionNet(5, arch="resnet18")
    groups = parameter_groups(model, lr=0.1, backbone_lr_scale=0.5, layer_decay=0.8)
    rates = [group["lr"] for group in groups]
    assert rates[-1] == 0.1 and groups[-1]["name"] == "head"
    assert rates[:-1] == sorted(rates[:-1]) and rates[-2] == pytest.approx(0.1 * 0.5 * 0.8)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert len(parameter_groups(model, 0.1)) == 1  # both factors 1: one group


def run_argv(demo: Path, checkpoints: Path, epochs: int, *extra: str) -> list[str]:
    return tiny_train_argv(demo, checkpoints, epochs) + ["--model_type", "torchvision", "--arch", ARCH,
                                                        "--image_size", "32", *extra]


@pytest.mark.slow
def test_frozen_epochs_train_the_head_alone_then_everything(hub: Path, tiny_demo: Path, tmp_path: Path) -> None:
    argv = run_argv(tiny_demo, tmp_path / "runs", 2, "--pretrained", "DEFAULT", "--freeze_epochs", "1",
                    "--save_freq", "1")
    assert train.main(argv) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    saved = {name.removeprefix("net."): value for name, value in torch.load(hub).items()}
    first, second = (torch.load(run_dir / f"epoch_{n}.pth")["model"] for n in (1, 2))
    first = {name.removeprefix("net."): value for name, value in first.items()}
    second = {name.removeprefix("net."): value for name, value in second.items()}
    assert torch.equal(first["features.0.0.weight"], saved["features.0.0.weight"])  # frozen in epoch 1
    assert torch.equal(first["features.0.1.running_mean"], saved["features.0.1.running_mean"])  # BatchNorm in eval
    assert not torch.equal(first["classifier.3.weight"], second["classifier.3.weight"])  # the head trains
    assert not torch.equal(second["features.0.0.weight"], saved["features.0.0.weight"])  # epoch 2: all of it
    assert "Backbone frozen from epoch 1" in (run_dir / "log.txt").read_text()


@pytest.mark.slow
def test_a_fine_tune_resumes_after_its_initial_weights_are_gone(hub: Path, tiny_demo: Path, tmp_path: Path) -> None:
    argv = run_argv(tiny_demo, tmp_path / "runs", 1, "--pretrained", "DEFAULT", "--backbone_lr_scale", "0.1",
                    "--scheduler", "none")
    assert train.main(argv) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    with open(run_dir / "metrics.csv") as file:
        assert {"train/lr/head", "train/lr"} <= set(next(csv.DictReader(file)))  # a curve per group
    hub.unlink()  # the weights file moved away
    assert train.main(["--resume", str(run_dir), "--epochs", "2"]) == 0  # its own last.pth is all it needs
    assert torch.load(run_dir / "last.pth")["epoch"] == 2
    assert evaluate.main(["--load_model_path", str(run_dir), "--num_workers", "0"]) == 0
    assert train.main(run_argv(tiny_demo, tmp_path / "new", 1, "--pretrained", "DEFAULT")) == 2  # a new run: refused


@pytest.mark.slow
@ONE_TORCHRUN_AT_A_TIME
def test_freezing_under_torchrun_keeps_the_processes_equal(tiny_demo: Path, tmp_path: Path) -> None:
    """DDP shares the gradients of the parameters that trained when it was made: after the
    backbone thaws, it is made anew. Validation (each process its share, with its own weights)
    then equals a single-process evaluation of rank 0's weights."""
    argv = tiny_train_argv(tiny_demo, tmp_path, epochs=2) + ["--freeze_epochs", "1", "--layer_decay", "0.5"]
    result = run_python(["-m", "torch.distributed.run", "--nproc_per_node=2", "train.py", *argv], cwd=REPO,
                        env={"OMP_NUM_THREADS": "1", "TORCH_HOME": os.environ.get("TORCH_HOME", "")})
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    with open(run_dir / "metrics.csv") as file:
        val_acc = float(list(csv.DictReader(file))[-1]["val/acc"])
    assert evaluate.main(["--load_model_path", str(run_dir / "last.pth"), "--num_workers", "0"]) == 0
    (result_dir,) = (run_dir / "last").iterdir()
    lines = dict(line.split(": ") for line in (result_dir / "result.txt").read_text().splitlines())
    assert float(lines["acc"]) == pytest.approx(val_acc, abs=5e-7)
