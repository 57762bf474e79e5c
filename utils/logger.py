"""Recording numbers during an epoch (`Recorder`) and writing them out (`Logger`).

`Recorder` keeps exact epoch values: each batch value is weighted by its batch size, so
the epoch accuracy is (correct samples / samples), not a mean of batch means. It adds
tensors on their device and reads them once per epoch, so recording costs no GPU sync.

`Logger` owns what a run writes besides checkpoints: TensorBoard curves and pictures and
`metrics.csv` (one row per epoch); `setup_logging` sends what is printed to `log.txt`.
"""

import csv
import io
import logging
import sys
from logging.handlers import MemoryHandler
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams
from tqdm import tqdm

from utils.atomic import atomic_write_text
from utils.distributed import sum_across_ranks


class Recorder:
    """Sums of batch values weighted by batch size; `summary()` gives the epoch means."""

    def __init__(self, state: dict | None = None) -> None:
        """Empty, or continuing from `state_dict()` (an epoch resumed mid-way)."""
        self.sums: dict[str, torch.Tensor] = {k: v.clone() for k, v in state["sums"].items()} if state else {}
        self.counts: dict[str, int] = dict(state["counts"]) if state else {}

    def record(self, values: dict[str, torch.Tensor | float], n: int) -> None:
        """Add one batch: `values` are means over the batch's `n` samples. In place, one kernel
        a value (on a GPU the host's time per step counts); value x n is exact in float64."""
        for name, value in values.items():
            value = torch.as_tensor(value).detach()
            total = self.sums.get(name)
            if total is not None and total.device == value.device:
                total.add_(value, alpha=n)
            else:  # the first batch, or sums restored on the CPU for values on the GPU
                weighted = value.double() * n
                self.sums[name] = weighted if total is None else weighted + total
            self.counts[name] = self.counts.get(name, 0) + n

    def state_dict(self) -> dict:
        """The sums so far (of all processes), for a mid-epoch checkpoint; on resuming, rank 0
        alone starts from them."""
        sums, counts = self._totals()
        return {"sums": {name: torch.tensor(value, dtype=torch.float64) for name, value in sums.items()},
                "counts": {name: int(count) for name, count in counts.items()}}

    def local_mean(self, name: str) -> float:
        """This process's running mean of `name` (for the progress bar: no exchange between
        processes, one read from the GPU)."""
        return (self.sums[name] / self.counts[name]).item()

    def summary(self, prefix: str = "") -> dict[str, float]:
        """The epoch means, names prefixed (e.g. `train/`): one device sync for all of them.
        Under torchrun, over every process's batches."""
        sums, counts = self._totals()
        return {prefix + name: sums[name] / counts[name] for name in sums}

    def _totals(self) -> tuple[dict[str, float], dict[str, float]]:
        """Sums and counts, added up across processes (as they are in a single process)."""
        if not self.sums:
            return {}, {}
        sums = sum_across_ranks(torch.stack(list(self.sums.values()))).cpu().tolist()
        counts = sum_across_ranks(torch.tensor([float(n) for n in self.counts.values()])).tolist()
        return dict(zip(self.sums, sums)), dict(zip(self.sums, counts))


class TqdmHandler(logging.Handler):
    """Prints log lines through tqdm so they do not break a progress bar on screen."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        tqdm.write(self.format(record), file=stream)


_handlers: list[logging.Handler] = []  # the ones setup_logging added, to replace on the next call


def setup_logging(main_process: bool = True) -> None:
    """From a program's start: every `logging` message on the screen (only warnings and errors
    on the other processes under torchrun), and kept in memory until `log_to_file` names the
    run's log.txt, so that it also holds what was printed before the run folder existed."""
    root = logging.getLogger()
    for handler in _handlers:  # a second run in the same process (tests) writes to its own log
        root.removeHandler(handler)
        handler.close()
    _handlers[:] = [TqdmHandler(), MemoryHandler(capacity=10_000, flushLevel=logging.CRITICAL + 1)]
    for handler in _handlers:
        root.addHandler(handler)
    root.setLevel(logging.INFO if main_process else logging.WARNING)


def log_to_file(log_path: Path) -> None:
    """From now on also write every message to `log_path`, after the ones kept so far."""
    root = logging.getLogger()
    file_handler = logging.FileHandler(log_path)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    for memory in [h for h in _handlers if isinstance(h, MemoryHandler)]:
        memory.setTarget(file_handler)
        memory.flush()
        root.removeHandler(memory)
        _handlers.remove(memory)
    root.addHandler(file_handler)
    _handlers.append(file_handler)


