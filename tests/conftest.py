"""Shared fixtures: a tiny demo data set, tiny training flags, one trained run, a repo copy.

Tests never touch the repository's own checkpoints/ or data/: everything is written
under pytest's temporary folders.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data.demo_data import generate_demo_data
from utils.project_files import project_files

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small copy of the demo set (60 train, 30 val images): same generator, fewer samples."""
    root = tmp_path_factory.mktemp("data") / "demo"
    generate_demo_data(root, num_train=60, num_val=30)
    return root


def tiny_train_argv(demo: Path, checkpoints: Path, epochs: int = 1) -> list[str]:
    """Flags for a training run of seconds: the tiny lists, small batches, no worker processes."""
    return ["--train_list", str(demo / "train.txt"), "--val_list", str(demo / "val.txt"),
            "--checkpoints_dir", str(checkpoints), "--epochs", str(epochs), "--batch_size", "16",
            "--num_workers", "0", "--print_freq", "1"]


@pytest.fixture(scope="session")
def trained_run(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real 2-epoch training run (in this process), shared by the tests that read it."""
    import train

    checkpoints = tmp_path_factory.mktemp("checkpoints")
    argv = tiny_train_argv(tiny_demo, checkpoints, epochs=2) + ["--save_freq", "1"]
    assert train.main(argv) == 0
    (run_dir,) = checkpoints.iterdir()
    return run_dir


def run_python(args: list[str], cwd: Path = REPO, env: dict | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python <args>` the way a user does, from `cwd`; returns the finished process."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def run_bash(script: Path, args: list[str] = (), cwd: Path = REPO, env: dict | None = None
             ) -> subprocess.CompletedProcess:
    """Run a shell script with this test's Python first on PATH (and as $PYTHON), as in a venv."""
    python_bin = str(Path(sys.executable).parent)
    env = {"PATH": f"{python_bin}:{os.environ['PATH']}", "PYTHON": sys.executable, **(env or {})}
    return subprocess.run(["bash", str(script), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)


def copy_project(dest: Path) -> Path:
    """A copy of the project's own files, as a fresh clone has them: what git tracks or would
    track (no outputs, data, environments or caches), to run scripts in."""
    for name in project_files(REPO):  # also without git: a project made by utils.scaffold
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    return dest
