"""utils/progress.py: the progress bar never shows a number that is not true: no efficiency
before any batch was computed, then the one so far at every step; shown values stay until
replaced."""

import io
import sys

from utils.logger import ProgressBar
from utils.plain_progress import PlainProgress, progress_bar


def test_efficiency_appears_once_measured_and_follows_every_step() -> None:
    bar = ProgressBar(range(5), "test")
    postfixes = []
    for i, _ in enumerate(bar):
        if i == 0:
            bar.show(loss=1.5)
        postfixes.append(dict(bar.bar.postfix_dict) if hasattr(bar.bar, "postfix_dict") else str(bar.bar.postfix))
    shown = [str(p) for p in postfixes]
    assert "eff" not in shown[0]  # step 0: nothing computed yet, so no efficiency to tell
    assert all("eff" in s and "loss=1.5" in s for s in shown[2:])  # measured, and the loss kept
    assert 0 < bar.efficiency <= 1



def test_without_a_terminal_progress_is_a_plain_line_every_quarter() -> None:
    """A Slurm job's .out is a file: tqdm's carriage-return redraws would fill it."""
    out = io.StringIO()
    bar = PlainProgress(total=8, desc="train 1", file=out)
    for _ in range(8):
        bar.set_postfix(loss=1.5)
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines == [f"train 1: {p}% ({n}/8) loss=1.5" for p, n in [(25, 2), (50, 4), (75, 6), (100, 8)]]


def test_progress_bar_draws_with_tqdm_only_on_a_terminal(monkeypatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert isinstance(progress_bar(3, "x"), PlainProgress)
