"""`RunDir`: the one owner of a run's (or an evaluation's) folder and of what it says about
itself: args.json, command.sh, run_info.json, status.json, log.txt, and the lock; and of how
the run ends: finished, failed with its error, or interrupted by a signal it caught.

main() makes it before anything is built (`RunDir.for_training` / `RunDir.new` only decide
the folder), `open()`s it once everything has been checked (a run that fails on bad input
leaves no folder behind), and hands its work to `report()`, which keeps status.json true
however the work ends and turns it into the exit code. A new folder is claimed with a single `mkdir` (no `exist_ok`), so
two runs started in the same second, even concurrently, never share one: the second gets a
`_1` suffix (finding runs again: utils/run_search.py). One process writes a folder at a
time: `open()` takes an OS lock (released when the process ends, however it ends), so a
second `--resume` of a run still training is refused, naming the process that holds it.
Under torchrun rank 0 writes; the other processes learn the path and write nothing.
"""

import contextlib
import errno
import fcntl
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import sys
import tempfile
from argparse import Namespace
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from utils.atomic import DISK_FULL, atomic_write_text, write_error
from utils.distributed import any_rank, broadcast_from_main, cleanup_distributed, is_main_process
from utils.errors import UserError
from utils.logger import log_to_file, stop_log_file
from utils.run_info import collect_run_info, save_run_info
from utils.run_search import read_run_id
from utils.run_status import RunStatus, now
from utils.stop_signals import StopRequested, StopSignals

log = logging.getLogger(__name__)
LOCK_FILE = ".lock"


@dataclass
class Resume:
    """What --resume continues from: the run's last.pth, read once, and the flags it changes."""

    path: Path
    checkpoint: dict
    changed: dict[str, tuple[object, object]]  # flag -> (the run's value, the value now)

    @property
    def finished(self) -> bool:
        """Whether the run said it finished: one killed after saving its last epoch did not,
        and resuming it finishes it (its names repaired)."""
        return RunStatus(self.path.parent).values.get("status") == "finished"

    def record(self) -> dict:
        """The resumption as status.json records it."""
        return {"from": str(self.path),
                "changed_args": {name: {"was": old, "now": new} for name, (old, new) in self.changed.items()}}


