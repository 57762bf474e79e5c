"""Results nobody can lose: one writer per run folder, --resume only of a run's own last.pth,
folders the file system refuses, a changed data list, and what a killed save leaves. Every
refusal is one message, exit code 2, and leaves every file as it was."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import REPO, latest_checkpoint, run_python, start_and_stop, tiny_train_argv

import eval as evaluate
import train


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(argv: list[str], capsys, main=train.main) -> str:
    """Run an entry point expecting exit code 2; returns what it printed on stderr."""
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    assert code == 2, captured.err[-2000:]
    assert "Traceback" not in captured.err
    return captured.err


@pytest.fixture
def two_runs(trained_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Two finished runs of one checkpoints folder (copies of the session's trained run, each
    with a run_id of its own)."""
    first = Path(shutil.copytree(trained_run, tmp_path / "checkpoints" / "run_a"))
    second = Path(shutil.copytree(trained_run, tmp_path / "checkpoints" / "run_b"))
    info = json.loads((second / "run_info.json").read_text())
    (second / "run_info.json").write_text(json.dumps({**info, "run_id": "another"}))
    for name in ("last.pth", "best.pth"):
        checkpoint = torch.load(second / name)
        torch.save({**checkpoint, "run_id": "another"}, second / name)
    return first, second


def test_a_last_pth_copied_in_from_another_run_is_refused_and_nothing_changes(two_runs, capsys) -> None:
    run_a, run_b = two_runs
    shutil.copy(run_b / "last.pth", run_a / "last.pth")  # what the red team did
    before = snapshot(run_a)
    err = refused(["--resume", str(run_a), "--epochs", "4", "--scheduler", "none"], capsys)
    assert f"{run_a / 'last.pth'} does not belong to the run in {run_a}" in err and "run_id is another" in err
    assert snapshot(run_a) == before


def test_another_checkpoint_of_a_finished_run_is_not_resumed(two_runs, capsys) -> None:
    run_a, _ = two_runs
    before = snapshot(run_a)
    err = refused(["--resume", str(run_a / "epoch_1.pth")], capsys)
    assert "resume takes a run directory (or its last.pth), not epoch_1.pth" in err
    assert f"--load_model_path {run_a / 'epoch_1.pth'}" in err
    assert snapshot(run_a) == before


def test_a_loose_checkpoint_in_any_folder_does_not_make_it_a_run(trained_run: Path, tmp_path: Path, capsys) -> None:
    shutil.copy(trained_run / "last.pth", tmp_path / "last.pth")
    err = refused(["--resume", str(tmp_path / "last.pth")], capsys)
    assert f"{tmp_path} is not a run directory (it holds no args.json)" in err
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]


def test_resuming_after_the_training_list_changed_is_refused(tiny_demo: Path, tmp_path: Path, capsys) -> None:
    lists = tmp_path / "lists"
    shutil.copytree(tiny_demo, lists, ignore=shutil.ignore_patterns("images", "masks"))
    for name in ("train.txt", "val.txt"):
        (lists / name).write_text((tiny_demo / name).read_text().replace("images/", f"{tiny_demo}/images/"))
    argv = tiny_train_argv(tiny_demo, tmp_path / "ckpt", epochs=1) + ["--scheduler", "none",
                                                                      "--train_list", str(lists / "train.txt")]
    assert train.main(argv) == 0
    (run_dir,) = (tmp_path / "ckpt").iterdir()
    with open(lists / "train.txt", "a") as file:  # 60 -> 64 lines
        file.write("".join(f"{tiny_demo}/images/train/0000{i}.png {i % 5}\n" for i in range(4)))
    before = snapshot(run_dir)
    err = refused(["--resume", str(run_dir), "--epochs", "2"], capsys)
    assert "the train data changed since the run started" in err and "60 -> 64 samples" in err
    assert snapshot(run_dir) == before


