"""status.json: what a run (or evaluation) is doing now, kept up to date while it runs.

Values: running, finished, interrupted (Ctrl-C / SIGTERM: saved, resumable) and failed
(with the error). A run killed outright (SIGKILL, power loss) stays "running" with a
stale `updated` time. Written atomically, so a reader never sees half a file.
"""

import json
from datetime import datetime
from pathlib import Path

from utils.atomic import atomic_write_text


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


class RunStatus:
    """Reads and updates `<folder>/status.json`."""

    def __init__(self, folder: str | Path, enabled: bool = True) -> None:
        """`enabled=False`: the other processes under torchrun, which write nothing."""
        self.path = Path(folder) / "status.json"
        self.enabled = enabled

    @property
    def values(self) -> dict:
        """The file as it is now (read again each time: train.py's main and Trainer both write it)."""
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _write(self, **values) -> None:
        if not self.enabled:
            return
        atomic_write_text(self.path, json.dumps({**self.values, **values, "updated": now()}, indent=2) + "\n")

    def running(self, resumed_from: str | None = None, changed_args: dict | None = None,
                code: dict | None = None) -> None:
        """Mark the start, or a resumption (recorded with the arguments it changed and the
        code it resumed with)."""
        if resumed_from is None:
            self._write(status="running", started=now(), ended=None, error=None, resumes=[])
            return
        resume = {"time": now(), "from": resumed_from, "changed_args": changed_args or {}, **(code or {})}
        self._write(status="running", ended=None, error=None, resumes=self.values.get("resumes", []) + [resume])

    def progress(self, epoch: int, step: int, best: dict[str, float], best_epoch: int) -> None:
        """After each epoch: how far the run is and its best monitored value so far, so that a
        listing of runs needs no checkpoint."""
        self._write(epoch=epoch, global_step=step, best=best, best_epoch=best_epoch)

    def finished(self, **details: object) -> None:
        """The run ended normally; `details` e.g. `stopped_early={"epoch": 7, ...}`."""
        self._write(status="finished", ended=now(), **details)

    def interrupted(self, reason: str, resume_command: str) -> None:
        self._write(status="interrupted", ended=now(), error=reason, resume_command=resume_command)

    def failed(self, error: BaseException) -> None:
        self._write(status="failed", ended=now(), error=f"{type(error).__name__}: {error}")
