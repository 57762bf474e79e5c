"""What a run shows and writes besides checkpoints: the progress bar of a loop
(`ProgressBar`), TensorBoard curves and pictures and `metrics.csv` (`Logger`), and its
messages (`setup_logging`: on the screen, and into `log.txt` once the run folder exists).

The progress bar also measures compute efficiency = compute time / (compute time + time
spent waiting for data). Near 100% the model is the bottleneck; much lower, the input
pipeline is (raise --num_workers, or try `--in_memory`). The time between handing out a
batch and being asked for the next counts as compute; on a GPU that is host time, which is
what waiting competes with. Batches are read in the calling thread: the DataLoader's worker
processes already prepare batches ahead (two each); an extra prefetch thread beside them
(prefetch_generator, as torch_base has it) only competed with the training step for the
GIL: on an H200 it made a resnet18 epoch 9% slower than a plain loop
(bench/trainer_vs_plain.py --device cuda).
"""

import contextlib
import csv
import io
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from logging.handlers import MemoryHandler
from pathlib import Path

import torch
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.plugins.hparams.summary_v2 import hparams_pb
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from utils.atomic import atomic_write_text, write_error, writing
from utils.distributed import is_main_process
from utils.errors import UserError
from utils.plain_progress import PlainProgress, progress_bar
from utils.trackers import NoEventWriter, Trackers


class ProgressBar:
    """Iterate `batches` inside a tqdm bar, timing the wait for data."""

    def __init__(self, batches: Iterable, desc: str) -> None:
        self.batches = batches
        self.desc = desc
        self.wait_time = 0.0
        self.compute_time = 0.0
        self.values: dict[str, str] = {}  # what `show` put on the bar
        self.bar: tqdm | PlainProgress | None = None

    def __iter__(self) -> Iterator:
        total = len(self.batches) if hasattr(self.batches, "__len__") else None
        self.bar = progress_bar(total, self.desc, disable=not is_main_process(), dynamic_ncols=True, leave=False)
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


def check_finite(loss: float, epoch: int, step: int, kept: str = "last.pth stays as it was.") -> None:
    """Stop at the first NaN/inf loss instead of training on garbage (nothing is saved after
    it); `kept` says what the run keeps."""
    if not math.isfinite(loss):
        raise UserError(f"The loss became {loss} at epoch {epoch}, step {step}. Try a lower --lr or --clip_grad; "
                        f"{kept}")


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


class LogFile(logging.FileHandler):
    """log.txt. A write that fails (a full disk) is said once, on the screen, and the file is
    left alone from then on: not logging's traceback for every message."""

    failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            return super().handleError(record)
        self.failed = True
        print(f"warning: {write_error(self.baseFilename, error)} Messages go on to the screen only.",
              file=sys.stderr, flush=True)


