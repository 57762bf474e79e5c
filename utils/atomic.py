"""Writes that never leave a half-written file: temporary file, fsync, os.replace.

Why: a run killed while saving (Ctrl-C, pre-emption, a full disk) must leave the previous
checkpoint or result file intact and loadable. `os.replace` within one folder is atomic.
"""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(file)` on a temporary file beside `path`, then move it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file (UTF-8) atomically."""
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def atomic_torch_save(obj: object, path: str | Path) -> None:
    """torch.save, atomically: a crash mid-save keeps the old file."""
    atomic_write(path, lambda file: torch.save(obj, file))
