"""status.json: what a run (or evaluation) is doing now, kept up to date while it runs.

Values: running, finished, interrupted (Ctrl-C / SIGTERM: saved, resumable) and failed
(with the error). A run killed outright (SIGKILL, power loss, a node that vanished) cannot
write anything, so it stays "running"; to tell it from a live run, `running()` records the
`host` and `pid` of the process, and `start_heartbeat()` rewrites `heartbeat` (an ISO time
with time zone) every minute from a background thread while the run lives. A reader
(`python -m runs`, utils/liveness.py) calls a "running" run dead when its process is gone
from this host, or its heartbeat stopped. Written atomically, so a reader never sees half a
file; only when the disk is too full for that is the file rewritten in place, so that a run
stopped by a full disk still says so.
"""

import json
import os
import socket
import threading
from datetime import datetime
from pathlib import Path

from utils.atomic import DISK_FULL, WriteError, atomic_write_bytes, overwrite_in_place
from utils.small_files import read_json_file

# Every write is read-modify-write of the whole file, and a run has several writers: train.py's
# main and the Trainer each hold a RunStatus, and the heartbeat thread writes too. One lock for
# all of them in this process, so that no write is built on a file another is replacing
# (which would lose, say, the "finished" a heartbeat raced with).
_WRITE_LOCK = threading.RLock()


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


class RunStatus:
    """Reads and updates `<folder>/status.json`."""

    def __init__(self, folder: str | Path, enabled: bool = True) -> None:
        """`enabled=False`: the other processes under torchrun, which write nothing."""
        self.path = Path(folder) / "status.json"
        self.enabled = enabled
        self._heartbeat: threading.Thread | None = None
        self._stop_heartbeat = threading.Event()

    @property
    def values(self) -> dict:
        """The file as it is now (read again each time: train.py's main and Trainer both write it)."""
        try:
            values = read_json_file(self.path)  # a hand-made FIFO or nested junk: as if there were none
        except (OSError, ValueError):
            return {}
        return values if isinstance(values, dict) else {}

    def _write(self, **values) -> None:
        """Atomically; on a disk too full for that, in place (how a run ended must still be said)."""
        if not self.enabled:
            return
        with _WRITE_LOCK:
            data = (json.dumps({**self.values, **values, "updated": now()}, indent=2) + "\n").encode("utf-8")
            try:
                atomic_write_bytes(self.path, data)
            except WriteError as error:
                if error.errno not in DISK_FULL or not self.path.is_file():
                    raise
                overwrite_in_place(self.path, data)

    def running(self, resumed_from: str | None = None, changed_args: dict | None = None,
                code: dict | None = None) -> None:
        """Mark the start, or a resumption (recorded with the arguments it changed and the
        code it resumed with). Either way, record which process runs it (host and pid)."""
        process = {"host": socket.gethostname(), "pid": os.getpid()}
        if resumed_from is None:
            self._write(status="running", started=now(), ended=None, error=None, resumes=[], **process)
            return
        resume = {"time": now(), "from": resumed_from, "changed_args": changed_args or {}, **(code or {})}
        resumes = self.values.get("resumes")
        resumes = resumes if isinstance(resumes, list) else []
        self._write(status="running", ended=None, error=None, resumes=resumes + [resume], **process)

    def progress(self, epoch: int, step: int, best: dict[str, float], best_epoch: int) -> None:
        """After each epoch: how far the run is and its best monitored value so far, so that a
        listing of runs needs no checkpoint."""
        self._write(epoch=epoch, global_step=step, best=best, best_epoch=best_epoch)

    def finished(self, **details: object) -> None:
        """The run ended normally; `details` e.g. `stopped_early={"epoch": 7, ...}`."""
        self._write(status="finished", ended=now(), **details)

    def interrupted(self, reason: str, resume_command: str | None) -> None:
        """Stopped by a signal; `resume_command` None: nothing was saved to resume from."""
        self._write(status="interrupted", ended=now(), error=reason, resume_command=resume_command)

    def failed(self, error: BaseException) -> None:
        self._write(status="failed", ended=now(), error=f"{type(error).__name__}: {error}")

    def start_heartbeat(self, interval_s: float = 60) -> None:
        """Write `heartbeat` now and then every `interval_s` seconds from a daemon thread, until
        `stop_heartbeat()` (or the process ends). Readers call a run whose heartbeat is older
        than utils/liveness.py's STALE_HEARTBEAT_S dead, so keep the interval well below it.
        Does nothing when disabled or already beating."""
        if not self.enabled or self._heartbeat is not None:
            return
        if not interval_s > 0:
            raise ValueError(f"heartbeat interval {interval_s!r} s: give a positive number of seconds")
        self._stop_heartbeat.clear()
        self._beat()  # at once: a reader sees a heartbeat from the start
        self._heartbeat = threading.Thread(target=self._beat_until_stopped, args=(interval_s,),
                                           name="status-heartbeat", daemon=True)
        self._heartbeat.start()

    def stop_heartbeat(self) -> None:
        """Stop the heartbeat thread and wait for it (a write in progress completes first)."""
        if self._heartbeat is None:
            return
        self._stop_heartbeat.set()
        self._heartbeat.join()
        self._heartbeat = None

    def _beat_until_stopped(self, interval_s: float) -> None:
        while not self._stop_heartbeat.wait(interval_s):
            self._beat()

    def _beat(self) -> None:
        """One heartbeat. A write that fails (disk full, folder removed) is skipped: the run
        itself must not stop for it, and a reader then sees an ageing heartbeat."""
        try:
            self._write(heartbeat=now())
        except OSError:  # a WriteError too
            pass
