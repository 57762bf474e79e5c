"""Writes that never leave a half-written file: temporary file, fsync, os.replace.

Why: a run killed while saving (Ctrl-C, pre-emption, a full disk) must leave the previous
checkpoint or result file intact and loadable. `os.replace` within one folder is atomic.
Standard library only, so the scaffolding command can use it too.
"""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], mode: int | None = None) -> None:
    """Call `write(file)` on a temporary file beside `path`, then move it into place.

    The file gets `mode` (e.g. 0o755), or by default the permissions a plain `open` would
    give (0o666 less the umask), not the private 0o600 of a temporary file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, mode if mode is not None else 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> None:
    """Write bytes atomically."""
    atomic_write(path, lambda file: file.write(data), mode)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file (UTF-8) atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def current_umask() -> int:
    """The process umask (only readable by setting it: set, then put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
