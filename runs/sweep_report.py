"""What the sweep prints: the plan (--dry_run), a progress bar with a line per ended run, and
the summary at the end (finished / failed with each error / interrupted / not started)."""

import shlex
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from runs.sweep_manifest import entry_run_dir
from runs.sweep_runner import Job, Task

ORDER = ("finished", "failed", "interrupted", "dead", "running", "pending")
WHAT_NEXT = {
    "failed": "failed (rerun with --retry_failed, as new runs)",
    "interrupted": "interrupted (the same command resumes them)",
    "dead": "dead: ended without a word (the same command resumes them)",
    "running": "still running, started by an earlier sweep or by hand (left alone)",
    "pending": "not started",
}


class Progress:
    """One tqdm bar over the sweep's points (finished or failed count as done, failures shown
    beside it), and one line per run that ends."""

    def __init__(self, manifest: dict, exp_dir: Path, tasks: list[Task]) -> None:
        self.manifest, self.exp_dir = manifest, exp_dir
        to_run = {id(task.entry) for task in tasks}
        self.initial = sum(entry["state"] in ("finished", "failed") and id(entry) not in to_run
                           for entry in manifest["points"])

    def __enter__(self) -> "Progress":
        from tqdm import tqdm  # the only package the runs tools use besides the standard library

        self.write = tqdm.write
        self.bar = tqdm(total=len(self.manifest["points"]), initial=self.initial, desc=self.exp_dir.name, unit="run")
        self.bar.set_postfix(failed=self.count("failed"))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.bar.close()

    def count(self, state: str) -> int:
        return sum(entry["state"] == state for entry in self.manifest["points"])

    def report(self, job: Job, state: str) -> None:
        """A run ended: say how, and move the bar."""
        entry = job.task.entry
        run_dir = entry_run_dir(entry, self.exp_dir)
        detail = f": {entry['error']} (log: {job.log})" if state == "failed" else f" -> {run_dir or '?'}"
        self.write(f"{state}: {entry['label']}{detail}")
        if state in ("finished", "failed"):
            self.bar.update(1)
        self.bar.set_postfix(failed=self.count("failed"))


def describe_plan(manifest: dict, tasks: list[Task], exp_dir: Path, command: Callable[[Task], list[str]]) -> str:
    """--dry_run: each point with what would happen to it, and the command it would run."""
    planned = {id(task.entry): task for task in tasks}
    lines = [f"Sweep {manifest['exp']} in {exp_dir}: {len(manifest['points'])} points, {len(tasks)} to run."]
    for entry in manifest["points"]:
        task = planned.get(id(entry))
        if task is not None:
            lines.append(f"  {task.action:<9}{entry['label']}: {shlex.join(command(task))}")
        else:
            lines.append(f"  {'skip':<9}{entry['label']}: {entry['state']}, {describe(entry, exp_dir)}"
                         + (" (--retry_failed reruns it)" if entry["state"] == "failed" else ""))
    lines.append("Nothing was run (--dry_run).")
    return "\n".join(lines)


def summary(manifest: dict, exp_dir: Path, grid_names: list[str], stopped: int | None) -> tuple[str, bool]:
    """The end of a sweep: counts by state, the failed runs with their errors, the runs still
    to do, and the command that compares the runs; and whether every point finished."""
    points = manifest["points"]
    counts = Counter(entry["state"] for entry in points)
    head = f"Sweep {manifest['exp']}: {len(points)} points: " + ", ".join(
        f"{counts[state]} {state}" for state in ORDER if counts[state])
    lines = [f"Stopped by {signal.Signals(stopped).name}." if stopped else "", head]
    for state in ORDER[1:]:
        entries = [entry for entry in points if entry["state"] == state]
        if entries:
            lines.append(f"{WHAT_NEXT[state]}:")
            lines += [f"  {entry['label']}: {describe(entry, exp_dir)}" for entry in entries]
    group_by = "".join(f" --group_by {name}" for name in grid_names)
    lines.append(f"Compare: python -m runs {exp_dir}{group_by}")
    return "\n".join(line for line in lines if line), counts["finished"] == len(points)


def describe(entry: dict, exp_dir: Path) -> str:
    """A point's run directory, or its error and log."""
    run_dir = entry_run_dir(entry, exp_dir)
    if entry["state"] in ("failed", "dead"):
        return f"{entry.get('error') or '?'} (log: {exp_dir / entry['log']})"
    return str(run_dir) if run_dir is not None else "no run directory yet"
