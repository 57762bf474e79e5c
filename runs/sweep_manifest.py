"""The sweep's manifest, `<checkpoints_dir>/<exp>/sweep.json`: every point of the sweep with
its flags, seed and fold, its state, its run directory once known, and every attempt.

A point's state is one of pending, running, finished, failed and interrupted (dead runs are
found by reading the run's status.json, utils/liveness.py). `attempts` keeps the history: each
start (`new`) or resumption (`resume`) with its command, times, exit code and run directory,
so a failed run retried with --retry_failed still shows the run directory that failed.
Run directories are stored relative to the experiment folder, so the folder can be moved.

Running the sweep again with the same grid continues it. A command whose grid adds values,
seeds or folds adds those points; one that lacks points the manifest has, or gives other
flags after `--` or another --folds, is refused: that is a different sweep (use another --exp).
A file lock (`.sweep.lock`, released by the system when the process ends, however it ends)
keeps two sweeps from running the same experiment at once.
"""

import fcntl
import json
import os
from pathlib import Path

from runs.reader import short
from runs.sweep_grid import Point
from utils.atomic import atomic_write_text, writing
from utils.errors import UserError
from utils.small_files import read_json_file

MANIFEST_NAME = "sweep.json"
LOCK_NAME = ".sweep.lock"
LOG_FOLDER = "sweep_logs"
VERSION = 1


def point_entry(point: Point, index: int) -> dict:
    """A new point in the manifest."""
    name = point.file_name(index)
    return {"name": name, "label": point.label, "flags": dict(point.flags), "seed": point.seed, "fold": point.fold,
            "state": "pending", "run_dir": None, "error": None, "log": f"{LOG_FOLDER}/{name}.log", "attempts": []}


def entry_point(entry: dict) -> Point:
    return Point(tuple(entry["flags"].items()), entry["seed"], entry["fold"])


def identity(point: Point) -> tuple:
    """What makes two points the same: the grid values (in any order), the seed and the fold."""
    return tuple(sorted(point.flags)), point.seed, point.fold


def new_manifest(exp: str, train_flags: list[str], folds: int | None, points: list[Point]) -> dict:
    return {"version": VERSION, "exp": exp, "train_flags": train_flags, "folds": folds,
            "points": [point_entry(point, index) for index, point in enumerate(points)]}


def load_manifest(exp_dir: Path) -> dict | None:
    """The manifest, None if there is none yet; a UserError if it cannot be used."""
    path = exp_dir / MANIFEST_NAME
    afresh = "repair it, or move it away to start the sweep afresh (finished runs would then be trained again)"
    try:
        manifest = read_json_file(path)  # a regular file of a sensible size, never a FIFO
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise UserError(f"{path} cannot be read ({error}); {afresh}.") from None
    problem = manifest_problem(manifest)
    if problem:
        raise UserError(f"{path} is not a sweep manifest of version {VERSION} (edited by hand?): {problem}; "
                        f"{afresh}.")
    return manifest


STATES = ("pending", "running", "finished", "failed", "interrupted", "dead")
OPTIONAL_TEXT = (str, type(None))


def manifest_problem(manifest: object) -> str | None:
    """The first field the sweep relies on that is missing or of the wrong type, or None."""
    if not isinstance(manifest, dict) or manifest.get("version") != VERSION:
        return f'"version" is not {VERSION}' if isinstance(manifest, dict) else "it holds no JSON object"
    for key, kinds in (("exp", str), ("train_flags", list), ("folds", (int, type(None))), ("points", list)):
        if not is_a(manifest.get(key), kinds):
            return f'"{key}" is {short(manifest.get(key))}'
    if not all(isinstance(flag, str) for flag in manifest["train_flags"]):
        return '"train_flags" holds a value that is not text'
    for number, entry in enumerate(manifest["points"], start=1):
        problem = entry_problem(entry)
        if problem:
            return f"point {number}: {problem}"
    return None


