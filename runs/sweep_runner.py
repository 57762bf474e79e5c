"""Running a sweep's points as train.py processes: what each point needs next, N processes at
once, each with its own log file and GPUs, and what became of each.

Each job's stdout and stderr go to `<exp>/sweep_logs/<point>.log` (appended to: one header
line per attempt). The sweep learns a new run's directory from the `Run directory: <path>`
line train.py logs once the directory exists: every job has its own log, so two jobs that
start in the same second cannot be confused. A job's state comes from its exit code (0
finished; 128 + SIGINT/SIGTERM, or killed by a signal: interrupted; else failed) and, for a
failure, the error in its status.json (else the last `error:` line of its log).

Ctrl-C reaches every process of the terminal's foreground group: each train.py saves and
stops, and the sweep stops starting jobs, waits for the running ones, records them as
interrupted and exits 128 + the signal number. The sweep never passes a signal on itself:
train.py stops at once, unsaved, on a second one. To stop a sweep from another shell, signal
its process group (`kill -INT -- -<pgid>`, printed at the start).
"""

import os
import re
import shlex
import signal
import socket
import subprocess
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from runs.gpus import slot_devices
from runs.reader import read_json
from runs.sweep_manifest import entry_run_dir, save_manifest, stored_path
from utils.atomic import writing
from utils.liveness import RUN_SCRIPTS, dead_reason, is_pid, process_gone
from utils.run_search import is_run_dir

POLL_S = 0.2  # how often running jobs are checked
RUN_DIR_LINE = re.compile(r"Run directory: ([^\r\n]+)")
ERROR_LINE = re.compile(r"error:", re.IGNORECASE)
STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL, signal.SIGHUP)  # exits that leave a resumable run


@dataclass
class Task:
    """What to do for one point: start a `new` run, or `resume` its run directory."""

    entry: dict
    action: str
    run_dir: Path | None = None


@dataclass
class Job:
    """A running train.py process of one task, in job slot `slot` (its GPUs)."""

    task: Task
    process: subprocess.Popen
    slot: int
    log: Path
    offset: int  # where this attempt's output starts in the log


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def refresh_state(entry: dict, exp_dir: Path) -> None:
    """Bring a point's state up to date with its run's status.json: the manifest is stale when
    a sweep was killed outright, or when someone resumed a run by hand. A point whose
    train.py still runs (its sweep was killed outright, before the run named its folder)
    stays "running": starting it again would train the point twice."""
    if entry["state"] == "running" and entry.get("run_dir") is None and entry["attempts"]:
        attempt = entry["attempts"][-1]
        learn_run_dir(entry, exp_dir / entry["log"], attempt.get("log_offset", 0), exp_dir)
        if entry.get("run_dir") is None and attempt_alive(attempt):
            return
    run_dir = entry_run_dir(entry, exp_dir)
    status = read_json(run_dir / "status.json", [], required=False) if run_dir is not None else None
    value = (status or {}).get("status")
    if value == "finished":
        entry["state"], entry["error"] = "finished", None
    elif value == "running":
        reason = dead_reason(status)
        entry["state"], entry["error"] = ("dead", f"dead: {reason}") if reason else ("running", None)
    elif entry["state"] == "running":  # its sweep never saw it end
        entry["state"] = value if value in ("failed", "interrupted") else "interrupted"
        entry["error"] = status_error(status) if value == "failed" else None


def plan_task(entry: dict, exp_dir: Path, retry_failed: bool) -> Task | None:
    """What to do for a point now (after refresh_state), or None to leave it as it is."""
    state, run_dir = entry["state"], entry_run_dir(entry, exp_dir)
    if state in ("finished", "running") or (state == "failed" and not retry_failed):
        return None
    if state in ("interrupted", "dead") and run_dir is not None and (run_dir / "last.pth").is_file():
        return Task(entry, "resume", run_dir)
    return Task(entry, "new")  # pending, a failure to retry, or stopped before its first checkpoint


def task_command(task: Task, script: list[str], flags: list[str]) -> list[str]:
    """`script` (python train.py) with, for a new run, `flags`; for a resumption, --resume <run dir>."""
    return [*script, "--resume", str(task.run_dir)] if task.action == "resume" else [*script, *flags]


def start_job(task: Task, command: list[str], slot: int, devices: list[str] | None, gpus_per_job: int | None,
              exp_dir: Path) -> Job:
    """Start one train.py process, its output appended to the point's log; record the attempt."""
    entry, env = task.entry, {**os.environ, "PYTHONUNBUFFERED": "1"}  # log lines as they happen
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = slot_devices(slot, devices, gpus_per_job)
    log = exp_dir / entry["log"]
    with writing(log):  # a full disk: one message
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as out:
            offset = out.tell()
            gpus = f" (CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']})" if devices is not None else ""
            out.write(f"==== {now()} sweep, {task.action}: {shlex.join(command)}{gpus}\n")
            out.flush()
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env)
    entry["attempts"].append({"action": task.action, "command": command, "started": now(), "ended": None,
                              "exit_code": None, "state": "running", "log_offset": offset,
                              "run_dir": entry["run_dir"] if task.action == "resume" else None,
                              "pid": process.pid, "host": socket.gethostname()})  # to tell, later, if it still runs
    entry["state"], entry["error"] = "running", None
    if task.action == "new":
        entry["run_dir"] = None
    return Job(task, process, slot, log, offset)


