"""What a run leaves behind to be trusted: atomic files, status, code and machine facts, the
checkpoint behind each result, and --deterministic runs that repeat to the last digit."""

import errno
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import copy_project, run_python, start_training, tiny_train_argv

import eval as evaluate
import train
from utils import checkpoints
from utils.atomic import atomic_write_text
from utils.checkpoints import Checkpoints
from utils.errors import UserError


def test_a_save_failing_halfway_leaves_the_previous_file_loadable(tmp_path: Path, monkeypatch) -> None:
    writer = Checkpoints("val/acc", "max", save_freq=5)
    writer.open(tmp_path)
    writer.submit({"epoch": 1, "weights": torch.ones(3)}, ["last.pth", "best.pth"])
    writer.wait()

    def disk_full(fd):  # the bytes went to the temporary file; making them durable fails
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    writer.submit({"epoch": 2, "weights": torch.zeros(3)}, ["last.pth"])
    with pytest.raises(UserError, match="failed: the disk is full. The previous last.pth is intact"):
        writer.wait()
    monkeypatch.undo()
    assert torch.load(tmp_path / "last.pth")["epoch"] == 1 and torch.load(tmp_path / "best.pth")["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pth", "last.pth"]  # no temporary file left behind


def test_one_serialisation_serves_every_name_of_an_epoch(tmp_path: Path) -> None:
    writer = Checkpoints("val/acc", "max", save_freq=5)
    writer.open(tmp_path)
    writer.submit({"epoch": 3}, ["last.pth", "best.pth", "epoch_3.pth"])
    writer.wait()
    inodes = {(tmp_path / name).stat().st_ino for name in ("last.pth", "best.pth", "epoch_3.pth")}
    assert len(inodes) == 1  # hard links: written and fsynced once
    writer.submit({"epoch": 4}, ["last.pth"])
    writer.wait()
    assert torch.load(tmp_path / "last.pth")["epoch"] == 4 and torch.load(tmp_path / "best.pth")["epoch"] == 3


def test_a_text_write_failing_halfway_keeps_the_old_text(tmp_path: Path, monkeypatch) -> None:
    atomic_write_text(tmp_path / "result.txt", "acc: 0.9\n")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("I/O error")))
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "result.txt", "acc: 0.1\n")
    assert (tmp_path / "result.txt").read_text() == "acc: 0.9\n"


@pytest.mark.slow
def test_a_full_disk_while_saving_epoch_2_keeps_epoch_1_and_says_so(tiny_demo: Path, tmp_path: Path, monkeypatch,
                                                                    caplog) -> None:
    real_write = checkpoints.atomic_write_bytes
    calls = []

    def write(path, data, mode=None, **options):
        calls.append(path)
        if len(calls) == 2:  # epoch 2's last.pth
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data, mode, **options)

    monkeypatch.setattr(checkpoints, "atomic_write_bytes", write)
    assert train.main(tiny_train_argv(tiny_demo, tmp_path, epochs=2)) == 2
    (run_dir,) = tmp_path.iterdir()
    assert torch.load(run_dir / "last.pth")["epoch"] == 1
    assert f"Saving {run_dir / 'last.pth'} failed: the disk is full. The previous last.pth is intact" in caplog.text
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and "the disk is full" in status["error"]


def test_a_non_finite_loss_stops_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(
        tiny_demo: Path, tmp_path: Path) -> None:
    trainer, run = start_training(tiny_train_argv(tiny_demo, tmp_path, epochs=2))
    real_loss = trainer.loss_fn

    def loss_that_diverges_in_epoch_2(pred, label):
        loss = real_loss(pred, label)
        return loss * float("nan") if trainer.epoch == 1 else loss

    trainer.loss_fn = loss_that_diverges_in_epoch_2
    try:
        with pytest.raises(UserError, match="The loss became nan at epoch 2, step 0"):
            trainer.train(run)
    finally:
        run.close()
    assert torch.load(run.path / "last.pth")["epoch"] == 1


def test_status_and_run_info_of_a_finished_run(trained_run: Path) -> None:
    status = json.loads((trained_run / "status.json").read_text())
    assert status["status"] == "finished" and status["started"] <= status["ended"]
    info = json.loads((trained_run / "run_info.json").read_text())
    assert info["torch"] == torch.__version__ and info["python"] and info["host"]
    assert {"git_commit", "git_dirty", "torchvision", "cuda"} <= set(info)


