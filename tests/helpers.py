"""Helpers shared by the tests: run the entry points the way a user does, copy the project,
and stop a training process at a known point (events, never sleeps).

Imported as `from helpers import ...` (pytest puts tests/ on the path); fixtures stay in
conftest.py.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from scaffold.project_files import project_files

REPO = Path(__file__).resolve().parents[1]
# How long a test waits for an event (a file, a log line) before it fails: generous, so a
# busy machine only makes the suite slower, never red.
EVENT_DEADLINE = 600

# Tests that start torchrun go to one pytest-xdist worker, one after another (scripts/test.sh
# runs `--dist loadgroup`): before torch 2.11 every torchrun listens on port 29500, and two at
# once on one machine would collide.
ONE_TORCHRUN_AT_A_TIME = pytest.mark.xdist_group("torchrun")


def with_torchrun_mark(names: list[str], folder: Path) -> list:
    """`names` of files in `folder` as test parameters, those that start torchrun marked."""
    return [pytest.param(name, marks=ONE_TORCHRUN_AT_A_TIME) if "torch.distributed.run" in
            (folder / name).read_text(encoding="utf-8") else name for name in names]


def tiny_train_argv(demo: Path, checkpoints: Path, epochs: int = 1) -> list[str]:
    """Flags for a training run of seconds: the tiny lists, small batches, no worker processes."""
    return ["--train_list", str(demo / "train.txt"), "--val_list", str(demo / "val.txt"),
            "--checkpoints_dir", str(checkpoints), "--epochs", str(epochs), "--batch_size", "16",
            "--num_workers", "0", "--print_freq", "1"]


def run_python(args: list[str], cwd: Path = REPO, env: dict | None = None,
               timeout: float = EVENT_DEADLINE) -> subprocess.CompletedProcess:
    """Run `python <args>` the way a user does, from `cwd`; returns the finished process."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def run_bash(script: Path, args: list[str] = (), cwd: Path = REPO, env: dict | None = None
             ) -> subprocess.CompletedProcess:
    """Run a shell script with this test's Python first on PATH (and as $PYTHON), as in a venv."""
    python_bin = str(Path(sys.executable).parent)
    env = {"PATH": f"{python_bin}:{os.environ['PATH']}", "PYTHON": sys.executable, **(env or {})}
    return subprocess.run(["bash", str(script), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=EVENT_DEADLINE)


def copy_project(dest: Path) -> Path:
    """A copy of the project's own files, as a fresh clone has them: what git tracks or would
    track (no outputs, data, environments or caches), to run scripts in."""
    for name in project_files(REPO):  # also without git: a project made by the scaffold
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    return dest


def latest_checkpoint(checkpoints: Path) -> dict | None:
    """The newest last.pth under `checkpoints` (any run), or None while there is none."""
    found = list(checkpoints.glob("**/last.pth"))
    if not found:
        return None
    try:
        return torch.load(found[0], mmap=True)
    except (RuntimeError, EOFError, OSError):  # replaced while being read: ask again
        return None


def start_and_stop(argv: list[str], checkpoints: Path, when: Callable[[dict], bool], sig: int,
                   cwd: Path = REPO, log: Path | None = None) -> subprocess.Popen:
    """Start train.py, wait for a last.pth for which `when(checkpoint)` holds, then send `sig`.

    Event-driven: the process is frozen (SIGSTOP) while its newest checkpoint is checked
    again, so it cannot run past the point `when` describes between the check and `sig`,
    however busy the machine. If it did run past it before the freeze, it is let go on and
    the wait continues. Output goes to `log` (a file: a pipe nobody reads can fill and block)."""
    log = log or checkpoints.parent / f"{checkpoints.name}.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "train.py", *argv], cwd=cwd, text=True,
                                   stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + EVENT_DEADLINE
    while process.poll() is None and time.monotonic() < deadline:
        checkpoint = latest_checkpoint(checkpoints)
        if checkpoint is not None and when(checkpoint):
            os.kill(process.pid, signal.SIGSTOP)
            frozen = latest_checkpoint(checkpoints)
            if frozen is not None and when(frozen):
                os.kill(process.pid, sig)
                os.kill(process.pid, signal.SIGCONT)
                break
            os.kill(process.pid, signal.SIGCONT)
        time.sleep(0.01)  # a polling interval, not a wait for something to be done
    process.wait(timeout=EVENT_DEADLINE)
    process.output = log.read_text()
    return process


def start_training(argv: list[str]):
    """A Trainer built from `argv` and its run folder opened, as train.main does before
    `trainer.train(run)`: for tests that change a Trainer before it trains."""
    import train
    from options import parse_train_args
    from utils.run_dir import RunDir

    args, resume = parse_train_args(argv)
    trainer = train.Trainer(args, resume)
    run = RunDir.for_training(args, resume)
    run.open(args, "train.py", argv, resumed=resume.record() if resume else None)
    return trainer, run
