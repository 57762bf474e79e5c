"""A stop signal while a run is being set up: before the folder exists it ends at once, with
nothing written; while the folder's records are written it ends once they are, as
"interrupted" without a resume command (there is nothing to resume); a process killed
outright meanwhile leaves a folder the runs table shows as dead, never as "?". The signal
is sent from inside the step it must interrupt (monkeypatched), never after a timer."""

import json
import os
import signal
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import run_python, tiny_train_argv

import train
from runs import listing as runs
from utils import run_dir as run_dir_module
from utils.stop_signals import STOP_FILE_VARIABLE


def signalled_during(monkeypatch, module, name: str, number: int) -> None:
    """`module.name(...)` sends this process signal `number` first, then does its work."""
    real = getattr(module, name)

    def send_then_run(*args, **kwargs):
        os.kill(os.getpid(), number)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, send_then_run)


@pytest.fixture
def unkilled():
    """SIGTERM raises KeyboardInterrupt unless the code under test catches it: a regression
    then fails this test instead of ending the test process."""
    def guard(number, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, guard)
    yield
    signal.signal(signal.SIGTERM, previous)


def main_exit_code(argv: list[str]) -> int | str:
    try:
        return train.main(argv)
    except KeyboardInterrupt:
        return "KeyboardInterrupt"


def test_ctrl_c_while_the_data_is_read_ends_at_once_and_writes_nothing(tiny_demo: Path, tmp_path: Path, monkeypatch,
                                                                       capsys) -> None:
    signalled_during(monkeypatch, train, "training_sets", signal.SIGINT)
    assert main_exit_code(tiny_train_argv(tiny_demo, tmp_path / "ckpt")) == 128 + signal.SIGINT
    err = capsys.readouterr().err
    assert "Stopped by SIGINT before the run folder was made; nothing was written." in err and "Traceback" not in err
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_while_the_folder_is_set_up_ends_interrupted_with_the_folder_whole(
        number: int, tiny_demo: Path, tmp_path: Path, monkeypatch, capsys, unkilled) -> None:
    signalled_during(monkeypatch, run_dir_module, "save_command", number)
    assert main_exit_code(tiny_train_argv(tiny_demo, tmp_path)) == 128 + number
    (run_dir,) = tmp_path.iterdir()
    assert {"args.json", "command.sh", "run_info.json", "status.json", "log.txt"} <= {p.name for p in run_dir.iterdir()}
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and status["resume_command"] is None
    err = capsys.readouterr().err
    assert "so there is nothing to resume; run it again: bash" in err and "--resume" not in err
    assert "Traceback" not in err and not (run_dir / "last.pth").exists()


def test_slurms_warning_while_the_data_is_read_saves_at_the_first_step(tiny_demo: Path, tmp_path: Path, monkeypatch,
                                                                      capsys) -> None:
    """SIGUSR1 says time runs out (Slurm sends it once): ending at once, unsaved, would lose
    the job's requeue; the run saves after its first step instead, resumable."""
    signalled_during(monkeypatch, train, "training_sets", signal.SIGUSR1)
    assert main_exit_code(tiny_train_argv(tiny_demo, tmp_path)) == 128 + signal.SIGUSR1
    (run_dir,) = tmp_path.iterdir()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and status["resume_command"] is not None
    assert torch.load(run_dir / "last.pth", weights_only=True)["global_step"] == 1
    assert "SIGUSR1 received while the run is set up" in capsys.readouterr().out


def test_a_warning_recorded_in_train_stop_file_saves_and_stops(tiny_demo: Path, tmp_path: Path, monkeypatch) -> None:
    """scripts/slurm_step.sh writes the file when the warning came before train.py could catch it."""
    stop_file = tmp_path / "warned"
    stop_file.touch()
    monkeypatch.setenv(STOP_FILE_VARIABLE, str(stop_file))
    assert main_exit_code(tiny_train_argv(tiny_demo, tmp_path / "ckpt")) == 128 + signal.SIGUSR1
    (run_dir,) = (tmp_path / "ckpt").iterdir()
    assert json.loads((run_dir / "status.json").read_text())["error"] == "stopped by SIGUSR1"
    assert torch.load(run_dir / "last.pth", weights_only=True)["global_step"] == 1


KILLED_AT = textwrap.dedent("""
    import os, sys
    from utils import run_dir
    setattr(run_dir, sys.argv[1], lambda *args, **kwargs: os._exit(137))  # SIGKILL, the OOM killer, power loss
    import train
    sys.exit(train.main(sys.argv[2:]))
""")


@pytest.mark.slow
def test_a_process_killed_while_its_folder_is_set_up_leaves_no_unknown_run(tiny_demo: Path, tmp_path: Path,
                                                                          capsys) -> None:
    result = run_python(["-c", KILLED_AT, "save_command", *tiny_train_argv(tiny_demo, tmp_path)])
    assert result.returncode == 137, result.stderr[-2000:]
    (run_dir,) = tmp_path.iterdir()
    assert (run_dir / "args.json").is_file()  # a run directory, which the runs table lists
    assert runs.main([str(tmp_path), "--csv"]) == 0
    (row,) = capsys.readouterr().out.splitlines()[1:]
    assert row.split(",")[2] == "dead"  # its status.json names the process that is gone