class RunDir:
    """A run's folder: where it is, its status, and the records written when it opens."""

    def __init__(self, parent: Path, name: str, exists: bool, temporary: bool = False) -> None:
        self.path = Path(parent) / name  # for a new run, final once open() has claimed a name
        self.exists = exists
        self.temporary = temporary  # removed when the work is done (--fast_dev_run)
        self.writer = is_main_process()
        self.status = RunStatus(self.path, enabled=False)
        self.run_id: str | None = None  # run_info.json's, written into every checkpoint
        self.script = ""  # the program that opened it, for the resume command
        self.stop = StopSignals()
        self.opened = False  # open() made (or locked) the folder
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

    @classmethod
    def for_training(cls, args: Namespace, resume: Resume | None) -> "RunDir":
        """A training run's folder: the resumed one (`resume.path`'s), a new one in
        --checkpoints_dir (or its --exp folder), or for --fast_dev_run a temporary one."""
        name = run_dir_name(args.model_type, args.save_prefix)
        if resume is not None:
            run = cls.existing(resume.path.parent)
        elif args.fast_dev_run:
            run = cls(Path(tempfile.mkdtemp(prefix="fast_dev_run-")), name, exists=False, temporary=True)
        else:
            run = cls.new(experiment_dir(args.checkpoints_dir, args.exp), name)
        run.stop.warning_waits = True  # Slurm's warning while the run is set up: saved at its first step
        return run

    def open(self, args: Namespace, script: str, argv: list[str], resumed: dict | None = None,
             info: dict | None = None) -> None:
        """Create (or lock and reopen) the folder and write its records: status.json "running"
        first (with the resumption recorded), then args.json, command.sh and run_info.json
        (plus `info`) for a new folder, and log.txt from now on. A stop signal meanwhile is
        answered once they are written: the run ends interrupted, its folder whole.
        `resumed`: {"from", "changed_args"}."""
        self.script = script
        path = None
        with self.stop.deferring():
            if self.writer:
                path = self._lock_existing() if self.exists else self._create()
                log.info(f"Run directory: {path}")  # at once: a sweep learns its run's folder from this line
            self.path = Path(broadcast_from_main(str(path) if path else None))
            self.status = RunStatus(self.path, enabled=self.writer)
            self.opened = True
            if self.writer:
                self._write_records(args, argv, resumed, info)
        if any_rank(self.stop.urgent):
            self.stop_now()

    def _write_records(self, args: Namespace, argv: list[str], resumed: dict | None, info: dict | None) -> None:
        """status.json before anything else: a process killed while the folder is set up
        leaves a folder that says whose it was (host, pid), so it is shown dead, not unknown;
        args.json, which makes it a run directory, comes after."""
        log_to_file(self.path / "log.txt")
        if resumed is None:
            self.status.running()
            save_args(args, self.path)
            save_command(self.path, self.script, argv)
            self.run_id = save_run_info(self.path, extra=info)["run_id"]
        else:
            self.run_id = read_run_id(self.path)
            code, _ = collect_run_info()
            self.status.running(resumed_from=resumed["from"], changed_args=resumed["changed_args"],
                                code={"git_commit": code["git_commit"], "git_dirty": code["git_dirty"]})
            save_args(args, self.path)
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

    def progress(self, epoch: int, step: int, best: dict[str, float | None], best_epoch: int | None) -> None:
        """After each epoch: how far the run is, and its best monitored value (status.json)."""
        self.status.progress(epoch, step, best=best, best_epoch=best_epoch)

    def trial_id(self, checkpoints_dir: str | Path) -> str:
        """The run's name in TensorBoard's HPARAMS table, whose column shows some 14
        characters: the time it started first (the runs of a sweep differ there), then its
        folder within `checkpoints_dir`, e.g. `17:21:06 lr_sweep/base_exp_20261203-172106`."""
        started = str(self.status.values.get("started") or now())  # ISO: 2026-12-03T17:21:06+00:00
        path = Path(os.path.abspath(self.path))
        root = Path(os.path.abspath(checkpoints_dir))
        return f"{started[11:19]} {path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name}"

    @contextlib.contextmanager
    def catching_stop_signals(self) -> Iterator[None]:
        """While training: Ctrl-C, SIGTERM and SIGUSR1 become a request (`stop.requested`)
        that the loop answers after its step, by saving; a second Ctrl-C stops at once."""
        with self.stop, self.stop.deferring():
            yield

    def stop_now(self) -> None:
        """Unwind to report() after the loop saved for a stop request: the run ends interrupted."""
        raise StopRequested(self.stop.signal_number or signal.SIGTERM)

    def report(self, work: Callable[[], dict | None], debug: bool) -> int:
        """Do `work` (which opens this folder) and keep status.json true, whatever happens:
        finished (with the details `work` returns), interrupted by a caught signal (saved: the
        resume command is printed; exit code 128 + the signal), or failed with the error. A
        UserError (a full disk too: utils/atomic.py) becomes one message and exit code 2 (its
        traceback with --debug); any other exception is a bug, recorded and shown in full. The
        folder is closed and torchrun's process group left either way; a temporary folder is
        removed."""
        try:
            with self.stop:  # from the start: a stop before anything is written ends it at once, cleanly
                details = work() or {}
            self.status.finished(**details)
            if self.temporary:
                log.info("--fast_dev_run: one training and one validation batch ran; nothing is kept.")
        except StopRequested as stop:
            return self.interrupted(stop.signal_number)
        except (UserError, OSError) as error:
            if not isinstance(error, UserError):  # a plain OSError: a bug, unless a library met a full disk
                if error.errno not in DISK_FULL:
                    return self.failed_by_bug(error)
                error = write_error(error.filename or self.path, error)
            self.record_end(self.status.failed, error)
            if debug:
                raise
            log.error(f"error: {error}")
            return 2
        except BaseException as error:
            return self.failed_by_bug(error)
        finally:
            self.close()
            cleanup_distributed()
            if self.temporary:
                shutil.rmtree(self.path.parent, ignore_errors=True)
        return 0

    def failed_by_bug(self, error: BaseException) -> int:
        """A bug, or a second Ctrl-C: recorded, then shown in full (raised again)."""
        if self.stop.requested:  # e.g. SIGTERM also stopped the data workers, whose error came first
            return self.interrupted(self.stop.signal_number)
        self.record_end(self.status.failed, error)
        raise error

    def record_end(self, write: Callable[..., None], *args: object) -> None:
        """Write how the run ended into status.json; if even that fails (the folder was
        deleted), say so instead of hiding the error that ended the run."""
        try:
            write(*args)
        except OSError as error:  # a WriteError
            log.error(f"error: status.json could not be updated either: {error}")

    def interrupted(self, signal_number: int) -> int:
        """Record and report a stop by signal, with the command that resumes it (a training
        run with a last.pth) or runs it again; the exit code is 128 + the signal number."""
        name = signal.Signals(signal_number).name
        if not self.opened:
            log.error(f"Stopped by {name} before the run folder was made; nothing was written.")
        elif self.script == "train.py" and (self.path / "last.pth").is_file():
            command = shlex.join([*launcher(), self.script, "--resume", str(self.path)])
            self.record_end(self.status.interrupted, f"stopped by {name}", command)
            log.error(f"Stopped by {name}; resume from the last saved checkpoint with:\n  {command}")
        else:
            self.record_end(self.status.interrupted, f"stopped by {name} before anything was saved", None)
            log.error(f"Stopped by {name} before a checkpoint or result was saved, so there is nothing to resume; "
                      f"run it again: bash {shlex.quote(str(self.path / 'command.sh'))} (into a new folder).")
        return 128 + signal_number

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
    """command.sh: the exact command line, re-runnable (it starts a new run directory).
    `script`: the program's file, or `-m <module>`."""
    command = shlex.join([*launcher(), *script.split(), *argv])
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
