"""Ctrl-C, SIGTERM (a cluster's pre-emption) and SIGUSR1 (Slurm's warning before the time
limit, `sbatch --signal=USR1@120`) become a request the program answers where it is safe.

Why not stop at once: a signal can land between `loss.backward()` and `optimizer.step()`,
or half-way through writing a run folder's records. While `deferring()`, the handler only
records the request; the training loop finishes its step, saves a checkpoint that resumes
exactly there, and exits (a second Ctrl-C stops at once). Outside it (while data and model
are built, before anything is written) a stop is a clean exit at once: `StopRequested`;
SIGUSR1 in a training run excepted (`warning_waits`): it is a warning that time runs out, and
the run saves at its first step instead, so that the job that warned it is requeued.

A warning that arrives before this program could catch it (scripts/slurm_step.sh ignores it
for torchrun, whose processes inherit that) is recorded by that script in the file named by
TRAIN_STOP_FILE; the loop asks `check()` at every step, which reads it as a SIGUSR1.
"""

import contextlib
import os
import signal
import types
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
STOP_FILE_VARIABLE = "TRAIN_STOP_FILE"  # set by scripts/slurm_train.sh


class StopRequested(Exception):
    """Raised by the loop after it saved (or by the handler, when nothing is being written),
    to unwind to main() and exit non-zero."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


class StopSignals:
    """While active (a `with` block, which may be nested), SIGINT / SIGTERM / SIGUSR1 stop the
    program with StopRequested, or, while `deferring()`, set `.requested` for it to answer."""

    def __init__(self, warning_waits: bool = False) -> None:
        self.warning_waits = warning_waits  # SIGUSR1 outside `deferring()`: recorded, answered by the loop
        self.stop_file = os.environ.get(STOP_FILE_VARIABLE) or None
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
        if self.urgent:
            raise StopRequested(number)
        if not self.deferred:
            print(f"\n{signal.Signals(number).name} received while the run is set up: it saves and stops "
                  "after its first training step.", flush=True)
            return
        print(f"\n{signal.Signals(number).name} received: finishing this step, saving, then stopping "
              "(press Ctrl-C again to stop at once, unsaved).", flush=True)

    def request(self, number: int) -> None:
        """Ask the loop to save and stop, as the signal `number` does."""
        self.signal_number, self.requested = number, True

    @property
    def urgent(self) -> bool:
        """A stop was asked for that cannot wait for the loop to save (outside `deferring()`)."""
        waits = self.warning_waits and self.signal_number == signal.SIGUSR1
        return self.requested and not self.deferred and not waits

    def check(self) -> bool:
        """Whether a stop was asked for: by a signal, or by the file TRAIN_STOP_FILE names
        (a warning recorded before this program could catch it). Cheap: one stat a step."""
        if not self.requested and self.stop_file is not None and os.path.exists(self.stop_file):
            self.request(signal.SIGUSR1)
            print(f"\nSIGUSR1 recorded in {self.stop_file}: finishing this step, saving, then stopping.", flush=True)
        return self.requested