@pytest.mark.slow
def test_one_writer_per_run_and_a_killed_run_resumes(tiny_demo: Path, tmp_path: Path) -> None:
    """A second --resume while the run trains is refused, naming the process; once the first is
    killed (its lock goes with it), the run resumes, and a killed save's leftovers are removed."""
    argv = tiny_train_argv(tiny_demo, tmp_path, epochs=200) + ["--scheduler", "none", "--print_freq", "100"]
    process = subprocess.Popen([sys.executable, "train.py", *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        while latest_checkpoint(tmp_path) is None and process.poll() is None:
            time.sleep(0.05)  # a polling interval; the event waited for is the first checkpoint
        (run_dir,) = tmp_path.iterdir()
        second = run_python(["train.py", "--resume", str(run_dir), "--epochs", "300"])
        assert second.returncode == 2
        assert f"{run_dir} is being written by pid {process.pid} on host" in second.stderr
    finally:
        process.kill()
        process.wait()
    (run_dir / ".last.pth.leftover.tmp").write_bytes(b"half a save")  # what a killed save leaves
    more = str(latest_checkpoint(tmp_path)["epoch"] + 1)
    resumed = run_python(["train.py", "--resume", str(run_dir), "--epochs", more])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not (run_dir / ".last.pth.leftover.tmp").exists()


@pytest.mark.parametrize("make, message", [
    (lambda d: d.write_text("not a folder"), "is a file, not a folder: give a folder as --checkpoints_dir"),
    (lambda d: (d.mkdir(), d.chmod(0o555)), "No permission to write in"),
])
def test_a_checkpoints_folder_the_file_system_refuses_is_one_message(make, message, tiny_demo, tmp_path, capsys):
    if os.geteuid() == 0 and "permission" in message.lower():
        pytest.skip("root writes into read-only folders")
    checkpoints = tmp_path / "checkpoints"
    make(checkpoints)
    err = refused(tiny_train_argv(tiny_demo, checkpoints), capsys)
    assert message in err


def test_a_name_too_long_for_the_file_system_is_one_message(tiny_demo, tmp_path, capsys) -> None:
    err = refused(tiny_train_argv(tiny_demo, tmp_path) + ["--save_prefix", "x" * 300], capsys)
    assert "characters) is too long for the file system; use a shorter --save_prefix" in err


def test_an_image_size_too_small_for_the_model_is_refused_before_the_run_folder(tiny_demo, tmp_path, capsys) -> None:
    err = refused(tiny_train_argv(tiny_demo, tmp_path) + ["--image_size", "1"], capsys)  # base: two 2x2 max-pools
    assert "--model_type base cannot take inputs of shape (3, 1, 1)" in err and "a larger --image_size" in err
    assert list(tmp_path.iterdir()) == []


def test_eval_writes_elsewhere_when_the_checkpoint_is_read_only(trained_run: Path, tmp_path: Path) -> None:
    stored = Path(shutil.copytree(trained_run, tmp_path / "archive" / trained_run.name))
    before = snapshot(stored)
    for path in [stored, *stored.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        out = tmp_path / "results"
        assert evaluate.main(["--load_model_path", str(stored), "--output_dir", str(out), "--num_workers", "0"]) == 0
        (result_dir,) = out.iterdir()
        assert result_dir.name == "val_eval" and (result_dir / "result.txt").read_text().startswith("loss: ")
    finally:
        for path in [stored, *stored.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert snapshot(stored) == before


@pytest.mark.slow
def test_printed_commands_work_without_python_on_the_path(tiny_demo: Path, tmp_path: Path) -> None:
    """After the README's set-up nothing is activated: command.sh and the resume command name
    this interpreter by its path, so they run with a PATH that has no `python` at all."""
    argv = tiny_train_argv(tiny_demo, tmp_path, epochs=3) + ["--save_every_steps", "1"]
    process = start_and_stop(argv, tmp_path, lambda c: c["epoch"] >= 1, signal.SIGTERM)
    assert process.returncode == 128 + signal.SIGTERM
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    bare = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}  # no virtualenv, no `python`
    status = json.loads((run_dir / "status.json").read_text())
    assert not status["resume_command"].startswith("python ")
    resumed = subprocess.run(["bash", "-c", status["resume_command"]], cwd=REPO, env=bare, capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rerun = subprocess.run(["bash", str(run_dir / "command.sh")], env=bare, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]


def test_a_folder_without_write_permission_is_one_message_also_for_root(tiny_demo, tmp_path, capsys,
                                                                         monkeypatch) -> None:
    """Root writes into read-only folders, so the refusal is simulated where the folder is made."""
    import errno

    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    err = refused(tiny_train_argv(tiny_demo, tmp_path / "read_only"), capsys)
    assert f"No permission to write in {tmp_path / 'read_only'} (Permission denied); choose a writable folder" in err
