"""Recording numbers during an epoch (`Recorder`) and writing them out (`Logger`).

`Recorder` keeps exact epoch values: each batch value is weighted by its batch size, so
the epoch accuracy is (correct samples / samples), not a mean of batch means. It adds
tensors on their device and reads them once per epoch, so recording costs no GPU sync.

`Logger` owns what a run writes besides checkpoints' content: TensorBoard curves and
pictures, `metrics.csv` (one row per epoch), and `log.txt` (what was printed).
"""

import csv
import io
import logging
import sys
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams
from tqdm import tqdm

from utils.atomic import atomic_torch_save, atomic_write_text
from utils.distributed import sum_across_ranks


class Recorder:
    """Sums of batch values weighted by batch size; `summary()` gives the epoch means."""

    def __init__(self, state: dict | None = None) -> None:
        """Empty, or continuing from `state_dict()` (an epoch resumed mid-way)."""
        self.sums: dict[str, torch.Tensor] = dict(state["sums"]) if state else {}
        self.counts: dict[str, int] = dict(state["counts"]) if state else {}

    def record(self, values: dict[str, torch.Tensor | float], n: int) -> None:
        """Add one batch: `values` are means over the batch's `n` samples."""
        for name, value in values.items():
            value = torch.as_tensor(value).detach().double() * n
            self.sums[name] = self.sums[name] + value if name in self.sums else value
            self.counts[name] = self.counts.get(name, 0) + n

    def state_dict(self) -> dict:
        """The sums so far (of all processes), for a mid-epoch checkpoint; on resuming, rank 0
        alone starts from them."""
        sums, counts = self._totals()
        return {"sums": {name: torch.tensor(value, dtype=torch.float64) for name, value in sums.items()},
                "counts": {name: int(count) for name, count in counts.items()}}

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


def setup_logging(log_path: Path | None) -> None:
    """Send every `logging` message to the screen and to `log_path` (log.txt). With None
    (the other processes under torchrun), only warnings and errors, on the screen."""
    root = logging.getLogger()
    for handler in _handlers:  # a second run in the same process (tests) writes to its own log
        root.removeHandler(handler)
        handler.close()
    _handlers[:] = [TqdmHandler()]
    if log_path is not None:
        file_handler = logging.FileHandler(log_path)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        _handlers.append(file_handler)
    for handler in _handlers:
        root.addHandler(handler)
    root.setLevel(logging.INFO if log_path is not None else logging.WARNING)


class Logger:
    """Writes a run's curves, pictures and checkpoints into its run directory."""

    def __init__(self, run_dir: Path, history: list[dict[str, float]] | None = None,
                 global_step: int = 0, enabled: bool = True) -> None:
        """`history`: the metrics.csv rows of the epochs a resumed run already did, and
        `global_step` its step count: TensorBoard then hides events written after that
        checkpoint, before a crash. `enabled=False` (the other processes under torchrun):
        nothing is written."""
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.rows: list[dict[str, float]] = list(history or [])  # metrics.csv, rewritten whole
        self.scalars: dict[str, float] = {}  # the current epoch's values
        if not enabled:
            return
        resumed = history is not None
        self.writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=len(self.rows) + 1 if resumed else None)
        # Per-step curves have their own x axis (the global step), so their own event files.
        self.step_writer = SummaryWriter(log_dir=str(self.run_dir / "steps"),
                                         purge_step=global_step + 1 if resumed else None)

    def record_step(self, values: dict[str, torch.Tensor | float], global_step: int) -> None:
        """Per-step curves (step = global step), under `steps/` in TensorBoard. Reading a GPU
        tensor waits for the GPU: call it every --log_freq steps, not every step."""
        if self.enabled:
            for name, value in values.items():
                self.step_writer.add_scalar(name, float(value), global_step)

    def record_scalar(self, name: str, value: float) -> None:
        """Remember a value for the current epoch; `save_curves` writes it."""
        self.scalars[name] = float(value)

    def save_curves(self, epoch: int) -> None:
        """Write this epoch's values to TensorBoard (step = epoch) and its `train/` and `val/`
        values as a metrics.csv row (timings, which differ run to run, stay in TensorBoard)."""
        if not self.enabled:
            self.scalars = {}
            return
        for name, value in self.scalars.items():
            self.writer.add_scalar(name, value, epoch)
        self.writer.flush()
        row = {name: value for name, value in self.scalars.items() if name.startswith(("train/", "val/"))}
        self.rows.append({"epoch": epoch, **row})
        self.scalars = {}
        atomic_write_text(self.run_dir / "metrics.csv", rows_to_csv(self.rows))

    def save_imgs(self, images: dict[str, torch.Tensor], epoch: int) -> None:
        """Add pictures (C x H x W, values in [0, 1]) to TensorBoard under their names."""
        if not self.enabled:
            return
        for name, image in images.items():
            self.writer.add_image(name, image, epoch)

    def save_checkpoint(self, state: dict, name: str) -> Path:
        """Save a checkpoint dict as `<run dir>/<name>`, atomically."""
        path = self.run_dir / name
        if self.enabled:
            atomic_torch_save(state, path)
        return path

    def save_hparams(self, args: dict, extra_metrics: dict[str, float | None]) -> None:
        """Record the run's arguments with its final values, for TensorBoard's HPARAMS tab,
        which compares runs by them. The final values are the last metrics.csv row plus
        `extra_metrics` (e.g. the best monitored value, written as scalars here).

        Not `SummaryWriter.add_hparams`: it writes into a new sub-folder named by the time,
        which TensorBoard shows as a second run. The same summaries go into this run's own
        event file instead. The HPARAMS tab reads each metric's value from the run's scalar
        of that name, so only the names are passed to `hparams`."""
        if not self.enabled:
            return
        last = self.rows[-1] if self.rows else {}
        step = int(last.get("epoch", 0))
        metrics = {name: value for name, value in last.items() if name != "epoch"}
        for name, value in extra_metrics.items():
            if value is not None:
                self.writer.add_scalar(name, value, step)
                metrics[name] = value
        for summary in hparams({name: hparam_value(value) for name, value in args.items()}, metrics):
            self.writer.file_writer.add_summary(summary, step)
        self.writer.flush()

    def close(self) -> None:
        if self.enabled:
            self.writer.close()
            self.step_writer.close()


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