def attempt_alive(attempt: dict) -> bool:
    """Whether an attempt's process still runs on this host (its script, not a reused pid)."""
    pid, command = attempt.get("pid"), attempt.get("command") or []
    if attempt.get("host") != socket.gethostname() or not is_pid(pid):
        return False
    script = Path(str(command[1])).name if len(command) > 1 else None
    return process_gone(pid, (script,) if script else RUN_SCRIPTS) is None


def learn_run_dir(entry: dict, log: Path, offset: int, exp_dir: Path) -> bool:
    """Take a new run's directory from its `Run directory:` log line; True when learnt now."""
    if entry.get("run_dir") is not None:
        return False
    match = RUN_DIR_LINE.search(read_log(log, offset))
    if match is None or not is_run_dir(Path(match.group(1).strip())):
        return False
    entry["run_dir"] = stored_path(Path(match.group(1).strip()), exp_dir)
    if entry["attempts"]:
        entry["attempts"][-1]["run_dir"] = entry["run_dir"]
    return True


def read_log(log: Path, offset: int) -> str:
    """One attempt's output: the log from `offset` on ("" if the log cannot be read)."""
    try:
        with open(log, encoding="utf-8", errors="replace") as file:
            file.seek(offset)
            return file.read()
    except OSError:
        return ""


def finish_job(job: Job, exp_dir: Path) -> str:
    """Record how a job ended (state, error, attempt); returns the state."""
    entry, code = job.task.entry, job.process.returncode
    learn_run_dir(entry, job.log, job.offset, exp_dir)
    run_dir = entry_run_dir(entry, exp_dir)
    if code == 0:
        state, error = "finished", None
    elif code in [128 + number for number in STOPPING] or -code in STOPPING:
        state, error = "interrupted", None
    else:
        status = read_json(run_dir / "status.json", [], required=False) if run_dir is not None else None
        state = "failed"
        error = status_error(status) or last_error_line(read_log(job.log, job.offset)) or exit_description(code)
    entry["state"], entry["error"] = state, error
    entry["attempts"][-1].update(ended=now(), exit_code=code, state=state, run_dir=entry["run_dir"])
    return state


def status_error(status: dict | None) -> str | None:
    """The error a failed run recorded in its status.json."""
    error = (status or {}).get("error")
    return error if (status or {}).get("status") == "failed" and isinstance(error, str) and error else None


def last_error_line(output: str) -> str | None:
    """The last line of a log that says `error:` (train.py's one-line message for bad input),
    else the last line (a traceback's exception)."""
    lines = [line.strip() for line in re.split(r"[\r\n]+", output) if line.strip() and not line.startswith("====")]
    errors = [line for line in lines if ERROR_LINE.search(line)]
    return (errors or lines or [None])[-1]


def exit_description(code: int) -> str:
    """`exit code 1`, `killed by SIGSEGV`."""
    try:
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    except ValueError:
        return f"killed by signal {-code}"


class StopFlag:
    """While active, SIGINT and SIGTERM only record that the sweep should stop (the first
    signal's number); the loop then starts nothing new and waits for the running jobs."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopFlag":
        for number in (signal.SIGINT, signal.SIGTERM):
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame: types.FrameType | None) -> None:
        self.signal_number = self.signal_number or number


def run_tasks(tasks: list[Task], jobs: int, start: Callable[[Task, int], Job], exp_dir: Path, manifest: dict,
              report: Callable[[Job, str], None]) -> int | None:
    """Run the tasks, `jobs` at once, saving the manifest at each change; returns the number of
    the signal that stopped the sweep, or None when every task ran."""
    waiting, running, free_slots = list(tasks), [], list(range(jobs))
    with StopFlag() as stop:
        while running or (waiting and stop.signal_number is None):
            changed = False
            while waiting and free_slots and stop.signal_number is None:
                running.append(start(waiting.pop(0), free_slots.pop(0)))
                changed = True
            for job in list(running):
                changed |= learn_run_dir(job.task.entry, job.log, job.offset, exp_dir)
                if job.process.poll() is not None:
                    running.remove(job)
                    free_slots.append(job.slot)
                    report(job, finish_job(job, exp_dir))
                    changed = True
            if changed:
                save_manifest(exp_dir, manifest)
            time.sleep(POLL_S if running else 0)
        return stop.signal_number
