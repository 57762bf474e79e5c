"""Reading the small text files kept beside runs (args.json, status.json, run_info.json,
command.sh, sweep.json, a --config file): a regular file only (a FIFO would block the reader
for ever), of a size such a file has, and JSON that is not absurdly nested (which Python's
parser meets with a RecursionError). Those files are read while runs write them, after they
crash and after someone edited them by hand. Standard library only."""

import json
import os
import stat
from pathlib import Path

# A run's text files are small (a metrics.csv of 10,000 epochs is about 1 MB); a larger one
# is not what a run wrote, and reading it would stall whatever reads it.
MAX_FILE_BYTES = 16 * 2**20


class FileTooLarge(ValueError):
    """A text file over MAX_FILE_BYTES."""


def read_small_text(path: str | Path) -> str:
    """A regular file's text (UTF-8). Raises OSError (missing, unreadable, not a regular file),
    UnicodeDecodeError (binary) or FileTooLarge."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise IsADirectoryError(f"{path} is not a regular file")
    with open(path, "rb") as file:
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise FileTooLarge(f"over {MAX_FILE_BYTES // 2**20} MB")
    return data.decode("utf-8")


def read_json_file(path: str | Path) -> object:
    """The JSON value in a small text file. Raises OSError, or ValueError for anything that is
    not JSON (binary, too large, nested too deeply)."""
    try:
        return json.loads(read_small_text(path))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
