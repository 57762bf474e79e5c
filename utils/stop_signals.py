"""Ctrl-C, SIGTERM (a cluster's pre-emption) and SIGUSR1 (Slurm's warning before the time
limit, `sbatch --signal=USR1@120`) become a request the program answers where it is safe.

Why not stop at once: a signal can land between `loss.backward()` and `optimizer.step()`,
or half-way through writing a run folder's records. While `deferring()`, the handler only
records the request; the training loop finishes its step, saves a checkpoint that resumes
exactly there, and exits (a second Ctrl-C stops at once). Outside it (while data and model
are built, before anything is written) a stop is a clean exit at once: `StopRequested`.
"""

import contextlib
import signal
import types
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class StopRequested(Exception):
    """Raised by the loop after it saved (or by the handler, when nothing is being written),
    to unwind to main() and exit non-zero."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


class StopSignals:
    """While active (a `with` block, which may be nested), SIGINT / SIGTERM / SIGUSR1 stop the
    program with StopRequested, or, while `deferring()`, set `.requested` for it to answer."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self.requested = False  # a plain attribute: the loop reads it every step
        self.deferred = False
        self._depth = 0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if self._depth == 0:
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        self._depth += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            for number, handler in self._previous.items():
                signal.signal(number, handler)

    @contextlib.contextmanager
    def deferring(self) -> Iterator[None]:
        """Inside: a stop is only recorded (`requested`), for the code to answer when it is safe."""
        deferred, self.deferred = self.deferred, True
        try:
            yield
        finally:
            self.deferred = deferred

    def _handle(self, number: int, frame: types.FrameType | None) -> None:
        if self.requested:
            if self.deferred:  # asked twice: stop now
                raise KeyboardInterrupt
            return  # already stopping
        self.request(number)
        if not self.deferred:
            raise StopRequested(number)
        print(f"\n{signal.Signals(number).name} received: finishing this step, saving, then stopping "
              "(press Ctrl-C again to stop at once, unsaved).", flush=True)

    def request(self, number: int) -> None:
        """Ask the loop to save and stop, as the signal `number` does."""
        self.signal_number, self.requested = number, True
