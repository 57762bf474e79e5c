"""utils/torch_utils.py: loading weights (strict and matching), checkpoints, seeding."""

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from utils.errors import UserError
from utils.torch_utils import load_weights, read_checkpoint, set_seed


def net(num_classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, num_classes))


def test_loading_not_strictly_loads_matching_tensors_and_reports_the_rest(tmp_path: Path, caplog) -> None:
    source = net(num_classes=5)
    torch.save({"model": source.state_dict()}, tmp_path / "ckpt.pth")
    target = net(num_classes=3)
    report = load_weights(target, tmp_path / "ckpt.pth", strict=False)
    assert report.loaded == ["0.weight", "0.bias"]
    assert report.mismatched == ["2.weight (5, 8) vs (3, 8)", "2.bias (5,) vs (3,)"]
    assert torch.equal(target[0].weight, source[0].weight)
    assert "loaded 2 of the model's 4 tensors" in report.describe()
    assert "Only" not in caplog.text  # half of the tensors: no warning


def test_loading_not_strictly_warns_below_half_and_refuses_none(tmp_path: Path, caplog) -> None:
    other = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    torch.save(other.state_dict(), tmp_path / "other.pth")
    target = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 4))
    load_weights(target, tmp_path / "other.pth", strict=False)  # 2 of 6 tensors fit
    assert "Only 2 of the model's 6 tensors came from" in caplog.text
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "unrelated.pth")
    with pytest.raises(UserError, match="has no tensor that fits the model"):
        load_weights(target, tmp_path / "unrelated.pth", strict=False)


def test_strict_loading_lists_what_does_not_fit(tmp_path: Path) -> None:
    state = net(num_classes=5).state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["0.bias"]
    torch.save(state, tmp_path / "plain_state_dict.pth")
    with pytest.raises(UserError) as error:
        load_weights(net(num_classes=3), tmp_path / "plain_state_dict.pth", strict=True)
    message = str(error.value)
    assert "missing from the checkpoint: 0.bias" in message
    assert "not in the model: extra.weight" in message
    assert "shape mismatch: 2.weight (5, 8) vs (3, 8)" in message
    assert "--load_not_strict" in message


def test_dataparallel_prefixes_are_removed(tmp_path: Path) -> None:
    source = net()
    torch.save({"model": nn.DataParallel(source).state_dict()}, tmp_path / "dp.pth")
    target = net()
    load_weights(target, tmp_path / "dp.pth", strict=True)
    assert torch.equal(target[2].weight, source[2].weight)


def truncated(path: Path) -> None:
    torch.save({"model": net().state_dict()}, path)
    path.write_bytes(path.read_bytes()[:200])


@pytest.mark.parametrize("make, message", [
    (None, "does not exist"),
    (lambda path: path.write_bytes(b""), "is empty (0 bytes), not a checkpoint"),
    (lambda path: path.write_text("these are my notes"), "it is not the zip archive torch.save writes"),
    (truncated, "it is not the zip archive torch.save writes (a text file, another format, or a copy cut short?)"),
])
@pytest.mark.parametrize("mmap", [False, True])
def test_unreadable_checkpoints_name_the_file_and_why(tmp_path: Path, make, message: str, mmap: bool) -> None:
    path = tmp_path / "x.pth"
    if make is not None:
        make(path)
    with pytest.raises(UserError, match=re.escape(message)) as error:
        read_checkpoint(path, mmap=mmap)
    assert str(path) in str(error.value) and "Errno" not in str(error.value) and "mmap" not in str(error.value)


def test_a_pickled_object_is_refused(tmp_path: Path) -> None:
    torch.save({"model": {}, "args": object()}, tmp_path / "pickled.pth")
    with pytest.raises(UserError, match="is not a loadable PyTorch checkpoint"):
        read_checkpoint(tmp_path / "pickled.pth")


def test_set_seed_repeats_torch_and_python_draws() -> None:
    import random
    set_seed(3)
    first = (torch.rand(3), random.random())
    set_seed(3)
    assert torch.equal(torch.rand(3), first[0]) and random.random() == first[1]
