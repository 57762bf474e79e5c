"""The batch loop's iterator: a tqdm bar, and compute efficiency.

No prefetch thread of its own: the DataLoader's worker processes already prepare batches
ahead (`prefetch_factor`, 2 per worker), so a thread would only move the hand-over of ready
batches off the main thread, and on a small machine it competes with the training step for
the cores and the GIL (measured: bench/epoch_breakdown.py, docs/performance.md).

Compute efficiency = compute time / (compute time + time spent waiting for data). Near
100% the model is the bottleneck; much lower, the input pipeline is (raise --num_workers,
or try `--in_memory`). The time between handing out a batch and being asked for
the next counts as compute; on a GPU that is host time, which is what waiting competes with.
"""

import time
from collections.abc import Iterable, Iterator

from tqdm import tqdm

from utils.distributed import is_main_process


class ProgressBar:
    """Iterate `batches` inside a tqdm bar, timing the data wait."""

    def __init__(self, batches: Iterable, desc: str) -> None:
        self.batches = batches
        self.desc = desc
        self.wait_time = 0.0
        self.compute_time = 0.0
        self.values: dict[str, str] = {}  # what `show` put on the bar
        self.bar: tqdm | None = None

    def __iter__(self) -> Iterator:
        total = len(self.batches) if hasattr(self.batches, "__len__") else None
        self.bar = tqdm(total=total, desc=self.desc, dynamic_ncols=True, leave=False, disable=not is_main_process())
        iterator = iter(self.batches)
        handed_out = None
        try:
            while True:
                asked = time.perf_counter()
                if handed_out is not None:
                    self.compute_time += asked - handed_out
                try:
                    batch = next(iterator)
                except StopIteration:
                    return
                handed_out = time.perf_counter()
                self.wait_time += handed_out - asked
                yield batch
                self.bar.update(1)
                self._refresh_postfix()
        finally:
            self.bar.close()

    @property
    def efficiency(self) -> float:
        """compute / (compute + data wait) so far, in [0, 1]."""
        total = self.compute_time + self.wait_time
        return self.compute_time / total if total > 0 else 1.0

    def show(self, **values: float) -> None:
        """Put values (e.g. the epoch's running loss) after the bar, until the next call."""
        self.values = {name: f"{value:.4g}" for name, value in values.items()}
        self._refresh_postfix()

    def _refresh_postfix(self) -> None:
        """The shown values and the efficiency so far (host time only: no GPU read), once at
        least one batch has been computed (before that there is no efficiency to tell)."""
        if self.bar is not None:
            efficiency = {"eff": f"{self.efficiency:.0%}"} if self.compute_time > 0 else {}
            self.bar.set_postfix(**self.values, **efficiency, refresh=False)
