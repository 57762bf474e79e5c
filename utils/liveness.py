"""Is a run that says "running" still running? The runs table, `--show`, the sweep, and eval.py
and predict.py before they take the newest run (utils/run_search.py), ask here.

A run killed outright (SIGKILL, out of memory, power loss, a lost node) never writes its
end, so its status.json says "running" for ever. It is called dead when either

- it ran on this host (`host`) and its process (`pid`) is gone, or that pid now belongs to
  another program (pids are reused: one whose command line, /proc/<pid>/cmdline where /proc
  exists, names neither train.py nor eval.py); or
- its `heartbeat`, rewritten every minute by a live run (utils/run_status.py), is older than
  STALE_HEARTBEAT_S: this covers runs on other hosts, which cannot be asked directly.

Runs without those fields (made before they existed, or by hand) are not guessed at: they
stay "running". Standard library only.
"""

import os
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path

# A heartbeat older than this means the run is dead: ten missed beats at the default
# one-minute interval, so a briefly frozen machine or a slow disk is not taken for a death.
STALE_HEARTBEAT_S = 600
PROC = Path("/proc")
RUN_SCRIPTS = ("train.py", "eval.py")


def shown_status(status: dict) -> str | None:
    """The status to show: status.json's, or "dead" for a running run that is not."""
    value = status.get("status")
    if value == "running" and dead_reason(status) is not None:
        return "dead"
    return value if isinstance(value, str) else None


def dead_reason(status: dict, now: datetime | None = None) -> str | None:
    """Why a run whose status.json says "running" is dead, or None if it may be alive (or
    does not say "running")."""
    if status.get("status") != "running":
        return None
    host, pid = status.get("host"), status.get("pid")
    if host == socket.gethostname() and is_pid(pid):
        gone = process_gone(pid)
        if gone is not None:
            return gone
    heartbeat = heartbeat_time(status.get("heartbeat"))
    if heartbeat is not None:
        age = (now or datetime.now(timezone.utc)) - heartbeat
        if age > timedelta(seconds=STALE_HEARTBEAT_S):
            return f"no heartbeat for {int(age.total_seconds() // 60)} min (since {status['heartbeat']})"
    return None


def is_pid(value: object) -> bool:
    """A plausible process id: a positive int (not a bool; 0 and -1 would address groups)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31


def process_gone(pid: int, scripts: tuple[str, ...] = RUN_SCRIPTS) -> str | None:
    """Why process `pid` of this host is not the run any more (gone, or running none of
    `scripts`), or None if it may be."""
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return f"its process {pid} is gone"
    except OSError:  # PermissionError: it exists, owned by someone else
        pass
    try:
        command = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:  # no /proc here (macOS), or the process just ended: trust os.kill
        return None
    arguments = command.decode("utf-8", "replace").split("\0")
    if not any(script in argument for argument in arguments for script in scripts):
        return f"its pid {pid} now belongs to another program"
    return None


def heartbeat_time(text: object) -> datetime | None:
    """The heartbeat as a time, or None if absent, malformed or without a time zone (edited by
    hand: whose clock it means is unknown, so it is not guessed at)."""
    try:
        time = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return time if time is not None and time.tzinfo is not None else None
