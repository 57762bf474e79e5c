"""run_info.json and code.patch: which code, on which machine, produced a run.

Records the git commit, whether the tree had uncommitted changes (and those changes as a
patch: `git apply code.patch` on that commit gives back the exact code), the python,
torch, torchvision and CUDA versions, and the host name.
"""

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import torch
import torchvision

from utils.atomic import atomic_write_text

CODE_ROOT = Path(__file__).resolve().parents[1]


def git(*args: str, env: dict | None = None) -> str | None:
    """Output of a git command run in the project folder, or None when git cannot answer."""
    try:
        result = subprocess.run(["git", *args], cwd=CODE_ROOT, capture_output=True, text=True,
                                timeout=30, env={**os.environ, **(env or {})})
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def uncommitted_patch() -> str:
    """The working tree against HEAD, untracked (not ignored) files included, as a patch.

    A scratch index receives `git add -A`, so the user's own staging area is left alone.
    """
    with tempfile.TemporaryDirectory() as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        if git("add", "-A", env=env) is None:
            return ""
        return git("diff", "--cached", "--binary", "HEAD", env=env) or ""


def collect_run_info() -> tuple[dict, str]:
    """(facts about code and machine, the uncommitted patch or "")."""
    commit = git("rev-parse", "HEAD")
    patch = uncommitted_patch() if commit else ""
    info = {
        "git_commit": commit.strip() if commit else None,
        "git_dirty": bool(patch) if commit else None,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "argv": sys.argv,
    }
    return info, patch


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes: names exactly which checkpoint produced a result."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_run_info(folder: Path, extra: dict | None = None) -> dict:
    """Write run_info.json (and code.patch when the tree has uncommitted changes). `run_id`,
    a random name of this run, is also in every checkpoint: a checkpoint copied into
    another run's folder is then told apart from the folder's own."""
    info, patch = collect_run_info()
    info.update(run_id=uuid.uuid4().hex, **(extra or {}))
    if patch:
        atomic_write_text(folder / "code.patch", patch)
    atomic_write_text(folder / "run_info.json", json.dumps(info, indent=2) + "\n")
    return info
