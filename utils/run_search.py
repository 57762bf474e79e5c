"""Finding run directories again: what counts as one, every one under a folder, the newest;
and the checkpoint a flag names (--resume, --load_model_path, or none: the newest run's).

Everything that looks for runs (`eval.py` without --load_model_path, `python -m runs`, the
sweep) goes through `find_run_dirs`: runs sit directly under the checkpoints folder, or one
folder deeper in an experiment folder (`--exp`), or deeper still if you file them by hand.

The search follows symbolic links (a folder of runs linked in from a bigger disk is
common) but enters each real folder once: a link back up the tree (`ln -s .. loop`)
would otherwise list the same runs again at every level until the path grows too long,
and two links to one run would list it twice.
"""

import os
import sys
from collections.abc import Iterator
from pathlib import Path

from utils.errors import UserError
from utils.liveness import dead_reason
from utils.small_files import read_json_file


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


def resolve_checkpoint(path: str, file_name: str = "best.pth") -> Path:
    """A checkpoint file: a .pth as given, or a run directory's `file_name`."""
    path = Path(path)
    if path.is_dir():
        path = path / file_name
    if not path.is_file():
        stopped = (path.parent / "last.pth").is_file() and is_run_dir(path.parent)
        hint = (f" The run was stopped before it saved {path.name} (in its first epoch, or while saving): "
                f"`python train.py --resume {path.parent}` writes it." if stopped else "")
        raise UserError(f"Checkpoint {path} does not exist; give a .pth checkpoint or a "
                        f"run directory that holds {file_name}.{hint}")
    return path


def newest_matching_run(checkpoints_dir: str, wanted: dict[str, str], allow_unfinished: bool = False,
                        prog: str = "eval.py") -> str:
    """The newest run under `checkpoints_dir` trained with the `wanted` flag values (by the
    time of its args.json, which only training writes): what eval.py and predict.py take
    without --load_model_path. One that has not finished (still running, interrupted, failed,
    or dead) is refused unless `allow_unfinished`: its best.pth is not the run's last word."""
    runs = runs_newest_first(checkpoints_dir)
    if not runs:
        raise UserError(f"No --load_model_path given and no run directory under {checkpoints_dir}/ "
                        "to take the newest from; train first or pass a checkpoint path.")
    matching = [run for run in runs if trained_with(run, wanted)]
    given = " ".join(f"--{name} {value}" for name, value in wanted.items())
    if not matching:
        raise UserError(f"No --load_model_path given, and no run under {checkpoints_dir}/ was trained with {given} "
                        f"(the newest, {runs[0]}, was not); pass --load_model_path.")
    run, (finished, state) = matching[0], run_state(matching[0])
    if not finished and not allow_unfinished:
        done = next((other for other in matching[1:] if run_state(other)[0]), None)
        raise UserError(f"No --load_model_path given, and the newest run{f' trained with {given}' if given else ''}, "
                        f"{run}, is {state}: its checkpoints are not its final ones. Give the run to use, e.g. "
                        + (f"the newest finished one: --load_model_path {done}, " if done else "")
                        + f"or add --allow_unfinished (or --load_model_path {run}) to take this one anyway.")
    print(f"{prog}: no --load_model_path given: taking the newest run, {run}: {state}.", file=sys.stderr)
    return str(run)


def trained_with(run: Path, wanted: dict[str, str]) -> bool:
    """Whether the run's args.json has the `wanted` flag values."""
    try:
        saved = read_json_file(run / "args.json")
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and all(saved.get(name) == value for name, value in wanted.items())


def run_state(run: Path) -> tuple[bool, str]:
    """(whether the run finished, how it stands: "finished after epoch 10, best val/acc 0.986",
    "still running (...)", "interrupted after epoch 1, ...", "dead (...)", "failed ...") from
    its status.json. A run without a readable one (made by hand, or before status.json
    existed) is not guessed at: taken as finished."""
    try:
        status = read_json_file(run / "status.json")
    except (OSError, ValueError):
        status = None
    if not isinstance(status, dict) or not isinstance(status.get("status"), str):
        return True, "no readable status.json, so taken as finished"
    value, best = status["status"], status.get("best") if isinstance(status.get("best"), dict) else {}
    progress = f"after epoch {status.get('epoch')}" + "".join(
        f", best {name} {number:.4g}" for name, number in best.items() if isinstance(number, (int, float)))
    resume = f"resume it: python train.py --resume {run}"
    if value == "finished":
        return True, f"finished {progress}"
    if value == "running":
        dead = dead_reason(status)
        if dead is not None:
            return False, f"dead (status.json says running, but {dead}; {resume})"
        return False, f"still running (process {status.get('pid')} on {status.get('host')}; {progress} so far)"
    if value == "interrupted":
        return False, f"interrupted {progress} ({resume})"
    return False, f"{value} {progress} ({status.get('error') or 'no error recorded'})"


def resume_checkpoint_path(resume: str) -> Path:
    """--resume takes a run directory or its own last.pth: never another checkpoint (it would
    turn its folder into a run, or retrain a finished run's later epochs over its files)."""
    path = Path(resume)
    folder = path if path.is_dir() else path.parent
    if path.is_file() and path.name != "last.pth":
        raise UserError(f"--resume {resume}: resume takes a run directory (or its last.pth), not {path.name}. "
                        f"To start a new run from those weights: --load_model_path {resume}.")
    if not path.exists():
        raise UserError(f"--resume {resume} does not exist; give a run directory.")
    if not is_run_dir(folder):
        raise UserError(f"--resume {resume}: {folder} is not a run directory (it holds no args.json). To start "
                        f"a new run from a checkpoint's weights, use --load_model_path instead.")
    if not (folder / "last.pth").is_file():
        raise UserError(f"--resume {resume}: {folder} has no last.pth yet (it stopped before its first save); "
                        "start it again instead.")
    return folder / "last.pth"


def saved_run_args(checkpoint: dict, path: Path) -> dict:
    """The flags a run was started with, from its last.pth, once it is sure the file is that
    run's own (not one copied in from another run)."""
    saved = checkpoint.get("args")
    if not isinstance(saved, dict) or "epoch" not in checkpoint:
        raise UserError(f"--resume: {path} holds no saved args and progress; it was not written by train.py, "
                        "so there is no run to continue.")
    folder_id, checkpoint_id = read_run_id(path.parent), checkpoint.get("run_id")
    if folder_id is None or folder_id != checkpoint_id:
        raise UserError(f"--resume: {path} does not belong to the run in {path.parent} (its run_id is "
                        f"{checkpoint_id}, the folder's run_info.json says {folder_id}); it was copied or the "
                        "folder's records are gone. Resume the run it came from, or start a new run from its "
                        f"weights with --load_model_path {path}.")
    return saved


def read_run_id(folder: Path) -> str | None:
    """The run_id in a run's run_info.json (None if it cannot be read)."""
    try:
        info = read_json_file(folder / "run_info.json")
    except (OSError, ValueError):
        return None
    return info.get("run_id") if isinstance(info, dict) else None
