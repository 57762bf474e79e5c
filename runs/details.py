"""`python -m runs --show <run>`: everything one run directory records, on one screen.

Status and resumptions, the code (commit, uncommitted changes) and machine, the command,
every argument, a summary of metrics.csv, the files with their sizes and each evaluation's
results. Like the table it reads text files only and shows what it can of a broken run.
"""

import os
from pathlib import Path

from runs.reader import (
    RunRecord,
    duration_seconds,
    evaluation_outdated,
    is_number,
    read_json,
    read_result_txt,
    resume_changes,
    resume_entries,
    scan_dirs,
)
from runs.table import format_duration, printable
from utils.liveness import dead_reason
from utils.small_files import read_small_text

INDENT = "  "


def format_run_details(record: RunRecord) -> str:
    """The detail view of a run read by runs.reader.read_run."""
    info = read_json(record.path / "run_info.json", record.problems)
    sections = [
        [f"run      {record.path}", *status_lines(record.status), *code_lines(info, record.path),
         *command_lines(record.path)],
        ["args", *(f"{INDENT}{name}: {value}" for name, value in sorted((record.args or {}).items()))],
        metrics_lines(record),
        ["files", *file_lines(record.path)],
        ["evaluations", *evaluation_lines(record.path, record.problems)],
    ]
    if record.problems:  # the newest evaluation's result.txt was read twice: name its problems once
        sections.append(["problems", *(f"{INDENT}{problem}" for problem in dict.fromkeys(record.problems))])
    return "\n\n".join("\n".join(printable(line) for line in lines) for lines in sections)  # no raw control characters


def status_lines(status: dict | None) -> list[str]:
    """Status, times, error or resume command, and every resumption with its changed flags."""
    if status is None:
        return ["status   ? (status.json missing or unreadable)"]
    dead = dead_reason(status)
    took = duration_seconds(status, alive=dead is None)
    shown = f"dead (status.json says running, but {dead})" if dead else status.get("status", "?")
    lines = [f"status   {shown}, started {status.get('started')}, ended {status.get('ended')}"
             + (f", took {format_duration(took)}" if took is not None else "")]
    if status.get("host") is not None or status.get("pid") is not None:
        lines.append(f"         process {status.get('pid')} on {status.get('host')}, last heartbeat "
                     f"{status.get('heartbeat', 'none')}")
    if status.get("error"):
        lines.append(f"         error: {status['error']}")
    if status.get("status") == "interrupted" and status.get("resume_command"):
        lines.append(f"         resume with: {status['resume_command']}")
    for resume in resume_entries(status):
        changed = ", ".join(f"{name} {change.get('was')} -> {change.get('now')}"
                            for name, change in resume_changes(resume).items())
        lines.append(f"         resumed {resume.get('time')} from {resume.get('from')}"
                     + (f"; changed {changed}" if changed else ""))
    return lines


def code_lines(info: dict | None, path: Path) -> list[str]:
    """Which code and machine made the run, and how to get that code back."""
    if info is None:
        return ["code     ? (run_info.json missing or unreadable)"]
    if not info.get("git_commit"):
        code = "not a git checkout when it ran: the code cannot be recreated"
    else:
        dirty = " + uncommitted changes in code.patch" if info.get("git_dirty") else ""
        code = f"commit {info['git_commit']}{dirty}\n         recreate: python -m runs.reproduce {path}"
    gpus = info.get("gpus")
    gpus = ", ".join(map(str, gpus)) if isinstance(gpus, list) and gpus else "none"
    machine = (f"{info.get('host')}; python {info.get('python')}, torch {info.get('torch')}, torchvision "
               f"{info.get('torchvision')}, CUDA {info.get('cuda')}; GPUs: {gpus}")
    return [f"code     {code}", f"machine  {machine}"]


def command_lines(path: Path) -> list[str]:
    """The recorded command (command.sh's last line) and the folder it ran in."""
    try:
        lines = [line for line in read_small_text(path / "command.sh").splitlines() if line.strip()]
    except (OSError, ValueError):  # missing, not a regular file (a FIFO would block), binary, huge
        return ["command  ? (command.sh missing or unreadable)"]
    folder = next((line[3:] for line in lines if line.startswith("cd ")), "?")
    return [f"command  {lines[-1] if lines else '?'}", f"         in {folder}"]


def metrics_lines(record: RunRecord) -> list[str]:
    """Epochs done, the best monitored value, and first / last / min / max of every value."""
    rows = record.metrics
    if not rows:
        return ["metrics  none yet (no metrics.csv rows)"]
    if is_number(record.best):
        best = f"; best {record.monitor} {record.best:.6g}" + (
            f" at epoch {record.best_epoch}" if record.best_epoch is not None else "")
    else:  # None: no value of the monitor yet; "?": status.json's is not a number (see problems)
        best = f"; best {record.monitor} ?" if record.best is not None else ""
    lines = [f"metrics  {int(rows[-1]['epoch'])} of {(record.args or {}).get('epochs', '?')} epochs done{best}",
             f"{INDENT}{'name':<16}{'first':>12}{'last':>12}{'min':>12}{'max':>12}"]
    names = dict.fromkeys(name for row in rows for name in row if name != "epoch")
    for name in names:
        values = [row[name] for row in rows if name in row]
        numbers = "".join(f"{value:>12.5g}" for value in (values[0], values[-1], min(values), max(values)))
        lines.append(f"{INDENT}{name:<16}{numbers}")
    return lines


def file_lines(path: Path) -> list[str]:
    """Every file in the run directory with its size (checkpoints are not opened)."""
    entries = list_folder(path)
    if entries is None:
        return [f"{INDENT}? (the folder cannot be read)"]
    lines = []
    for entry in sorted(entries, key=lambda entry: entry.name):
        try:
            if entry.is_file() and not entry.name.startswith("."):
                lines.append(f"{INDENT}{entry.name:<40}{format_size(entry.stat().st_size):>10}")
        except OSError:  # vanished or not accessible while listing
            lines.append(f"{INDENT}{entry.name:<40}{'?':>10}")
    return lines


def list_folder(path: Path) -> list[os.DirEntry] | None:
    """The entries of a folder, or None if it cannot be read."""
    try:
        return list(os.scandir(path))
    except OSError:
        return None


def evaluation_lines(path: Path, problems: list[str]) -> list[str]:
    """Each evaluation folder: its status, its top-level results and its files."""
    lines = []
    for folder in sorted(Path(f) for stem in scan_dirs(path) for f in scan_dirs(stem)):
        status = read_json(folder / "status.json", problems, required=False) or {}
        results = read_result_txt(folder / "result.txt", problems) if os.path.isfile(folder / "result.txt") else {}
        main = "  ".join(f"{name} {value:.4g}" for name, value in results.items() if "/" not in name)
        per_class = sum("/" in name for name in results)
        old = f"  (old: {folder.parent.name}.pth was written again after it)" if evaluation_outdated(folder) else ""
        lines.append(f"{INDENT}{folder.relative_to(path).as_posix()}  {status.get('status', '?')}  {main}"
                     + (f"  (+{per_class} per-class values)" if per_class else "") + old)
        files = sorted(entry.name + ("/" if entry.is_dir() else "") for entry in list_folder(folder) or [])
        lines.append(f"{INDENT * 2}{' '.join(files)}")
    return lines or [f"{INDENT}none (python eval.py --load_model_path {path})"]


def format_size(size: int) -> str:
    """1.2 MB, 340 kB, 12 B."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
