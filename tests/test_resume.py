"""--resume: a run killed (SIGKILL) or stopped (SIGTERM) and resumed ends bitwise equal to an
uninterrupted one with the same seed, with the same metrics.csv; conflicting flags are refused.

The runs are real `python train.py` processes on a 192-image demo set (12 steps an epoch);
the test watches last.pth and stops the process at a known point (see helpers.start_and_stop:
events, not sleeps, so a busy machine cannot move the point).
"""

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO, run_python, start_and_stop, start_training, tiny_train_argv
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train
from data.demo_data import generate_demo_data
from utils.stop_signals import StopRequested

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume") / "demo"
    generate_demo_data(root, num_train=192, num_val=32)
    return root


# The week-one recipe, everything that has state of its own: augmentation, MixUp/CutMix, a
# warmup into a per-step schedule, EMA weights, top-k checkpoints and early stopping.
RECIPE = ["--crop_padding", "4", "--hflip", "0.5", "--mixup", "0.2", "--cutmix", "1.0", "--warmup_epochs", "1",
          "--ema_decay", "0.9", "--save_top_k", "2", "--patience", "5", "--label_smoothing", "0.1"]


def flags(demo: Path, checkpoints: Path, workers: int = 0, recipe: bool = False) -> list[str]:
    return ["--train_list", str(demo / "train.txt"), "--val_list", str(demo / "val.txt"),
            "--checkpoints_dir", str(checkpoints), "--epochs", "3", "--batch_size", "16",
            "--num_workers", str(workers), "--print_freq", "100", "--save_freq", "100", *(RECIPE if recipe else [])]


def only_run(checkpoints: Path) -> Path:
    (run_dir,) = checkpoints.iterdir()
    return run_dir


