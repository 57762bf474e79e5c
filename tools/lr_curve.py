"""The learning-rate range test's arithmetic, apart from any model: the rates tried, the
smoothed loss, when the loss has diverged, and the suggestion read from the curve.

- Rates: `steps` rates spaced evenly in log scale from `start` to `end` (one optimizer step each).
- Smoothing: an exponential moving average of the losses, `avg = beta * avg + (1 - beta) * loss`,
  divided by `1 - beta ** (i + 1)` (bias correction: without it the first values lean to 0).
- Divergence: the smoothed loss above `factor` x its lowest value so far (or a loss that is not
  finite): the test stops there.
- Suggestion: the rate where the smoothed loss falls fastest per decade of rate (the most
  negative slope d loss / d log10 rate) on its way down: after the first `skip_start` steps
  (the burn-in, whose falls are those of the start, not of the rate) and up to the lowest
  smoothed loss (beyond it the loss rises, and a noisy rise has steep falls of its own). Read
  from the losses before the divergence smoothed forwards and then backwards: a moving average
  lags behind the loss by about beta / (1 - beta) steps, which moves both the steepest point
  and the lowest one to larger rates; forwards and backwards it does not lag. (Lightning's
  suggestion takes the steepest point of the lagging curve, its rise included.)
"""

import math


def rates(start: float, end: float, steps: int) -> list[float]:
    """`steps` rates from `start` to `end`, evenly spaced in log scale."""
    ratio = end / start
    return [start * ratio ** (i / (steps - 1)) for i in range(steps)]


def smoothed(losses: list[float], beta: float) -> list[float]:
    """The bias-corrected exponential moving average of `losses` at each step."""
    average, out = 0.0, []
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** (i + 1)))
    return out


def diverged(smooth: list[float], factor: float) -> bool:
    """Whether the newest smoothed loss is not finite or above `factor` x the lowest so far."""
    newest = smooth[-1]
    return not math.isfinite(newest) or (len(smooth) > 1 and newest > factor * min(smooth[:-1]))


def zero_lag(losses: list[float], beta: float) -> list[float]:
    """`losses` smoothed forwards, then the result backwards: the same smoothing, no lag."""
    return smoothed(smoothed(losses, beta)[::-1], beta)[::-1]


def suggestion(lrs: list[float], losses: list[float], beta: float, skip_start: int) -> tuple[int, int] | None:
    """The indices of the suggested rate and of the lowest smoothed loss (see the module
    docstring), or None when fewer than 3 steps lie between the burn-in and the lowest point.
    `losses`: the raw losses of the steps before the divergence."""
    curve = zero_lag(losses, beta)
    lowest = min(range(skip_start, len(curve)), key=curve.__getitem__, default=skip_start)
    if lowest - skip_start < 2:
        return None
    x = [math.log10(lr) for lr in lrs]

    def slope(i: int) -> float:
        before, after = max(i - 1, skip_start), min(i + 1, lowest)
        return (curve[after] - curve[before]) / (x[after] - x[before])

    return min(range(skip_start, lowest + 1), key=slope), lowest
