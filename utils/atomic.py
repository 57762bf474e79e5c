"""Every file the template writes goes through here: whole files atomically (temporary file,
fsync, os.replace), appended ones (TensorBoard events, predictions.csv, pictures) inside
`writing(path)`; either way a failure is one `WriteError` that says what happened in the
user's terms (the disk is full, the folder was deleted, no permission) and which file.

Why: a run killed while saving (Ctrl-C, pre-emption, a full disk) must leave the previous
checkpoint or result file intact and loadable, and a full disk is the user's to fix (one
message, exit code 2), not a traceback. `os.replace` within one folder is atomic.
Standard library only, so the scaffolding command can use it too.
"""

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from utils.errors import UserError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class WriteError(UserError, OSError):
    """A file could not be written: a UserError (one message, exit code 2) that is still the
    OSError it comes from (`errno`), for code that tells a full disk from other causes."""

    def __init__(self, message: str, error_number: int | None) -> None:
        super().__init__(message)
        self.errno = error_number

    def __str__(self) -> str:
        return str(self.args[0])


def write_error(path: str | Path, error: OSError, verb: str = "Writing") -> WriteError:
    """`error` (raised while writing `path`) in the user's terms; an atomic write also says
    that the previous file is intact."""
    if isinstance(error, WriteError):
        return error
    path = Path(path)
    if error.errno in DISK_FULL:
        cause = "the disk is full"
    elif error.errno == errno.ENOENT and not path.parent.is_dir():
        cause = f"its folder {path.parent} no longer exists (deleted or moved while it was being written?)"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        cause = f"no permission to write there ({error.strerror})"
    else:
        cause = error.strerror or str(error)
    kept = f" The previous {path.name} is intact (writes are atomic)." if path.is_file() else ""
    return WriteError(f"{verb} {path} failed: {cause}.{kept}", error.errno)


@contextlib.contextmanager
def writing(path: str | Path, verb: str = "Writing") -> Iterator[None]:
    """Turn an OSError inside the block (writing `path`) into a WriteError naming it."""
    try:
        yield
    except WriteError:
        raise
    except OSError as error:
        raise write_error(path, error, verb) from None


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], mode: int | None = None,
                 verb: str = "Writing") -> None:
    """Call `write(file)` on a temporary file beside `path`, then move it into place.

    The file gets `mode` (e.g. 0o755), or by default the permissions a plain `open` would
    give (0o666 less the umask), not the private 0o600 of a temporary file."""
    path = Path(path)
    with writing(path, verb):
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


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = None, verb: str = "Writing") -> None:
    """Write bytes atomically."""
    atomic_write(path, lambda file: file.write(data), mode, verb)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file (UTF-8) atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def overwrite_in_place(path: str | Path, data: bytes) -> None:
    """Rewrite an existing small file in place (not atomic): the fallback for a record that
    must still say how a run ended when the disk is too full for a temporary file (the
    file's own block is reused)."""
    with writing(path), open(path, "r+b") as file:
        file.write(data)
        file.truncate()
        file.flush()
        os.fsync(file.fileno())


def current_umask() -> int:
    """The process umask (only readable by setting it: set, then put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
