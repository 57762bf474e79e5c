"""utils/progress.py: the progress bar never shows a number that is not true: no efficiency
before any batch was computed, then the one so far at every step; shown values stay until
replaced."""

from utils.logger import ProgressBar


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

