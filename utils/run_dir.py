"""`RunDir`: the one owner of a run's (or an evaluation's) folder and of what it says about
itself: args.json, command.sh, run_info.json, status.json, log.txt, and the lock.

main() makes it before anything is built (`RunDir.new` / `RunDir.existing` only decide the
folder), and `open()` once everything has been checked: a run that fails on bad input
leaves no folder behind. A new folder is claimed with a single `mkdir` (no `exist_ok`), so
two runs started in the same second, even concurrently, never share one: the second gets a
`_1` suffix (finding runs again: utils/run_search.py). One process writes a folder at a
time: `open()` takes an OS lock (released when the process ends, however it ends), so a
second `--resume` of a run still training is refused, naming the process that holds it.
Under torchrun rank 0 writes; the other processes learn the path and write nothing.
"""

import errno
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
from argparse import Namespace
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from utils.atomic import atomic_write_text
from utils.distributed import broadcast_from_main, is_main_process
from utils.errors import UserError
from utils.logger import log_to_file, stop_log_file
from utils.run_info import collect_run_info, save_run_info
from utils.run_status import RunStatus

log = logging.getLogger(__name__)
LOCK_FILE = ".lock"


class RunDir:
    """A run's folder: where it is, its status, and the records written when it opens."""

    def __init__(self, parent: Path, name: str, exists: bool) -> None:
        self.path = Path(parent) / name  # for a new run, final once open() has claimed a name
        self.exists = exists
        self.writer = is_main_process()
        self.status = RunStatus(self.path, enabled=False)
        self.run_id: str | None = None  # run_info.json's, written into every checkpoint
        self._lock: int | None = None

    @classmethod
    def new(cls, parent: str | Path, name: str) -> "RunDir":
        """A folder `<parent>/<name>` (or `<name>_1`, ...) that open() will create."""
        return cls(Path(parent), name, exists=False)

    @classmethod
    def existing(cls, path: str | Path) -> "RunDir":
        """A run's folder to continue (--resume)."""
        path = Path(path)
        return cls(path.parent, path.name, exists=True)

    def open(self, args: Namespace, script: str, argv: list[str], resumed: dict | None = None,
             info: dict | None = None) -> None:
        """Create (or lock and reopen) the folder and write its records: args.json, command.sh
        and run_info.json (plus `info`) for a new folder, status.json "running" (with the
        resumption recorded), and log.txt from now on. `resumed`: {"from", "changed_args"}."""
        path = None
        if self.writer:
            path = self._lock_existing() if self.exists else self._create()
        self.path = Path(broadcast_from_main(str(path) if path else None))
        self.status = RunStatus(self.path, enabled=self.writer)
        if not self.writer:
            return
        save_args(args, self.path)
        log_to_file(self.path / "log.txt")
        if resumed is None:
            save_command(self.path, script, argv)
            self.run_id = save_run_info(self.path, extra=info)["run_id"]
            self.status.running()
        else:
            self.run_id = read_run_id(self.path)
            info, _ = collect_run_info()
            self.status.running(resumed_from=resumed["from"], changed_args=resumed["changed_args"],
                                code={"git_commit": info["git_commit"], "git_dirty": info["git_dirty"]})
            log.info(f"Resuming {self.path} from {resumed['from']}")
        self.status.start_heartbeat()  # so that `python -m runs` can tell a killed run from a running one

    def close(self) -> None:
        """Stop writing log.txt and release the lock (the OS would at exit; tests run several
        runs in one process)."""
        self.status.stop_heartbeat()
        if self.writer:
            stop_log_file(self.path / "log.txt")
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _create(self) -> Path:
        """Claim a new folder, with a message naming the cause when the file system refuses."""
        try:
            path = create_unique_dir(self.path)
        except OSError as error:
            raise UserError(unusable_folder(self.path, error)) from None
        self._take_lock(path)
        return path

    def _lock_existing(self) -> Path:
        """Lock a run to continue it, and remove what killed saves left (`.<name>.*.tmp`)."""
        self._take_lock(self.path)
        for leftover in self.path.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
        return self.path

    def _take_lock(self, folder: Path) -> None:
        try:
            fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise UserError(unusable_folder(folder, error)) from None
        try:  # a POSIX lock: held by this process alone (not its DataLoader workers), gone when it ends
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise UserError(f"{folder} is being written by {holder}; one process writes a run at a time. "
                            "Wait for it to end (or stop it: it saves), then resume.") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}, since {datetime.now():%Y-%m-%d %H:%M:%S}"
                 .encode())
        self._lock = fd