def log_to_file(log_path: Path) -> None:
    """From now on also write every message to `log_path`, after the ones kept so far."""
    root = logging.getLogger()
    file_handler = LogFile(log_path)
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
                 global_step: int = 0, enabled: bool = True, tensorboard: bool = True,
                 trackers: Trackers | None = None) -> None:
        """`history`: the metrics.csv rows of the epochs a resumed run already did, and
        `global_step` its step count: TensorBoard then hides events written after that
        checkpoint, before a crash. `enabled=False` (the other processes under torchrun):
        nothing is written. `tensorboard=False`: metrics.csv only; `trackers` (MLflow, W&B:
        utils/trackers.py) get the curves too."""
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.tensorboard = tensorboard
        self.trackers = trackers or Trackers([], run_dir, {})
        self.rows: list[dict[str, float]] = list(history or [])  # metrics.csv, rewritten whole
        self.scalars: dict[str, float] = {}  # the current epoch's extra values (timings)
        self.layout_written = False  # TensorBoard's custom-scalars layout (comparison_layout)
        if enabled:
            resumed = history is not None
            keep_event_writer_errors()
            with self.events():
                purge_step = global_step + 1 if resumed else None
                self.writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=purge_step) if tensorboard \
                    else NoEventWriter()

    @contextlib.contextmanager
    def events(self) -> Iterator[None]:
        """Around TensorBoard's writes: an OSError of theirs (a full disk), here or in the
        thread TensorBoard writes from, is one WriteError naming the event files."""
        with writing(self.run_dir / "events.out.tfevents.*"):
            try:
                yield
            finally:
                failed, _event_writer_errors[:] = list(_event_writer_errors), []
            if failed:
                raise failed[0]

    def record_step(self, values: dict[str, torch.Tensor | float], global_step: int) -> None:
        """Per-step curves (e.g. train_step/loss). Reading a GPU tensor waits for the GPU:
        call it every --log_freq steps, not every step."""
        if self.enabled:
            with self.events():
                for name, value in values.items():
                    self.writer.add_scalar(name, float(value), global_step)
            self.trackers.log(values, global_step)

    def record_scalar(self, name: str, value: float) -> None:
        """Remember an extra value of the current epoch (a timing); `save_curves` writes it."""
        self.scalars[name] = float(value)

    def save_curves(self, epoch: int, values: dict[str, float], global_step: int,
                    csv_only: Iterable[str] = ()) -> None:
        """Write an epoch's values to TensorBoard (at the epoch's last step) and as a metrics.csv
        row, and to the trackers; the extra values (timings, which differ run to run) skip
        metrics.csv, and `csv_only` (the lr: it has a per-step curve) skips TensorBoard."""
        if not self.enabled:
            self.scalars = {}
            return
        curves = values | self.scalars
        skipped = set(csv_only)
        with self.events():
            if not self.layout_written:  # once a process: the charts that put the splits side by side
                self.writer.add_custom_scalars(comparison_layout(name for name in values if name not in skipped))
                self.layout_written = True
            for name, value in curves.items():
                if name not in skipped:
                    self.writer.add_scalar(name, value, global_step)
            self.writer.add_scalar("compare/epoch", epoch, global_step)  # beside the values HPARAMS compares
            self.writer.flush()
        self.trackers.log(curves | {"epoch": epoch}, global_step)
        self.rows.append({"epoch": epoch, **values})
        self.scalars = {}
        atomic_write_text(self.run_dir / "metrics.csv", rows_to_csv(self.rows))  # a WriteError when it cannot

    def save_imgs(self, images: dict[str, torch.Tensor], global_step: int) -> None:
        """Add pictures (C x H x W, values in [0, 1]) to TensorBoard under their names."""
        if not self.enabled:
            return
        with self.events():
            for name, image in images.items():
                self.writer.add_image(name, image, global_step)

    def start_hparams(self, args: dict, trial_id: str) -> None:
        """Record the run's flags for TensorBoard's HPARAMS tab when it starts (or resumes), so
        that a running or an interrupted run is listed too, with the `compare/` values of the
        epochs it did (TensorBoard takes a run's latest value of each scalar as its metric).
        `trial_id`: the name HPARAMS shows for the run.

        Written into a small event file of its own (`*.hparams`), replaced at each start:
        TensorBoard keeps the first copy of a record it reads, so those of a run extended by
        --resume must not stay behind in the main file. Only session records, no experiment
        record: TensorBoard then takes every run's flags and scalar names as its columns, so
        classification and segmentation runs side by side show the flags of both."""
        if not (self.enabled and self.tensorboard):
            return
        self.session_start = hparams_pb({name: hparam_value(value) for name, value in args.items()},
                                        trial_id=trial_id)
        self._write_hparams([self.session_start])

    def end_hparams(self) -> None:
        """Mark the run finished in the HPARAMS tab (its status filter: "Success"). A run that
        is running, was interrupted or failed has no end record: its status shows as unknown."""
        if self.enabled and self.tensorboard:
            end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time())
            summary = Summary()
            summary.value.add(tag=metadata.SESSION_END_INFO_TAG, tensor=metadata.NULL_TENSOR,
                              metadata=metadata.create_summary_metadata(
                                  plugin_data_pb2.HParamsPluginData(session_end_info=end)))
            self._write_hparams([self.session_start, summary])

    def _write_hparams(self, summaries: list[Summary]) -> None:
        with self.events():
            for old in self.run_dir.glob("events.out.tfevents.*.hparams"):
                old.unlink()
            with SummaryWriter(log_dir=str(self.run_dir), filename_suffix=".hparams") as writer:
                for summary in summaries:
                    writer.file_writer.add_summary(summary, 0)

    def close(self) -> None:
        if self.enabled:
            with self.events():
                self.writer.close()


# OSErrors raised in TensorBoard's writer threads, for the training thread to report (Logger.events).
_event_writer_errors: list[OSError] = []
_default_excepthook = threading.excepthook


def _keep_event_writer_error(args: threading.ExceptHookArgs) -> None:
    """threading.excepthook: TensorBoard writes event files from a thread of its own, which dies
    of an OSError (a full disk) with a traceback of its own; the error is kept instead, and the
    training thread's next TensorBoard call reports it as one message. Anything else as usual."""
    if isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread":
        _event_writer_errors.append(args.exc_value)
        return
    _default_excepthook(args)


def keep_event_writer_errors() -> None:
    """Install `_keep_event_writer_error` (once), forgetting the errors of an earlier run."""
    global _default_excepthook
    _event_writer_errors.clear()
    if threading.excepthook is not _keep_event_writer_error:
        _default_excepthook, threading.excepthook = threading.excepthook, _keep_event_writer_error


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


SPLITS = ("train", "val", "val_ema")  # the prefixes a metric's curves are compared across


def comparison_layout(names: Iterable[str]) -> dict[str, dict[str, list]]:
    """TensorBoard's custom-scalars layout: one chart per metric that more than one split has
    (train/loss, val/loss and val_ema/loss together), and one per per-class metric with all
    its classes (val/iou/cat, val/iou/dog, ...), where the default pages show each curve on a
    chart of its own."""
    splits: dict[str, set[str]] = {}
    per_class: set[str] = set()
    for name in names:
        split, _, metric = name.partition("/")
        if split not in SPLITS or not metric:
            continue
        metric, _, class_name = metric.partition("/")
        if class_name:  # val/iou/cat
            per_class.add(f"{split}/{metric}")
        else:
            splits.setdefault(metric, set()).add(split)
    # Every split's name in each chart, whichever this run has: TensorBoard merges the runs'
    # layouts and keeps one copy of equal charts only (an EMA run's would double them otherwise).
    charts = {metric: ["Multiline", [f"^{split}/{re.escape(metric)}$" for split in SPLITS]]
              for metric, found in sorted(splits.items()) if len(found) > 1}
    classes = {f"{metric} per class": ["Multiline", [f"^{re.escape(metric)}/"]] for metric in sorted(per_class)}
    return {"train / val / val_ema": charts} | ({"per class": classes} if classes else {})
