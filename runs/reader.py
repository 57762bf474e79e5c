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
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

# What train.py uses when args.json lacks these (runs made before they existed).
DEFAULT_MONITOR, DEFAULT_MONITOR_MODE = "val/acc", "max"


@dataclass
class RunRecord:
    """One run directory as read from its text files; None / empty where unknown."""

    path: Path
    args: dict | None = None  # None: args.json unreadable
    status: dict | None = None  # None: status.json missing or unreadable
    metrics: list[dict[str, float]] = field(default_factory=list)  # metrics.csv rows
    evaluation: Path | None = None  # the newest result folder holding result.txt
    results: dict[str, float] = field(default_factory=dict)  # its result.txt
    problems: list[str] = field(default_factory=list)  # files that could not be read, and why


def read_run(path: Path) -> RunRecord:
    """Everything the runs table needs from one run directory; never raises for bad files."""
    record = RunRecord(path)
    record.args = read_json(path / "args.json", record.problems)
    record.status = read_json(path / "status.json", record.problems)
    record.metrics = read_metrics_csv(path / "metrics.csv", record.problems)
    record.evaluation = newest_evaluation(path)
    if record.evaluation is not None:
        record.results = read_result_txt(record.evaluation / "result.txt", record.problems)
    return record


def read_json(path: Path, problems: list[str], required: bool = True) -> dict | None:
    """A JSON object from `path`, or None (with a line in `problems`; none for a file that is
    missing and not `required`)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if required:
            problems.append(f"{path.name} is missing")
        return None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        problems.append(f"{path.name} is unreadable ({type(error).__name__}: half-written or edited?)")
        return None
    if not isinstance(value, dict):
        problems.append(f"{path.name} holds no JSON object")
        return None
    return value


def read_metrics_csv(path: Path, problems: list[str]) -> list[dict[str, float]]:
    """metrics.csv rows as numbers. A missing file is normal (no epoch finished yet); reading
    stops at the first broken row (a truncated file), keeping the rows before it."""
    try:
        with open(path, newline="", encoding="utf-8") as file:
            lines = list(csv.reader(file))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        problems.append(f"metrics.csv is unreadable ({type(error).__name__})")
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
    """One metrics.csv row as numbers (empty cells left out), or None if it is malformed."""
    if len(values) != len(header) or "epoch" not in header:
        return None
    try:
        row = {name: float(value) for name, value in zip(header, values) if value != ""}
    except ValueError:
        return None
    return row if "epoch" in row else None


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


def scan_dirs(folder: str | Path) -> list[str]:
    """Paths of the visible sub-folders of `folder` ([] if it cannot be read)."""
    try:
        return [entry.path for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith(".")]
    except OSError:
        return []


def read_result_txt(path: Path, problems: list[str]) -> dict[str, float]:
    """result.txt's `name: value` lines as numbers; lines that are not are named in problems."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        problems.append(f"{path.parent.name}/result.txt is unreadable ({type(error).__name__})")
        return {}
    results = {}
    for number, line in enumerate(lines, start=1):
        name, _, value = line.rpartition(":")
        try:
            results[name.strip()] = float(value)
        except ValueError:
            problems.append(f"{path.parent.name}/result.txt line {number} is not `name: value`")
    return results


def best_epoch(record: RunRecord) -> tuple[float | None, int | None]:
    """The best monitored value and its epoch: as train.py recorded it in status.json after
    each epoch, or, for runs without it, from metrics.csv with args' --monitor (the first
    epoch wins a tie, as train.py's best.pth does)."""
    status = record.status or {}
    if isinstance(status.get("best"), dict) and len(status["best"]) == 1:
        (value,) = status["best"].values()
        return value, status.get("best_epoch")
    if record.args is None:
        return None, None
    monitor = record.args.get("monitor") or default_monitor(record.metrics)
    mode = record.args.get("monitor_mode") or ("min" if "loss" in monitor else DEFAULT_MONITOR_MODE)
    best, epoch = None, None
    for row in record.metrics:
        value = row.get(monitor)
        if value is not None and (best is None or (value > best if mode == "max" else value < best)):
            best, epoch = value, int(row["epoch"])
    return best, epoch


def default_monitor(rows: list[dict[str, float]]) -> str:
    """train.py's default --monitor: the task's main metric (val/miou for segmentation)."""
    return "val/miou" if rows and "val/miou" in rows[0] else DEFAULT_MONITOR


def parse_time(text: object) -> datetime | None:
    """An ISO time from status.json, or None if absent or malformed."""
    try:
        return datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None


def duration_seconds(status: dict) -> float | None:
    """Seconds from start to end, or to now while running (pauses before a resume included)."""
    started = parse_time(status.get("started"))
    ended = parse_time(status.get("ended"))
    if started is None:
        return None
    if ended is None:
        if status.get("status") != "running":
            return None
        ended = datetime.now(started.tzinfo)
    try:
        return max(0.0, (ended - started).total_seconds())
    except TypeError:  # one time with a time zone, the other without: edited by hand
        return None
