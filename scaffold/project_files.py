"""Which files make up the project: what a fresh clone would hold, without outputs or environments.

Used by `python -m scaffold project` (the files a new project starts from) and by the
tests (the copy of the project they run scripts in). In a git checkout git decides (tracked
files plus new files it does not ignore), so the answer follows .gitignore; a copy without
git history (a downloaded zip, a generated project without --git) gets a walk that skips the
same things .gitignore does. Standard library only.
"""

import os
import subprocess
from pathlib import Path

# Never part of a project: history, environments, caches, IDE state.
SKIPPED_DIR_NAMES = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis",
                     ".mypy_cache", ".idea"}
# Generated or downloaded data, relative to the project root.
SKIPPED_DIRS = {"data/demo", "data/downloads"}
SKIPPED_SUFFIXES = {".pyc"}


def project_files(root: Path) -> list[str]:
    """The project's files as sorted POSIX paths relative to `root`."""
    root = Path(root).resolve()
    listed = _git_listed_files(root)
    return sorted(listed if listed is not None else _walked_files(root))


def _git_listed_files(root: Path) -> list[str] | None:
    """git's list when `root` is the top of a git checkout; None without git or repository."""
    try:
        top = _git(root, "rev-parse", "--show-toplevel").strip()
        if Path(top).resolve() != root:  # a folder inside some other repository: walk it instead
            return None
        listed = _git(root, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    except (OSError, subprocess.CalledProcessError):
        return None
    # --cached also lists tracked files deleted from the working tree: keep what is there.
    return [name for name in listed.split("\0") if name and (root / name).is_file()]


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def _walked_files(root: Path) -> list[str]:
    """Every file under `root` except the skipped ones; in checkpoints/ only the placeholder.

    Skipped folders are pruned, not listed and filtered: a .venv/ holds thousands of files."""
    files = []
    for folder, dir_names, file_names in os.walk(root):
        relative = Path(folder).relative_to(root).as_posix()
        prefix = "" if relative == "." else relative + "/"
        dir_names[:] = sorted(d for d in dir_names if not _skipped_dir(prefix + d))
        files += [prefix + f for f in file_names if _kept_file(prefix + f)]
    return files


def _skipped_dir(name: str) -> bool:
    return Path(name).name in SKIPPED_DIR_NAMES or name in SKIPPED_DIRS


def _kept_file(name: str) -> bool:
    if Path(name).name in SKIPPED_DIR_NAMES:  # e.g. the `.git` file of a worktree or submodule
        return False
    if name.startswith("checkpoints/"):
        return name == "checkpoints/.gitkeep"
    return Path(name).suffix not in SKIPPED_SUFFIXES
