"""Write several files as one step: all of them land, or the tree is put back as it was.

Why: `python -m scaffold` creates and edits several files (a model package, a script,
the registry). Failing half-way (a full disk, a permission, a bug) must not leave a registry
that imports a module that was never written. So every write first remembers what was there
(the bytes and mode of an existing file, or that the file or folder is new), and on any
exception inside `with FileTransaction() as files:` the writes are undone in reverse order.

With `dry_run=True` nothing touches the disk: the planned writes are only recorded, and
`describe()` shows them (new files by path, edited files as a unified diff).
"""

import contextlib
import difflib
import os
import shutil
import signal
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from utils.atomic import atomic_write_bytes


@dataclass
class PlannedWrite:
    """One file write: its new content, and what was there before (None: a new file)."""

    path: Path
    data: bytes
    mode: int | None
    before: tuple[bytes, int] | None


class FileTransaction:
    """Records each write so that `rollback()` (automatic on an exception) can undo it."""

    def __init__(self, root: Path, dry_run: bool = False) -> None:
        self.root = Path(root)  # paths are shown relative to it
        self.dry_run = dry_run
        self.writes: list[PlannedWrite] = []
        self.created_dirs: list[Path] = []

    def __enter__(self) -> "FileTransaction":
        return self

    def __exit__(self, error_type: type | None, error: BaseException | None, traceback: object) -> bool:
        if error is not None:
            self.rollback()
        return False  # the exception goes on to the caller

    def write(self, path: Path, data: bytes, mode: int | None = None) -> None:
        """Write `data` to `path` (mode: e.g. 0o755; default: keep the old file's, or the umask's)."""
        path = Path(path)
        before = (path.read_bytes(), stat.S_IMODE(path.stat().st_mode)) if path.is_file() else None
        if mode is None and before is not None:
            mode = before[1]
        self.writes.append(PlannedWrite(path, data, mode, before))
        if not self.dry_run:
            self.make_dirs(path.parent)
            atomic_write_bytes(path, data, mode)

    def write_text(self, path: Path, text: str, mode: int | None = None) -> None:
        self.write(path, text.encode("utf-8"), mode)

    def make_dirs(self, folder: Path) -> None:
        """Create `folder` and missing parents, remembering each new one (removed on rollback)."""
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for new in reversed(missing):
            if not self.dry_run:
                new.mkdir()
            self.created_dirs.append(new)

    def track_new_dir(self, folder: Path) -> None:
        """Remember a folder something else is about to create (e.g. `git init`'s .git/)."""
        if not folder.exists():
            self.created_dirs.append(folder)

    def rollback(self) -> None:
        """Undo every write, newest first, then remove the folders this transaction created;
        Ctrl-C and SIGTERM wait until that is done (a second stop must not cut it short)."""
        if self.dry_run:
            return
        with signals_held():
            self._undo()

    def _undo(self) -> None:
        for planned in reversed(self.writes):
            if planned.before is None:
                planned.path.unlink(missing_ok=True)
            elif not planned.path.is_file() or planned.path.read_bytes() != planned.before[0]:
                planned.path.write_bytes(planned.before[0])
            if planned.before is not None:
                os.chmod(planned.path, planned.before[1])
        for folder in reversed(self.created_dirs):
            shutil.rmtree(folder, ignore_errors=True)  # new, so all inside it is ours (e.g. .git)

    def summary(self) -> str:
        """`created <path>` or `edited <path>`, a line per file written."""
        return "\n".join(f"{'created' if w.before is None else 'edited'} {self.show(w.path)}" for w in self.writes)

    def describe(self) -> str:
        """What the writes do: `create <path>` per new file, a unified diff per edited file."""
        lines = []
        for planned in self.writes:
            shown = self.show(planned.path)
            if planned.before is None:
                lines.append(f"create {shown}")
                continue
            old = planned.before[0].decode("utf-8").splitlines(keepends=True)
            new = planned.data.decode("utf-8").splitlines(keepends=True)
            lines.append(f"edit {shown}")
            lines.append("".join(difflib.unified_diff(old, new, f"a/{shown}", f"b/{shown}")).rstrip("\n"))
        return "\n".join(lines)

    def show(self, path: Path) -> str:
        """`path` relative to the root when it is inside it, else as given."""
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Inside: SIGINT and SIGTERM wait (they arrive after the block), where the system allows."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
