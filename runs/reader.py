"""Read what one run directory says about itself, for `python -m runs`.

Only small text files are read: args.json, status.json, metrics.csv and the newest
evaluation's result.txt (run_info.json and command.sh for the detail view). Never a
checkpoint or a TensorBoard file: they are large and slow to open, and listing a thousand
runs must take about a second. Standard library only, so the command starts at once.

Runs are read while they run, after they crash and after someone edited them by hand, so
every reader copes with a missing, half-written or corrupt file: what cannot be read is
left out and described in `RunRecord.problems`, and the rest is still shown.
"""

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from utils.small_files import FileTooLarge, read_json_file, read_small_text

# What train.py uses when args.json lacks these (runs made before they existed).
DEFAULT_MONITOR, DEFAULT_MONITOR_MODE = "val/acc", "max"
UNKNOWN = "?"  # a value that is recorded but cannot be read (the table shows it as is)


@dataclass
class RunRecord:
    """One run directory as read from its text files; None / empty where unknown."""

    path: Path
    args: dict | None = None  # None: args.json unreadable
    status: dict | None = None  # None: status.json missing or unreadable
    metrics: list[dict[str, float]] = field(default_factory=list)  # metrics.csv rows
    evaluation: Path | None = None  # the newest result folder holding result.txt
    evaluation_outdated: bool = False  # the checkpoint it evaluated was replaced after it (the run went on)
    results: dict[str, float] = field(default_factory=dict)  # its result.txt
    problems: list[str] = field(default_factory=list)  # files that could not be read, and why
    monitor: str = DEFAULT_MONITOR  # the value `best` is the best of
    best: float | str | None = None  # None: no epoch yet; UNKNOWN: status.json's is not a number
    best_epoch: int | None = None


def read_run(path: Path) -> RunRecord:
    """Everything the runs table needs from one run directory; never raises for bad files."""
    record = RunRecord(path)
    record.args = read_json(path / "args.json", record.problems)
    record.status = read_json(path / "status.json", record.problems)
    record.metrics = read_metrics_csv(path / "metrics.csv", record.problems)
    record.evaluation = newest_evaluation(path)
    if record.evaluation is not None:
        record.results = read_result_txt(record.evaluation / "result.txt", record.problems)
        record.evaluation_outdated = evaluation_outdated(record.evaluation)
    record.monitor, record.best, record.best_epoch = read_best(record)
    return record


def unreadable(name: str, error: Exception) -> str:
    """The problem line for a file that could not be read."""
    if isinstance(error, FileTooLarge):
        return f"{name} is too large ({error}; not a file a run writes), left out"
    if isinstance(error, UnicodeDecodeError):
        return f"{name} is unreadable (not UTF-8 text: binary or corrupt)"
    if isinstance(error, OSError):
        return f"{name} is unreadable ({type(error).__name__}: {error.strerror or error})"
    return f"{name} is unreadable ({type(error).__name__}: half-written or edited?)"


def read_json(path: Path, problems: list[str], required: bool = True) -> dict | None:
    """A JSON object from `path`, or None (with a line in `problems`; none for a file that is
    missing and not `required`)."""
    try:
        value = read_json_file(path)
    except FileNotFoundError:
        if required:
            problems.append(f"{path.name} is missing")
        return None
    except (OSError, ValueError) as error:
        problems.append(unreadable(path.name, error))
        return None
    if not isinstance(value, dict):
        problems.append(f"{path.name} holds no JSON object")
        return None
    return value


def read_metrics_csv(path: Path, problems: list[str]) -> list[dict[str, float]]:
    """metrics.csv rows as numbers. A missing file is normal (no epoch finished yet); reading
    stops at the first broken row (a truncated file), keeping the rows before it."""
    try:
        lines = list(csv.reader(io.StringIO(read_small_text(path), newline="")))
    except FileNotFoundError:
        return []
    except (OSError, ValueError, csv.Error) as error:  # csv.Error: a NUL byte, a huge field
        problems.append(unreadable("metrics.csv", error))
        return []
    if not lines:
        return []
    header, rows = lines[0], []
    for number, values in enumerate(lines[1:], start=2):
        row = parse_metrics_row(header, values)
        if row is None:
            problems.append(f"metrics.csv line {number} is broken (truncated?); read up to line {number - 1}")
            break
        rows.append(row)
    return rows


def parse_metrics_row(header: list[str], values: list[str]) -> dict[str, float] | None:
    """One metrics.csv row as numbers (empty cells left out), or None if it is malformed (the
    epoch must be a whole number; other values may be nan or inf: a diverged run)."""
    if len(values) != len(header) or "epoch" not in header:
        return None
    try:
        row = {name: float(value) for name, value in zip(header, values) if value != ""}
    except ValueError:
        return None
    epoch = row.get("epoch")
    return row if epoch is not None and math.isfinite(epoch) and epoch == int(epoch) else None


def newest_evaluation(run_dir: Path) -> Path | None:
    """The most recent finished evaluation: `<run dir>/<checkpoint stem>/<name>/` holding
    result.txt (written last, so a crashed evaluation has none), by result.txt's time."""
    newest, newest_time = None, 0.0
    for stem in scan_dirs(run_dir):
        for folder in scan_dirs(stem):
            try:
                modified = os.stat(os.path.join(folder, "result.txt")).st_mtime
            except OSError:
                continue
            if modified > newest_time:
                newest, newest_time = Path(folder), modified
    return newest


