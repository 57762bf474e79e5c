"""Ctrl-C, SIGTERM (a cluster's pre-emption) and SIGUSR1 (Slurm's warning before the time
limit, `sbatch --signal=USR1@120`) become a request the training loop answers.

Why not stop at once: a signal can land between `loss.backward()` and `optimizer.step()`.
The handler only records the request; the loop finishes its step, saves a checkpoint
that resumes exactly there, and exits. A second Ctrl-C stops at once.
"""

import signal
import types


class StopRequested(Exception):
    """Raised by the loop after it saved, to unwind to main() and exit non-zero."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


class StopSignals:
    """While active (a `with` block), SIGINT / SIGTERM / SIGUSR1 set `.signal_number` instead of killing."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self.requested = False  # a plain attribute: the loop reads it every step
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame: types.FrameType | None) -> None:
        if self.requested:  # asked twice: stop now
            raise KeyboardInterrupt
        self.request(number)
        print(f"\n{signal.Signals(number).name} received: finishing this step, saving, then stopping "
              "(press Ctrl-C again to stop at once, unsaved).", flush=True)

    def request(self, number: int) -> None:
        """Ask the loop to save and stop, as the signal `number` does."""
        self.signal_number, self.requested = number, True
