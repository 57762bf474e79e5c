"""Finding run directories again: what counts as one, every one under a folder, the newest.

Everything that looks for runs (`eval.py` without --load_model_path, `python -m runs`, the
sweep) goes through `find_run_dirs`: runs sit directly under the checkpoints folder, or one
folder deeper in an experiment folder (`--exp`), or deeper still if you file them by hand.

The search follows symbolic links (a folder of runs linked in from a bigger disk is
common) but enters each real folder once: a link back up the tree (`ln -s .. loop`)
would otherwise list the same runs again at every level until the path grows too long,
and two links to one run would list it twice. Standard library only.
"""

import os
from collections.abc import Iterator
from pathlib import Path


def is_run_dir(folder: Path) -> bool:
    """The one rule for what a run directory is: a folder that directly holds `args.json`
    (train.py writes it as the run starts, before status.json and any checkpoint), except an
    evaluation's result folder, which holds one too. Those sit at `<dir>/<checkpoint
    stem>/<name>/`; inside a run they are never reached (the search does not enter runs), and
    for a loose checkpoint they are recognised by the `<dir>/<checkpoint stem>.pth` beside
    their parent. A folder that cannot be looked into is not a run (False, no error)."""
    folder = Path(folder)
    if not os.path.isfile(folder / "args.json"):  # os.path.isfile: False also when access is denied
        return False
    return not os.path.isfile(folder.parent.parent / f"{folder.parent.name}.pth")


def find_run_dirs(root: str | Path, unreadable: list[Path] | None = None) -> Iterator[Path]:
    """Every run directory under `root` (or `root` itself if it is one), in name order, each
    real folder once (the first path found wins). Folders that are not runs are searched
    (experiment folders); runs and hidden folders are not entered, so evaluations inside runs
    are never taken for runs. Folders that cannot be read are skipped, and added to
    `unreadable` when a list is given, so a caller can say what it could not search."""
    yield from _search(Path(root), set(), unreadable)


def _search(folder: Path, visited: set[tuple[int, int]], unreadable: list[Path] | None) -> Iterator[Path]:
    """Depth-first search below `folder`; `visited` holds the (device, inode) of every real
    folder already seen, so no folder is entered, or listed as a run, twice."""
    try:
        identity = os.stat(folder)
    except OSError:  # missing, a broken link, or a parent without access: no runs there
        return
    key = (identity.st_dev, identity.st_ino)
    if key in visited:
        return
    visited.add(key)
    if is_run_dir(folder):
        yield folder
        return
    try:
        children = sorted(entry.path for entry in os.scandir(folder) if _is_visible_dir(entry))
    except NotADirectoryError:
        return
    except OSError:  # not readable: say so if asked
        if unreadable is not None:
            unreadable.append(folder)
        return
    for child in children:
        yield from _search(Path(child), visited, unreadable)


def _is_visible_dir(entry: os.DirEntry) -> bool:
    """A sub-folder (or a link to one) whose name does not start with a dot."""
    if entry.name.startswith("."):
        return False
    try:
        return entry.is_dir()
    except OSError:
        return False


def runs_newest_first(root: str | Path) -> list[Path]:
    """The run directories under `root`, the most recently started (or resumed) first: by the
    time of their args.json, which only training writes (an evaluation adds a folder inside a
    run, which would change the run folder's own time). A run whose args.json vanished while
    looking counts as the oldest."""
    return sorted(find_run_dirs(root), key=_args_time, reverse=True)


def _args_time(run_dir: Path) -> float:
    try:
        return (run_dir / "args.json").stat().st_mtime
    except OSError:
        return float("-inf")