@pytest.mark.slow
def test_code_patch_recreates_the_uncommitted_code(tiny_demo: Path, tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base"]):
        subprocess.run(git + command, cwd=project, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    with open(project / "loss.py", "a") as file:
        file.write("# an uncommitted tweak\n")
    (project / "new_idea.py").write_text("IDEA = 1\n")
    result = run_python(["train.py", *tiny_train_argv(tiny_demo, tmp_path / "ckpt")], cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = (tmp_path / "ckpt").iterdir()
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["git_commit"] == commit and info["git_dirty"] is True
    clean = tmp_path / "clean"
    subprocess.run(["git", "worktree", "add", "-q", str(clean), commit], cwd=project, check=True)
    subprocess.run(["git", "apply", str(run_dir / "code.patch")], cwd=clean, check=True)
    assert (clean / "loss.py").read_text() == (project / "loss.py").read_text()
    assert (clean / "new_idea.py").read_text() == "IDEA = 1\n"


def test_evaluation_records_which_checkpoint_produced_it(trained_run: Path, tmp_path: Path) -> None:
    run_dir = Path(shutil.copytree(trained_run, tmp_path / "run"))
    assert evaluate.main(["--load_model_path", str(run_dir / "last.pth"), "--num_workers", "0"]) == 0
    (result_dir,) = (run_dir / "last").iterdir()
    info = json.loads((result_dir / "run_info.json").read_text())
    assert info["checkpoint"] == str((run_dir / "last.pth").resolve())
    assert info["checkpoint_sha256"] == hashlib.sha256((run_dir / "last.pth").read_bytes()).hexdigest()
    assert json.loads((result_dir / "status.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("entry", ["eval", "predict"])
def test_a_result_records_the_checkpoint_it_loaded_not_the_one_at_the_path_later(
        entry: str, trained_run: Path, tiny_demo: Path, tmp_path: Path, monkeypatch) -> None:
    """A live run replaces best.pth while eval.py or predict.py opens its result folder: the
    SHA-256 recorded is that of the bytes that were loaded."""
    import predict

    run_dir = Path(shutil.copytree(trained_run, tmp_path / "run"))
    loaded = hashlib.sha256((run_dir / "best.pth").read_bytes()).hexdigest()
    torch.save({**torch.load(run_dir / "last.pth"), "epoch": 99}, run_dir / "newer.pth")

    def replaced_meanwhile(build):
        def build_then_replace(*args):
            built = build(*args)
            os.replace(run_dir / "newer.pth", run_dir / "best.pth")  # a save of the live run
            return built
        return build_then_replace

    if entry == "eval":
        monkeypatch.setattr(evaluate, "Evaluator", replaced_meanwhile(evaluate.Evaluator))
        argv = ["--load_model_path", str(run_dir / "best.pth"), "--num_workers", "0"]
        assert evaluate.main(argv) == 0
    else:
        monkeypatch.setattr(predict, "build_prediction", replaced_meanwhile(predict.build_prediction))
        argv = ["--load_model_path", str(run_dir / "best.pth"), "--input", str(tiny_demo / "images" / "val"),
                "--num_workers", "0"]
        assert predict.main(argv) == 0
    (result_dir,) = (run_dir / "best").iterdir()
    assert json.loads((result_dir / "run_info.json").read_text())["checkpoint_sha256"] == loaded


@pytest.mark.slow
def test_deterministic_runs_with_one_seed_give_identical_metrics(tiny_demo: Path, tmp_path: Path) -> None:
    for name in ("first", "second"):
        argv = tiny_train_argv(tiny_demo, tmp_path / name, epochs=2) + ["--deterministic", "--num_workers", "2"]
        result = run_python(["train.py", *argv])
        assert result.returncode == 0, result.stderr[-2000:]
    first, second = ((tmp_path / name).glob("*/metrics.csv") for name in ("first", "second"))
    assert next(first).read_text() == next(second).read_text()


def test_saved_files_get_the_usual_permissions_not_private_temp_ones(trained_run: Path) -> None:
    from utils.atomic import current_umask
    expected = 0o666 & ~current_umask()
    for name in ("last.pth", "metrics.csv", "args.json", "status.json"):
        assert (trained_run / name).stat().st_mode & 0o777 == expected, name