def evaluation_outdated(evaluation: Path) -> bool:
    """Whether the checkpoint an evaluation read, `<run dir>/<stem>.pth` beside its `<stem>/`
    folder, was written again after it: a run that went on has a newer best.pth (or last.pth),
    so the evaluation's numbers are of an older one. By the files' times (the evaluation's
    args.json is written after it read the checkpoint), never by opening the checkpoint."""
    checkpoint = evaluation.parent.parent / f"{evaluation.parent.name}.pth"
    try:
        return os.stat(checkpoint).st_mtime > os.stat(evaluation / "args.json").st_mtime
    except OSError:  # no such checkpoint (removed) or no args.json: nothing to compare
        return False


def scan_dirs(folder: str | Path) -> list[str]:
    """Paths of the visible sub-folders of `folder` ([] if it cannot be read)."""
    try:
        return [entry.path for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith(".")]
    except OSError:
        return []


def read_result_txt(path: Path, problems: list[str]) -> dict[str, float]:
    """result.txt's `name: value` lines as numbers; lines that are not are named in problems."""
    try:
        lines = read_small_text(path).splitlines()
    except (OSError, ValueError) as error:
        problems.append(unreadable(f"{path.parent.name}/result.txt", error))
        return {}
    results = {}
    for number, line in enumerate(lines, start=1):
        name, _, value = line.rpartition(":")
        try:
            if not name.strip():
                raise ValueError("no name")
            results[name.strip()] = float(value)
        except ValueError:
            problems.append(f"{path.parent.name}/result.txt line {number} is not `name: value`")
    return results


def read_best(record: RunRecord) -> tuple[str, float | str | None, int | None]:
    """(monitor, best value, its epoch): as train.py recorded them in status.json after each
    epoch (`best: {monitor: value}`), or, for runs without that record, from metrics.csv with
    args' --monitor (the first epoch wins a tie, as train.py's best.pth does). A `best` that is
    there but is not one number (edited by hand) gives UNKNOWN and a line in problems."""
    status = record.status or {}
    recorded = status.get("best")
    if "best" in status:
        if isinstance(recorded, dict) and len(recorded) == 1 and is_number(next(iter(recorded.values()))):
            ((monitor, value),) = recorded.items()
            epoch = status.get("best_epoch")
            return monitor, value, epoch if is_number(epoch) and not isinstance(epoch, float) else None
        record.problems.append(f"status.json: best is {short(recorded)}, not {{monitor: number}}")
        return monitor_name(record), UNKNOWN, None
    if record.args is None:
        return monitor_name(record), None, None
    monitor, best, epoch = monitor_name(record), None, None
    minimize = monitor_mode(record.args, monitor) == "min"
    for row in record.metrics:
        value = row.get(monitor)
        if value is not None and (best is None or (value < best if minimize else value > best)):
            best, epoch = value, int(row["epoch"])
    return monitor, best, epoch


def monitor_name(record: RunRecord) -> str:
    """args' --monitor, or train.py's default for the run's task."""
    monitor = (record.args or {}).get("monitor")
    return monitor if isinstance(monitor, str) and monitor else default_monitor(record.metrics)


def monitor_mode(args: dict, monitor: str) -> str:
    """args' --monitor_mode, or train.py's default: min for a loss, else max."""
    mode = args.get("monitor_mode")
    return mode if mode in ("min", "max") else ("min" if "loss" in monitor else DEFAULT_MONITOR_MODE)


def is_number(value: object) -> bool:
    """An int or a float from JSON, not a bool (JSON true is not a value of a metric)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def short(value: object, limit: int = 40) -> str:
    """A JSON value for a message, cut to `limit` characters."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def default_monitor(rows: list[dict[str, float]]) -> str:
    """train.py's default --monitor: the task's main metric (val/miou for segmentation)."""
    return "val/miou" if rows and "val/miou" in rows[0] else DEFAULT_MONITOR


def parse_time(text: object) -> datetime | None:
    """An ISO time from status.json, or None if absent or malformed."""
    try:
        return datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None


def duration_seconds(status: dict, alive: bool = True) -> float | None:
    """Seconds from start to end, or to now while running (pauses before a resume included);
    for a run that died without saying so (`alive=False`), to its last sign of life (the
    heartbeat or the last update), so its duration does not grow for ever."""
    started = parse_time(status.get("started"))
    ended = parse_time(status.get("ended"))
    if started is None:
        return None
    if ended is None:
        if status.get("status") != "running":
            return None
        last_sign_of_life = parse_time(status.get("updated")) or parse_time(status.get("heartbeat"))
        ended = datetime.now(started.tzinfo) if alive else last_sign_of_life
        if ended is None:
            return None
    try:
        return max(0.0, (ended - started).total_seconds())
    except TypeError:  # one time with a time zone, the other without: edited by hand
        return None


def resume_entries(status: dict) -> list[dict]:
    """status.json's resumptions, skipping hand-edited junk (a `resumes` that is no list,
    entries that are no objects)."""
    resumes = status.get("resumes")
    return [entry for entry in resumes if isinstance(entry, dict)] if isinstance(resumes, list) else []


def resume_changes(resume: dict) -> dict[str, dict]:
    """One resumption's changed flags, {name: {"was": ..., "now": ...}}, junk skipped."""
    changed = resume.get("changed_args")
    if not isinstance(changed, dict):
        return {}
    return {name: change for name, change in changed.items() if isinstance(change, dict)}