def run_reporting(run: RunDir, debug: bool, work: Callable[[], None]) -> int:
    """Do `work` (which opens `run`) and keep status.json true: finished, or failed with the
    error. A UserError becomes one message and exit code 2 (its traceback with --debug); any
    other exception is a bug, recorded and shown in full. The folder is closed either way."""
    try:
        work()
        run.status.finished()
    except UserError as error:
        run.status.failed(error)
        if debug:
            raise
        log.error(f"error: {error}")
        return 2
    except BaseException as error:
        run.status.failed(error)
        raise
    finally:
        run.close()
    return 0


def read_run_id(folder: Path) -> str | None:
    """The run_id in a run's run_info.json (None if it cannot be read)."""
    try:
        info = json.loads((folder / "run_info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info.get("run_id") if isinstance(info, dict) else None


def unusable_folder(path: Path, error: OSError) -> str:
    """Why a run folder cannot be made or written, in the user's terms."""
    if error.errno == errno.ENAMETOOLONG:
        return (f"The folder name {path.name!r} ({len(path.name)} characters) is too long for the file system; "
                "use a shorter --save_prefix, --exp or --checkpoints_dir.")
    if error.errno in (errno.ENOTDIR, errno.EEXIST) and not path.parent.is_dir():
        return f"{path.parent} is a file, not a folder: give a folder as --checkpoints_dir (or --output_dir)."
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"No permission to write in {path.parent} ({error.strerror}); choose a writable folder."
    if error.errno == errno.ENOSPC:
        return f"No space left on the device holding {path.parent}; free some space or choose another folder."
    return f"Cannot write the folder {path} ({error.strerror or error})."


def create_unique_dir(path: str | Path) -> Path:
    """Create `path`, or `path_1`, `path_2`, ... if taken; never reuse an existing folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate, suffix = path, 0
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            if not path.parent.is_dir():
                raise
            suffix += 1
            candidate = path.with_name(f"{path.name}_{suffix}")


def run_dir_name(model_type: str, save_prefix: str) -> str:
    """`<model_type>_<save_prefix>_<YYYYmmdd-HHMMSS>`: sorts by time, says what ran."""
    return f"{model_type}_{save_prefix}_{datetime.now():%Y%m%d-%H%M%S}"


def save_args(args: Namespace, folder: Path) -> None:
    """args.json (machine readable) and args.txt (one `name: value` a line)."""
    values = vars(args)
    atomic_write_text(folder / "args.json", json.dumps(values, indent=2, sort_keys=True) + "\n")
    atomic_write_text(folder / "args.txt", "".join(f"{k}: {v}\n" for k, v in sorted(values.items())))


def python_command() -> list[str]:
    """The interpreter running now, as a command that works where the run was started: a
    virtualenv's python by its path (relative when inside the current folder), since after
    the README's set-up nothing is activated and `python` may not exist."""
    executable = Path(sys.executable)
    try:
        return [executable.relative_to(Path.cwd()).as_posix()]
    except ValueError:
        return [str(executable)]


def launcher() -> list[str]:
    """How the script was started: this Python, or torchrun (as `python -m torch.distributed.run`,
    which needs no activated environment either) with its process counts. Multi-node runs also
    need the rendezvous flags of the original command, which torchrun does not pass on."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return python_command()
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    nodes = int(os.environ["WORLD_SIZE"]) // per_node
    return [*python_command(), "-m", "torch.distributed.run", f"--nproc_per_node={per_node}",
            *([f"--nnodes={nodes}"] if nodes > 1 else [])]


def save_command(folder: Path, script: str, argv: list[str]) -> None:
    """command.sh: the exact command line, re-runnable (it starts a new run directory)."""
    command = shlex.join([*launcher(), script, *argv])
    text = (
        "#!/usr/bin/env bash\n"
        f"# Recorded {datetime.now():%Y-%m-%d %H:%M:%S}. Re-running it starts a new run directory.\n"
        f"cd {shlex.quote(os.getcwd())}\n"
        f"{command}\n"
    )
    atomic_write_text(folder / "command.sh", text)
    (folder / "command.sh").chmod(0o755)


def check_folder_name(flag: str, name: str) -> None:
    """--exp and --save_prefix each become (part of) one folder name under the checkpoints
    folder: refuse anything that would be several folders, leave it, or hide it (hidden
    folders are skipped when looking for runs)."""
    bad = not name or name != name.strip() or name.startswith(".") or any(c in name for c in "/\\\0")
    if bad or name in (".", ".."):
        raise UserError(f"{flag} {name!r} is not a folder name: use one non-empty name without '/' or "
                        "'\\', not starting with '.' and without spaces at either end, e.g. lr_sweep.")


def experiment_dir(checkpoints_dir: str | Path, exp: str | None) -> Path:
    """Where a new run directory goes: `<checkpoints_dir>/<exp>/`, or `<checkpoints_dir>/`."""
    return Path(checkpoints_dir) / exp if exp else Path(checkpoints_dir)
