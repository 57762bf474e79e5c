"""--profile N: a trace Perfetto opens and the top operators, in the run folder; the weights
are bit for bit those of the same run unprofiled; nothing is profiled without the flag, nor
again on --resume unless asked."""

import json
from pathlib import Path

import pytest
import torch
from helpers import tiny_train_argv

import train

pytestmark = pytest.mark.slow


def run_of(checkpoints: Path) -> Path:
    (run_dir,) = checkpoints.iterdir()
    return run_dir


def short_argv(demo: Path, checkpoints: Path, epochs: int = 2) -> list[str]:
    return tiny_train_argv(demo, checkpoints, epochs=epochs) + ["--batch_size", "8"]  # 7 steps an epoch


def test_a_profiled_run_writes_a_trace_and_a_table_and_trains_the_same(tiny_demo: Path, tmp_path: Path) -> None:
    assert train.main(short_argv(tiny_demo, tmp_path / "plain")) == 0
    assert train.main(short_argv(tiny_demo, tmp_path / "profiled") + ["--profile", "3"]) == 0
    plain, profiled = run_of(tmp_path / "plain"), run_of(tmp_path / "profiled")
    assert not (plain / "profile").exists()  # nothing profiled without the flag
    assert sorted(p.name for p in (profiled / "profile").iterdir()) == ["ops_steps_3-5.txt", "trace_steps_3-5.json"]
    trace = json.loads((profiled / "profile" / "trace_steps_3-5.json").read_text())
    names = {event.get("name", "") for event in trace["traceEvents"]}
    assert {"ProfilerStep#3", "ProfilerStep#4", "ProfilerStep#5"} <= names  # the three training steps
    assert any(name.startswith("aten::convolution") for name in names)
    table = (profiled / "profile" / "ops_steps_3-5.txt").read_text()
    assert "global steps 3 to 5" in table and "aten::" in table and "Self CPU" in table
    ours, theirs = torch.load(profiled / "last.pth"), torch.load(plain / "last.pth")
    for name, tensor in theirs["model"].items():
        assert torch.equal(ours["model"][name], tensor), name
    assert ours["optimizer"]["state"].keys() == theirs["optimizer"]["state"].keys()
    assert (profiled / "metrics.csv").read_text() == (plain / "metrics.csv").read_text()


def test_a_window_longer_than_the_epoch_ends_with_it(tiny_demo: Path, tmp_path: Path) -> None:
    assert train.main(short_argv(tiny_demo, tmp_path, epochs=2) + ["--profile", "50"]) == 0
    names = sorted(p.name for p in (run_of(tmp_path) / "profile").iterdir())
    assert names == ["ops_steps_3-7.txt", "trace_steps_3-7.json"]  # epoch 1's steps after the warm-up, not validation


def test_resume_profiles_only_when_asked_again(tiny_demo: Path, tmp_path: Path) -> None:
    argv = short_argv(tiny_demo, tmp_path, epochs=1) + ["--scheduler", "none", "--profile", "2"]
    assert train.main(argv) == 0
    run_dir = run_of(tmp_path)
    assert train.main(["--resume", str(run_dir), "--epochs", "2", "--num_workers", "0"]) == 0
    assert sorted(p.name for p in (run_dir / "profile").glob("trace_*")) == ["trace_steps_3-4.json"]
    assert json.loads((run_dir / "args.json").read_text())["profile"] == 0
    assert train.main(["--resume", str(run_dir), "--epochs", "3", "--num_workers", "0", "--profile", "2"]) == 0
    # this process's warm-up is global steps 15 and 16 (two epochs of 7 were done)
    assert sorted(p.name for p in (run_dir / "profile").glob("trace_*")) == ["trace_steps_17-18.json",
                                                                             "trace_steps_3-4.json"]
