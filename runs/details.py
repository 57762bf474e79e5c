"""`python -m runs --show <run>`: everything one run directory records, on one screen.

Status and resumptions, the code (commit, uncommitted changes) and machine, the command,
every argument, a summary of metrics.csv, the files with their sizes and each evaluation's
results. Like the table it reads text files only and shows what it can of a broken run.
"""

from pathlib import Path

from runs.reader import RunRecord, best_epoch, duration_seconds, read_json, read_result_txt, scan_dirs
from runs.table import format_duration

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
    return "\n\n".join("\n".join(lines) for lines in sections)


def status_lines(status: dict | None) -> list[str]:
    """Status, times, error or resume command, and every resumption with its changed flags."""
    if status is None:
        return ["status   ? (status.json missing or unreadable)"]
    took = duration_seconds(status)
    lines = [f"status   {status.get('status', '?')}, started {status.get('started')}, ended {status.get('ended')}"
             + (f", took {format_duration(took)}" if took is not None else "")]
    if status.get("error"):
        lines.append(f"         error: {status['error']}")
    if status.get("status") == "interrupted" and status.get("resume_command"):
        lines.append(f"         resume with: {status['resume_command']}")
    for resume in [r for r in status.get("resumes") or [] if isinstance(r, dict)]:  # skip hand-edited junk
        changed = ", ".join(f"{name} {change.get('was')} -> {change.get('now')}"
                            for name, change in (resume.get("changed_args") or {}).items() if isinstance(change, dict))
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
    gpus = ", ".join(map(str, info.get("gpus") or [])) or "none"
    machine = (f"{info.get('host')}; python {info.get('python')}, torch {info.get('torch')}, torchvision "
               f"{info.get('torchvision')}, CUDA {info.get('cuda')}; GPUs: {gpus}")
    return [f"code     {code}", f"machine  {machine}"]


def command_lines(path: Path) -> list[str]:
    """The recorded command (command.sh's last line) and the folder it ran in."""
    try:
        lines = [line for line in (path / "command.sh").read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError):
        return ["command  ? (command.sh missing or unreadable)"]
    folder = next((line[3:] for line in lines if line.startswith("cd ")), "?")
    return [f"command  {lines[-1] if lines else '?'}", f"         in {folder}"]


def metrics_lines(record: RunRecord) -> list[str]:
    """Epochs done, the best monitored value, and first / last / min / max of every value."""
    rows = record.metrics
    if not rows:
        return ["metrics  none yet (no metrics.csv rows)"]
    best, epoch = best_epoch(record)
    monitor = (record.args or {}).get("monitor", "val/acc")
    lines = [f"metrics  {int(rows[-1]['epoch'])} of {(record.args or {}).get('epochs', '?')} epochs done"
             + (f"; best {monitor} {best:.6g} at epoch {epoch}" if best is not None else ""),
             f"{INDENT}{'name':<16}{'first':>12}{'last':>12}{'min':>12}{'max':>12}"]
    names = dict.fromkeys(name for row in rows for name in row if name != "epoch")
    for name in names:
        values = [row[name] for row in rows if name in row]
        numbers = "".join(f"{value:>12.5g}" for value in (values[0], values[-1], min(values), max(values)))
        lines.append(f"{INDENT}{name:<16}{numbers}")
    return lines


def file_lines(path: Path) -> list[str]:
    """Every file in the run directory with its size (checkpoints are not opened)."""
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    return [f"{INDENT}{p.name:<40}{format_size(p.stat().st_size):>10}" for p in files]


def evaluation_lines(path: Path, problems: list[str]) -> list[str]:
    """Each evaluation folder: its status, its top-level results and its files."""
    lines = []
    for folder in sorted(Path(f) for stem in scan_dirs(path) for f in scan_dirs(stem)):
        status = read_json(folder / "status.json", problems, required=False) or {}
        results = read_result_txt(folder / "result.txt", problems) if (folder / "result.txt").is_file() else {}
        main = "  ".join(f"{name} {value:.4g}" for name, value in results.items() if "/" not in name)
        per_class = sum("/" in name for name in results)
        lines.append(f"{INDENT}{folder.relative_to(path).as_posix()}  {status.get('status', '?')}  {main}"
                     + (f"  (+{per_class} per-class values)" if per_class else ""))
        files = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
        lines.append(f"{INDENT * 2}{' '.join(files)}")
    return lines or [f"{INDENT}none (python eval.py --load_model_path {path})"]


def format_size(size: int) -> str:
    """1.2 MB, 340 kB, 12 B."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