def stop_log_file(log_path: Path) -> None:
    """Stop writing messages to `log_path` (the run is over; the screen still shows them)."""
    root = logging.getLogger()
    for handler in [h for h in _handlers if isinstance(h, logging.FileHandler)
                    and Path(h.baseFilename) == Path(log_path).absolute()]:
        root.removeHandler(handler)
        _handlers.remove(handler)
        handler.close()


class Logger:
    """Writes a run's curves and pictures (TensorBoard) and metrics.csv into its run directory.

    Everything in TensorBoard has one x axis, the global step (optimizer batches), so the
    per-step curves and the epoch values share one event file and the run shows once in
    TensorBoard's run list; metrics.csv keeps one row per epoch."""

    def __init__(self, run_dir: Path, history: list[dict[str, float]] | None = None,
                 global_step: int = 0, enabled: bool = True) -> None:
        """`history`: the metrics.csv rows of the epochs a resumed run already did, and
        `global_step` its step count: TensorBoard then hides events written after that
        checkpoint, before a crash. `enabled=False` (the other processes under torchrun):
        nothing is written."""
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.rows: list[dict[str, float]] = list(history or [])  # metrics.csv, rewritten whole
        self.scalars: dict[str, float] = {}  # the current epoch's extra values (timings)
        if enabled:
            resumed = history is not None
            self.writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=global_step + 1 if resumed else None)

    def record_step(self, values: dict[str, torch.Tensor | float], global_step: int) -> None:
        """Per-step curves (e.g. train_step/loss). Reading a GPU tensor waits for the GPU:
        call it every --log_freq steps, not every step."""
        if self.enabled:
            for name, value in values.items():
                self.writer.add_scalar(name, float(value), global_step)

    def record_scalar(self, name: str, value: float) -> None:
        """Remember an extra value of the current epoch (a timing); `save_curves` writes it."""
        self.scalars[name] = float(value)

    def save_curves(self, epoch: int, values: dict[str, float], global_step: int) -> None:
        """Write an epoch's values to TensorBoard (at the epoch's last step) and as a metrics.csv
        row; the extra values (timings, which differ run to run) go to TensorBoard only."""
        if not self.enabled:
            self.scalars = {}
            return
        for name, value in (values | self.scalars).items():
            self.writer.add_scalar(name, value, global_step)
        self.writer.add_scalar("epoch", epoch, global_step)
        self.writer.flush()
        self.rows.append({"epoch": epoch, **values})
        self.scalars = {}
        atomic_write_text(self.run_dir / "metrics.csv", rows_to_csv(self.rows))

    def save_imgs(self, images: dict[str, torch.Tensor], global_step: int) -> None:
        """Add pictures (C x H x W, values in [0, 1]) to TensorBoard under their names."""
        if not self.enabled:
            return
        for name, image in images.items():
            self.writer.add_image(name, image, global_step)

    def save_hparams(self, args: dict, extra_metrics: dict[str, float | None], global_step: int) -> None:
        """Record the run's arguments with its final values, for TensorBoard's HPARAMS tab,
        which compares runs by them. The final values are the last metrics.csv row plus
        `extra_metrics` (e.g. the best monitored value, written as scalars here).

        Written into a small event file of their own (`*.hparams`), replaced each time the run
        finishes: TensorBoard keeps the first hyperparameters it reads for a run, so those of a
        run extended by --resume must not stay behind in the main file. Only the session
        records are written, not an experiment record: TensorBoard then gathers the metric
        names from every run, so classification and segmentation runs side by side each show
        theirs. (`SummaryWriter.add_hparams` would also make a second run in a sub-folder.)"""
        if not self.enabled:
            return
        last = self.rows[-1] if self.rows else {}
        metrics = {name: value for name, value in last.items() if name != "epoch"}
        for name, value in extra_metrics.items():
            if value is not None:
                self.writer.add_scalar(name, value, global_step)
                metrics[name] = value
        self.writer.flush()
        for old in self.run_dir.glob("events.out.tfevents.*.hparams"):
            old.unlink()
        _, start, end = hparams({name: hparam_value(value) for name, value in args.items()}, metrics)
        with SummaryWriter(log_dir=str(self.run_dir), filename_suffix=".hparams") as writer:
            for summary in (start, end):
                writer.file_writer.add_summary(summary, global_step)

    def close(self) -> None:
        if self.enabled:
            self.writer.close()


def hparam_value(value: object) -> str | int | float:
    """A value `hparams` takes: str, int or float as they are; anything else (None, lists) as
    its text. Bools too: `hparams` would record True as the number 1 (bool is an int)."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return value
    return str(value)


def rows_to_csv(rows: list[dict[str, float]]) -> str:
    """CSV text with one column per name seen in any row (empty where a row lacks it)."""
    columns = list(dict.fromkeys(name for row in rows for name in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
