"""--profile N: where a training step's time goes, measured by torch.profiler over N steps.

The first WARMUP_STEPS training steps of the process are left out (they pay once for the
data workers' start, cuDNN's choice of kernels, the allocator's growth), then N steps are
recorded, within one epoch: validation is never inside the window, so a window longer than
what is left of the epoch ends with it. Written into the run folder, under `profile/`:

  trace_steps_<first>-<last>.json   the timeline (Chrome trace format): open it in
                                    https://ui.perfetto.dev or chrome://tracing
  ops_steps_<first>-<last>.txt      the operators by their own time, as a table (top 30)

(<first>-<last>: the run's global steps profiled.) Profiling reads clocks and records
events; it changes no number of the training (tests/test_profile.py checks the weights
bit for bit). Without --profile nothing here runs.
"""

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from utils.atomic import atomic_write_text

log = logging.getLogger(__name__)
WARMUP_STEPS = 2
TOP_OPS = 30


class StepProfiler:
    """Records `steps` training steps after the warm-up, once `open` names the folder; `steps=0`: nothing."""

    def __init__(self, steps: int, device: torch.device) -> None:
        self.steps, self.device = steps, device
        self.folder = Path()
        self.active = False  # until open(); afterwards, until the window is written
        self.seen = 0  # training steps of this process so far
        self.recorded = 0
        self.first_step = 0  # the run's global step of the first recorded one
        self.profile: profile | None = None

    def open(self, folder: Path, enabled: bool = True) -> None:
        """Write into `folder` (`enabled=False`: the other processes under torchrun, which do not profile)."""
        self.folder, self.active = Path(folder), bool(self.steps) and enabled

    def over(self, batches: Iterable, global_step: int) -> Iterator:
        """The epoch's batches, the steps due recorded: each from fetching its batch to asking
        for the next (the training step between). `global_step`: the run's, before the epoch."""
        if not self.active:
            yield from batches
            return
        iterator = iter(batches)
        try:
            while True:
                if self.profile is None and self.seen >= WARMUP_STEPS and self.active:
                    self.start(global_step + 1)
                step = record_function(f"ProfilerStep#{global_step + 1}") if self.profile is not None else None
                with step or nullcontext():  # the step's span in the trace: its batch, then its work
                    try:
                        batch = next(iterator)
                    except StopIteration:
                        return
                    yield batch
                self.seen += 1
                global_step += 1
                if self.profile is not None:
                    self.recorded += 1
                    if self.recorded == self.steps:
                        self.finish()
        finally:
            if self.profile is not None:  # the epoch ended (or the loop stopped): so does the window
                self.finish()

    def close(self) -> None:
        """At the end of training: say so when the run ended before anything was profiled."""
        if self.active:
            log.warning(f"--profile {self.steps}: the run ended within the warm-up ({WARMUP_STEPS} training steps of "
                        "this process); nothing was profiled.")

    def start(self, first_step: int) -> None:
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        if not torch.cuda.is_available():  # kineto's "ERROR: gpuGetDeviceCount failed" on a CPU machine is noise
            os.environ.setdefault("KINETO_LOG_LEVEL", "5")
        self.profile, self.first_step, self.recorded = profile(activities=activities), first_step, 0
        self.profile.start()

    def finish(self) -> None:
        """Stop recording; write the trace and the table (a window that recorded no step is
        dropped: the next epoch starts a new one)."""
        prof, self.profile = self.profile, None
        prof.stop()
        if not self.recorded:
            return
        self.active = False
        last = self.first_step + self.recorded - 1
        if self.recorded < self.steps:
            log.warning(f"--profile {self.steps}: the epoch ended after {self.recorded} profiled step(s); a longer "
                        "epoch (or a smaller --profile) gives the full window.")
        self.folder.mkdir(exist_ok=True)
        name = unused_stem(self.folder, f"steps_{self.first_step}-{last}")
        trace = self.folder / f"trace_{name}.json"
        prof.export_chrome_trace(str(trace))
        sort_by = "self_device_time_total" if self.device.type == "cuda" else "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=sort_by, row_limit=TOP_OPS)
        atomic_write_text(self.folder / f"ops_{name}.txt",
                          f"torch.profiler: global steps {self.first_step} to {last} of the run ({self.recorded} "
                          f"training steps, after {WARMUP_STEPS} of warm-up), sorted by {sort_by}\n{table}\n")
        log.info(f"Profiled {self.recorded} step(s): {trace} (open in https://ui.perfetto.dev), "
                 f"{self.folder / f'ops_{name}.txt'}; " + top_ops(prof, sort_by))


def top_ops(prof: profile, sort_by: str, count: int = 5) -> str:
    """`aten::convolution 41%, ...`: the operators that took most of the time, for the log."""
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, sort_by), reverse=True)
    total = sum(getattr(e, sort_by) for e in events) or 1
    return "top operators by own time: " + ", ".join(f"{e.key} {getattr(e, sort_by) / total:.0%}"
                                                     for e in events[:count])


def unused_stem(folder: Path, stem: str) -> str:
    """`stem`, or `stem_1`, ... when a profile of those steps is already there (a resumed run
    that went back over them): a profile never replaces another."""
    name, suffix = stem, 0
    while (folder / f"trace_{name}.json").exists() or (folder / f"ops_{name}.txt").exists():
        suffix += 1
        name = f"{stem}_{suffix}"
    return name
