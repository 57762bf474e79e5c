"""Progress without a terminal: `progress_bar()` gives tqdm's bar on a terminal, and else
(a Slurm job's .out, a pipe, a file) a `PlainProgress` that writes one plain line every
LINE_EVERY_PERCENT percent. tqdm's redraws are carriage returns that a file keeps: 43 KB for
16 tiny epochs in a Slurm log, which `grep` then calls binary."""

import sys
from typing import TextIO

from tqdm import tqdm

LINE_EVERY_PERCENT = 25


class PlainProgress:
    """The part of tqdm's interface the project uses (update, set_postfix, postfix, close),
    as lines: `<desc>: 25% (4/15) loss=1.5, eff=93%`."""

    def __init__(self, total: int | None, desc: str, disable: bool = False, file: TextIO | None = None) -> None:
        self.total = total
        self.desc = desc
        self.disable = disable
        self.file = file
        self.n = 0
        self.postfix = ""
        self.next_percent = LINE_EVERY_PERCENT

    def update(self, n: int = 1) -> None:
        """Count `n` more done; write a line when the next LINE_EVERY_PERCENT mark is passed."""
        self.n += n
        if not self.total:
            return
        percent = 100 * self.n // self.total
        if percent >= self.next_percent:
            self.next_percent = (percent // LINE_EVERY_PERCENT + 1) * LINE_EVERY_PERCENT
            self.write(f"{percent}% ({self.n}/{self.total})")

    def set_postfix(self, refresh: bool = False, **values: object) -> None:
        """Values shown after the count on the next line, as tqdm shows them."""
        self.postfix = ", ".join(f"{name}={value}" for name, value in values.items())

    def write(self, count: str) -> None:
        if not self.disable:
            postfix = f" {self.postfix}" if self.postfix else ""
            print(f"{self.desc}: {count}{postfix}", file=self.file or sys.stderr, flush=True)

    def close(self) -> None:
        """Without a total (no lines written so far): one line with the count at the end."""
        if not self.total and self.n:
            self.write(f"{self.n} done")
            self.n = 0


def progress_bar(total: int | None, desc: str, disable: bool = False, **tqdm_options: object) -> tqdm | PlainProgress:
    """tqdm on a terminal (stderr, where tqdm draws), else plain lines."""
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, disable=disable, **tqdm_options)
    return PlainProgress(total, desc, disable)