def entry_problem(entry: object) -> str | None:
    """What is wrong with one point of the manifest, or None."""
    if not isinstance(entry, dict):
        return f"{short(entry)} is not an object"
    fields = {"name": str, "label": str, "flags": dict, "seed": (int, type(None)), "fold": (int, type(None)),
              "state": str, "run_dir": OPTIONAL_TEXT, "error": OPTIONAL_TEXT, "log": str, "attempts": list}
    for key, kinds in fields.items():
        if not is_a(entry.get(key), kinds) or key not in entry:
            return f'"{key}" is {short(entry.get(key)) if key in entry else "missing"}'
    if entry["state"] not in STATES:
        return f'"state" is {short(entry["state"])}, not one of {", ".join(STATES)}'
    if not all(isinstance(name, str) and isinstance(value, str) for name, value in entry["flags"].items()):
        return f'"flags" {short(entry["flags"])} holds a value that is not text (grid values are text: "0.1")'
    if Path(entry["log"]).is_absolute() or ".." in Path(entry["log"]).parts:
        return f'"log" {short(entry["log"])} is not a file inside the experiment folder'
    for attempt in entry["attempts"]:
        if not isinstance(attempt, dict):
            return f'an attempt, {short(attempt)}, is not an object'
        for key, kinds in (("log_offset", int), ("pid", int), ("command", list), ("run_dir", OPTIONAL_TEXT)):
            if key in attempt and not is_a(attempt[key], kinds):
                return f'an attempt\'s "{key}" is {short(attempt[key])}'
        if attempt.get("log_offset", 0) < 0:
            return f'an attempt\'s "log_offset" is {attempt["log_offset"]}'
    return None


def is_a(value: object, kinds: type | tuple[type, ...]) -> bool:
    """isinstance, where JSON's true and false are not numbers (no field of the manifest is a bool)."""
    return isinstance(value, kinds) and not isinstance(value, bool)


def merge_points(manifest: dict, points: list[Point], train_flags: list[str], folds: int | None) -> int:
    """Check this command's sweep against the manifest's and add its new points; returns how
    many were added. Raises a UserError naming the difference when it is another sweep."""
    where = f"--exp {manifest.get('exp')}"
    if manifest["train_flags"] != train_flags:
        raise UserError(f"{where} is a sweep whose runs got the flags {' '.join(manifest['train_flags']) or '(none)'} "
                        f"after --; this command gives {' '.join(train_flags) or '(none)'}. Give the same flags, "
                        "or start a new sweep with another --exp.")
    if manifest.get("folds") != folds:
        raise UserError(f"{where} is a sweep with --folds {manifest.get('folds')}, this command gives --folds "
                        f"{folds}; give the same, or start a new sweep with another --exp.")
    known = {identity(entry_point(entry)) for entry in manifest["points"]}
    wanted = {identity(point) for point in points}
    missing = [entry["label"] for entry in manifest["points"] if identity(entry_point(entry)) not in wanted]
    if missing:
        raise UserError(f"{where} already holds {len(missing)} point(s) this command's --grid/--seeds lack, e.g. "
                        f"{missing[0]!r}. Give the same grid (adding values or seeds is fine), or start a new "
                        "sweep with another --exp.")
    added = [point for point in points if identity(point) not in known]
    start = len(manifest["points"])
    manifest["points"] += [point_entry(point, start + i) for i, point in enumerate(added)]
    return len(added)


def save_manifest(exp_dir: Path, manifest: dict) -> None:
    """Write the manifest atomically: a sweep killed while saving leaves the previous one."""
    atomic_write_text(exp_dir / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")


def stored_path(run_dir: Path, exp_dir: Path) -> str:
    """A run directory as the manifest stores it: relative to the experiment folder if inside."""
    try:
        return Path(os.path.abspath(run_dir)).relative_to(os.path.abspath(exp_dir)).as_posix()
    except ValueError:
        return os.path.abspath(run_dir)


def entry_run_dir(entry: dict, exp_dir: Path) -> Path | None:
    """The point's run directory (the latest attempt's), or None while unknown."""
    run_dir = entry.get("run_dir")
    return exp_dir / run_dir if isinstance(run_dir, str) and run_dir else None


class SweepLock:
    """Held while a sweep runs an experiment; a second sweep of it is refused."""

    def __init__(self, exp_dir: Path) -> None:
        self.path = exp_dir / LOCK_NAME
        self.file = None

    def __enter__(self) -> "SweepLock":
        with writing(self.path):
            self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "?"
            self.file.close()
            raise UserError(f"Another sweep (pid {holder}) is running {self.path.parent} now; wait for it to end "
                            "or stop it (Ctrl-C), then run this command again.") from None
        self.file.truncate(0)
        self.file.write(str(os.getpid()))
        self.file.flush()
        return self

    def __exit__(self, *exc_info: object) -> None:
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