@pytest.fixture(scope="module")
def uninterrupted(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    checkpoints = tmp_path_factory.mktemp("uninterrupted")
    result = run_python(["train.py", *flags(demo, checkpoints)])
    assert result.returncode == 0, result.stderr[-2000:]
    return only_run(checkpoints)


@pytest.fixture(scope="module")
def uninterrupted_recipe(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    checkpoints = tmp_path_factory.mktemp("uninterrupted_recipe")
    result = run_python(["train.py", *flags(demo, checkpoints, recipe=True)])
    assert result.returncode == 0, result.stderr[-2000:]
    return only_run(checkpoints)


def assert_same_run(resumed: Path, reference: Path) -> None:
    ours, theirs = torch.load(resumed / "last.pth"), torch.load(reference / "last.pth")
    assert ours["epoch"] == theirs["epoch"] == 3 and ours["global_step"] == theirs["global_step"] == 36
    for name, tensor in theirs["model"].items():
        assert torch.equal(ours["model"][name], tensor), name
    for name, tensor in (theirs["ema"] or {}).get("model", {}).items():
        assert torch.equal(ours["ema"]["model"][name], tensor), f"ema {name}"
    assert ours["checkpoints"] == theirs["checkpoints"] and ours["scheduler"] == theirs["scheduler"]
    assert (resumed / "metrics.csv").read_text() == (reference / "metrics.csv").read_text()
    assert sorted(p.name for p in resumed.glob("top_epoch_*")) == sorted(p.name for p in reference.glob("top_epoch_*"))


def test_sigkill_in_epoch_2_then_resume_from_the_epoch_1_checkpoint(demo, uninterrupted, tmp_path) -> None:
    process = start_and_stop(flags(demo, tmp_path), tmp_path, lambda c: c["epoch"] == 1, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    run_dir = only_run(tmp_path)
    assert json.loads((run_dir / "status.json").read_text())["status"] == "running"  # killed: no chance to say
    result = run_python(["train.py", "--resume", str(run_dir)])
    assert result.returncode == 0, result.stderr[-2000:]
    assert_same_run(run_dir, uninterrupted)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "finished" and status["resumes"][0]["from"] == str(run_dir / "last.pth")


@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_mid_epoch_then_resume_from_a_step_checkpoint(demo, uninterrupted, tmp_path, workers) -> None:
    argv = flags(demo, tmp_path, workers) + ["--save_every_steps", "3"]
    in_epoch_2 = lambda c: c["epoch"] == 1 and 3 <= c["step_in_epoch"] <= 8  # noqa: E731
    start_and_stop(argv, tmp_path, in_epoch_2, signal.SIGKILL)
    run_dir = only_run(tmp_path)
    assert torch.load(run_dir / "last.pth")["step_in_epoch"] in range(3, 9)
    result = run_python(["train.py", "--resume", str(run_dir)])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Resumed at epoch 2, step" in result.stdout
    assert_same_run(run_dir, uninterrupted)


def test_the_recipe_killed_mid_epoch_and_resumed_ends_bit_identical(demo, uninterrupted_recipe, tmp_path) -> None:
    argv = flags(demo, tmp_path, workers=2, recipe=True) + ["--save_every_steps", "3"]
    in_epoch_2 = lambda c: c["epoch"] == 1 and 3 <= c["step_in_epoch"] <= 8  # noqa: E731
    start_and_stop(argv, tmp_path, in_epoch_2, signal.SIGKILL)
    run_dir = only_run(tmp_path)
    result = run_python(["train.py", "--resume", str(run_dir)])
    assert result.returncode == 0, result.stderr[-2000:]
    assert_same_run(run_dir, uninterrupted_recipe)


def test_sigterm_saves_marks_interrupted_and_prints_the_resume_command(demo, uninterrupted, tmp_path) -> None:
    # Saved every step, the signal sent while epoch 2 is between its steps 3 and 8: it stops mid-epoch.
    argv = flags(demo, tmp_path) + ["--save_every_steps", "1"]
    in_epoch_2 = lambda c: c["epoch"] == 1 and 3 <= c["step_in_epoch"] <= 8  # noqa: E731
    process = start_and_stop(argv, tmp_path, in_epoch_2, signal.SIGTERM)
    run_dir = only_run(tmp_path)
    assert process.returncode == 128 + signal.SIGTERM, process.output[-2000:]
    python = Path(sys.executable)
    command = f"{python.relative_to(REPO) if python.is_relative_to(REPO) else python} train.py --resume {run_dir}"
    assert command in process.output  # this interpreter by its path: `python` may not exist
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and status["error"] == "stopped by SIGTERM"
    assert status["resume_command"] == command
    assert torch.load(run_dir / "last.pth")["step_in_epoch"] > 0  # saved where it stopped, mid-epoch 2
    result = subprocess.run(status["resume_command"], shell=True, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_same_run(run_dir, uninterrupted)
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert [e.value for e in events.Scalars("compare/epoch")] == [1, 2, 3]  # each epoch once across both processes
    assert [e.step for e in events.Scalars("val/acc")] == [12, 24, 36]


def test_flags_that_change_the_run_are_refused_naming_each(uninterrupted: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--resume", str(uninterrupted), "--model_type", "better", "--lr", "0.5", "--epochs", "5"])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.split("error: ")[1]
    conflicts = message.split("flags that may change")[0]
    assert "--model_type base (run) vs better (now)" in conflicts and "--lr 0.003 (run) vs 0.5 (now)" in conflicts
    assert "--epochs" not in conflicts  # harmless: allowed


def test_extending_a_finished_run_records_the_change(tiny_demo, tmp_path) -> None:
    argv = tiny_train_argv(tiny_demo, tmp_path, epochs=2) + ["--scheduler", "none"]
    assert train.main(argv) == 0
    (run_dir,) = tmp_path.iterdir()
    result = run_python(["train.py", "--resume", str(run_dir), "--epochs", "3"])
    assert result.returncode == 0, result.stderr[-2000:]
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2", "3"]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["resumes"][-1]["changed_args"] == {"epochs": {"was": 2, "now": 3}}
    assert json.loads((run_dir / "args.json").read_text())["epochs"] == 3


def test_extending_a_cosine_run_is_refused_with_the_way_to_continue(uninterrupted, capsys) -> None:
    """A cosine schedule planned over 3 epochs ends at --min_lr: a 4th epoch would train at about 0."""
    before = {p.name: p.read_bytes() for p in uninterrupted.iterdir() if p.is_file()}
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--resume", str(uninterrupted), "--epochs", "4"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--scheduler cosine was planned over its 3 epochs" in err
    assert f"--load_model_path {uninterrupted.resolve() / 'last.pth'} --epochs <more>" in err
    assert {p.name: p.read_bytes() for p in uninterrupted.iterdir() if p.is_file()} == before


def test_resuming_a_finished_run_without_more_epochs_says_so_and_touches_nothing(uninterrupted, capsys) -> None:
    before = {p.name: p.read_bytes() for p in uninterrupted.iterdir() if p.is_file()}
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--resume", str(uninterrupted)])
    assert exit_info.value.code == 2
    assert "the run already did all 3 epochs; pass a larger --epochs" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in uninterrupted.iterdir() if p.is_file()} == before


def stop_at_global_step(trainer, step: int) -> None:
    """Ask the trainer to stop (as SIGTERM would) during its `step`-th training step."""
    real = trainer.train_step

    def train_step(batch):
        if trainer.global_step + 1 == step:
            trainer.run.stop.request(signal.SIGTERM)
        return real(batch)

    trainer.train_step = train_step


def test_a_stop_at_an_epochs_last_batch_saves_that_epoch_and_resumes(tiny_demo: Path, tmp_path: Path) -> None:
    trainer, run = start_training(tiny_train_argv(tiny_demo, tmp_path, epochs=2))
    stop_at_global_step(trainer, 3)  # 3 batches an epoch: the last one of epoch 1
    with pytest.raises(StopRequested):
        trainer.train(run)
    run.close()
    checkpoint = torch.load(run.path / "last.pth")
    assert (checkpoint["epoch"], checkpoint["step_in_epoch"]) == (1, 0)  # the epoch's own checkpoint
    assert train.main(["--resume", str(run.path)]) == 0
    assert torch.load(run.path / "last.pth")["epoch"] == 2


def test_a_stop_at_the_end_of_the_last_epoch_just_finishes(tiny_demo: Path, tmp_path: Path) -> None:
    trainer, run = start_training(tiny_train_argv(tiny_demo, tmp_path, epochs=1))
    stop_at_global_step(trainer, 3)  # the run's very last batch
    trainer.train(run)  # no StopRequested: there is nothing left to resume
    run.close()
    assert torch.load(run.path / "last.pth")["epoch"] == 1


def test_resuming_with_another_number_of_processes_is_refused(uninterrupted: Path, tmp_path: Path, capsys) -> None:
    run_dir = Path(shutil.copytree(uninterrupted, tmp_path / "run"))
    checkpoint = torch.load(run_dir / "last.pth")
    checkpoint["world_size"] = 2
    torch.save(checkpoint, run_dir / "last.pth")
    with pytest.raises(SystemExit):
        train.main(["--resume", str(run_dir)])
    assert "the run used 2 process(es), now 1" in capsys.readouterr().err
