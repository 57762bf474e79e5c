"""What a run keeps of itself: which checkpoints, what they hold, and writing them without
holding training up. `Checkpoints` is the one place for all three.

Which: `last.pth` always, `best.pth` when --monitor improves (by more than --min_delta),
`epoch_<N>.pth` every --save_freq epochs, the --save_top_k best epochs as
`top_epoch_<N>.pth` (the others deleted), and whether --patience epochs without improvement
stop the run early. Its own state goes into every checkpoint, so a resumed run decides
exactly as an uninterrupted one.

What: `training_state` gathers what changes as a run trains (weights, their average, the
optimizer, the schedule, the loss scaler, every random generator: one set per process), and
`load_training_state` puts it back. Plain dicts, tensors and numbers, so `torch.load(path)`
(weights_only=True) reads it; the weights are the plain model's (no `module.` / `_orig_mod.`
prefixes), so a checkpoint from torchrun, DataParallel or --compile loads into a plain model.

How: a checkpoint is serialised once, in the training thread (the tensors are copied then,
so training may go on), and written in a background thread: one write and fsync for
`last.pth`, then hard links for the other names of the same epoch; only then does the writer
call back (status.json's progress: a record never names a file that is not there yet). Every
file appears atomically (temporary file, fsync, rename): a crash or a full disk mid-save
keeps the previous file, and the temporary files a killed save leaves are removed when the
run is next opened (utils/run_dir.py). A process killed between last.pth and its links
leaves names behind (best.pth, top-k): last.pth records what it is kept as, and `repair`
makes the names true again when the run is resumed.
"""

import errno
import io
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from utils.atomic import WriteError, atomic_write_bytes, write_error
from utils.distributed import gather_to_main, rank, world_size
from utils.errors import UserError
from utils.torch_utils import load_state_into, model_state, rng_state, set_rng_state, unwrap_model

log = logging.getLogger(__name__)


class Checkpoints:
    """best / last / epoch_<N> / top-k checkpoints by --monitor, early stopping, and their writing."""

    def __init__(self, monitor: str, mode: str, save_freq: int, save_top_k: int = 0, patience: int = 0,
                 min_delta: float = 0.0) -> None:
        self.monitor, self.mode, self.min_delta = monitor, mode, min_delta
        self.save_freq, self.save_top_k, self.patience = save_freq, save_top_k, patience
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.epochs_without_improvement = 0
        self.top: list[tuple[float, int]] = []  # (value, epoch) of the kept top-k, best first
        self.dropped: list[int] = []  # epochs the last judgement pushed out of the top-k
        self.folder: Path | None = None
        self.writes = False  # only rank 0 writes, once open() named the folder
        self.resumed_from: dict | None = None  # a resumed run's last.pth, whose names open() repairs
        self.last_saved: str | None = None  # what last.pth holds ("epoch 3"), for messages
        self._thread: threading.Thread | None = None
        self._error: Exception | None = None

    def open(self, folder: Path, enabled: bool = True) -> None:
        """Write into `folder` from now on (`enabled=False`: the other processes under
        torchrun, which write nothing). A resumed run's files are made what its last.pth says
        they are: top_epoch_<N>.pth files the kept list does not hold are deleted, and names
        a killed save did not link yet are linked (`repair`)."""
        self.folder, self.writes = Path(folder), enabled
        if not enabled:
            return
        kept = {top_name(epoch) for _, epoch in self.top}
        for path in self.folder.glob("top_epoch_*.pth"):
            if path.name not in kept:
                path.unlink(missing_ok=True)
        if self.resumed_from is not None:
            self.repair(self.resumed_from)

    def repair(self, last: dict) -> None:
        """Give every name `last` (the run's last.pth) says the run has the epoch it should
        hold: the names last.pth itself was kept as (best.pth, epoch_<N>.pth, top_epoch_<N>.pth
        of its epoch), best.pth's best epoch and each top-k epoch, linked from a file of the
        run that holds that epoch. A process killed between writing last.pth and linking its
        other names leaves them missing or stale; this is where they are made right."""
        record = last.get("checkpoints") or {}
        at_epoch_end = not last.get("step_in_epoch")
        wanted = {name: last["epoch"] for name in record.get("kept_as", []) if at_epoch_end}
        if self.best_epoch is not None:
            wanted["best.pth"] = self.best_epoch
        wanted |= {top_name(epoch): epoch for _, epoch in self.top}
        run_id = last.get("run_id")
        for name, epoch in wanted.items():
            target = self.folder / name
            if holds_epoch(target, epoch, run_id):
                continue
            sources = ("last.pth", f"epoch_{epoch}.pth", top_name(epoch), "best.pth")
            source = next((self.folder / s for s in sources if holds_epoch(self.folder / s, epoch, run_id)), None)
            if source is None:
                log.warning(f"{target} should hold epoch {epoch}, but no checkpoint of the run holds that epoch "
                            "(deleted?); it is left as it is.")
                continue
            try:
                link_or_copy(source, target)
            except OSError as error:
                raise save_error(target, error) from None
            log.info(f"{name} is epoch {epoch}'s checkpoint again (linked to {source.name}): the run was stopped "
                     "before that save was complete.")

    def judge(self, epoch: int, values: dict[str, float]) -> bool:
        """Take in an epoch's values; whether --monitor improved (by more than --min_delta)."""
        if self.monitor not in values:
            raise UserError(f"--monitor {self.monitor} is not a recorded value; recorded: "
                            f"{', '.join(sorted(values))}.")
        value = values[self.monitor]
        improved = self.best is None or self.better(value, self.best, self.min_delta)
        if improved:
            self.best, self.best_epoch, self.epochs_without_improvement = value, epoch, 0
        else:
            self.epochs_without_improvement += 1
        if self.save_top_k:
            ranked = sorted([*self.top, (value, epoch)], key=lambda item: (self.rank_key(item[0]), item[1]))
            self.top, self.dropped = ranked[:self.save_top_k], [e for _, e in ranked[self.save_top_k:]]
        return improved

    def better(self, value: float, than: float, by: float = 0.0) -> bool:
        return value > than + by if self.mode == "max" else value < than - by

    def rank_key(self, value: float) -> float:
        return -value if self.mode == "max" else value

    @property
    def stop_early(self) -> bool:
        """--patience epochs in a row without improvement."""
        return bool(self.patience) and self.epochs_without_improvement >= self.patience

    def save_epoch(self, state: dict, epoch: int, improved: bool, on_saved: Callable[[], None] | None = None) -> None:
        """An epoch's checkpoint under every name it is kept as (after `judge`): last.pth, and
        best.pth, epoch_<N>.pth, top_epoch_<N>.pth when due; the top-k files it pushes out go.
        `on_saved()` is called once all of that is on disk."""
        names = ["last.pth", *(["best.pth"] if improved else []),
                 *([f"epoch_{epoch}.pth"] if epoch % self.save_freq == 0 else [])]
        stale: tuple[str, ...] = ()
        if self.save_top_k:
            if epoch in {e for _, e in self.top}:
                names.append(top_name(epoch))
            stale = tuple(top_name(e) for e in self.dropped if e != epoch)
        # last.pth records what it is kept as, so that `repair` can link what a killed save did not.
        state = state | {"checkpoints": {**state["checkpoints"], "kept_as": names}}
        self.submit(state, names, stale, on_saved)
        self.last_saved = f"epoch {epoch}"

    def save_last(self, state: dict) -> None:
        """A mid-epoch checkpoint: last.pth only."""
        self.submit(state, ["last.pth"])
        self.last_saved = f"epoch {state['epoch'] + 1}, step {state['step_in_epoch']}"

    def submit(self, state: dict, names: list[str], remove: tuple[str, ...] = (),
               on_saved: Callable[[], None] | None = None) -> None:
        """Save `state` as each of `names` (the first written, the others linked to it), then
        delete `remove`, then call `on_saved()`; returns once `state` is serialised, before the
        files are written."""
        if not self.writes:
            return
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.wait()  # in order: the previous checkpoint is on disk before this one is
        self._thread = threading.Thread(target=self._write, args=(buffer.getvalue(), names, remove, on_saved),
                                        name="checkpoint-writer", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Block until the last submitted checkpoint is on disk; report a failed write."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _write(self, data: bytes, names: list[str], remove: tuple[str, ...],
               on_saved: Callable[[], None] | None) -> None:
        """The writer thread: the files, then `on_saved()`. Whatever goes wrong is raised again
        by wait(), in the training thread (a failed write as one message, anything else in full)."""
        first = self.folder / names[0]
        try:
            atomic_write_bytes(first, data, verb="Saving")
            for name in names[1:]:
                link_or_copy(first, self.folder / name, data)
            for name in remove:
                (self.folder / name).unlink(missing_ok=True)
        except OSError as error:
            self._error = save_error(first, error)
            return
        except Exception as error:
            self._error = error
            return
        try:
            if on_saved is not None:
                on_saved()  # e.g. status.json's progress, true only now
        except Exception as error:
            self._error = error

    def report(self, epoch: int, kept: bool = True) -> dict:
        """At the end of a run: say which epoch was best (and where the files are, when `kept`),
        and whether it stopped early; returns what status.json records of that."""
        details = {}
        if self.stop_early:
            log.info(f"Stopped early after epoch {epoch}: {self.monitor} did not improve for {self.patience} "
                     f"epochs (best {self.best:.4g} at epoch {self.best_epoch}).")
            details["stopped_early"] = {"epoch": epoch, "best_epoch": self.best_epoch}
        log.info(f"Best {self.monitor} {self.best:.4g} at epoch {self.best_epoch}"
                 + (f"; checkpoints in {self.folder}" if kept else ""))
        return details

    def state_dict(self) -> dict:
        return {"monitor": self.monitor, "best": self.best, "best_epoch": self.best_epoch,
                "epochs_without_improvement": self.epochs_without_improvement,
                "top": [[value, epoch] for value, epoch in self.top]}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.epochs_without_improvement = state["epochs_without_improvement"]
        self.top = [(value, epoch) for value, epoch in state["top"]]

    def resume(self, last: dict) -> None:
        """Continue from a run's last.pth: its state, and its names to repair once open()ed."""
        self.load_state_dict(last["checkpoints"])
        self.resumed_from = last
        step = last.get("step_in_epoch")
        self.last_saved = f"epoch {last['epoch'] + 1}, step {step}" if step else f"epoch {last['epoch']}"


def training_state(model: nn.Module, optimizer: torch.optim.Optimizer,
                   scheduler: torch.optim.lr_scheduler.LRScheduler | None, scaler: torch.amp.GradScaler,
                   ema: nn.Module | None) -> dict:
    """The states of the parts that change as a run trains; called on every process, since
    it gathers their random states (one per process, in rank order)."""
    return {
        "model": unwrap_model(model).state_dict(),
        "ema": {"model": ema.module.state_dict(), "n_averaged": int(ema.n_averaged)} if ema is not None else None,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict(),
        "rng": gather_to_main([rng_state()]),
        "world_size": world_size(),  # resuming needs the same number of processes
    }


def load_training_state(checkpoint: dict, source: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: torch.optim.lr_scheduler.LRScheduler | None, scaler: torch.amp.GradScaler,
                        ema: nn.Module | None) -> None:
    """Put a checkpoint's states back; the random generators last, since building the model
    and the data drew random numbers after they were seeded."""
    load_state_into(model, model_state(checkpoint), strict=True, source=source)
    if ema is not None:
        ema.module.load_state_dict(checkpoint["ema"]["model"])
        ema.n_averaged.fill_(checkpoint["ema"]["n_averaged"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    scaler.load_state_dict(checkpoint["scaler"])
    set_rng_state(checkpoint["rng"][rank()])


def link_or_copy(source: Path, target: Path, data: bytes | None = None) -> None:
    """`target` as a second name of `source` (a hard link, put in place atomically); a copy of
    `data` (default: source's bytes) where the file system has no hard links."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.link.tmp")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        atomic_write_bytes(target, data if data is not None else source.read_bytes(), verb="Saving")
        return
    os.replace(temporary, target)


def holds_epoch(path: Path, epoch: int, run_id: str | None) -> bool:
    """Whether `path` is a checkpoint of run `run_id` at the end of `epoch` (only its small
    header is read: the tensors are mapped, not loaded)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # missing, cut short, not a checkpoint: it does not hold the epoch
        return False
    return (isinstance(checkpoint, dict) and checkpoint.get("epoch") == epoch
            and not checkpoint.get("step_in_epoch") and checkpoint.get("run_id") == run_id)


def save_error(path: Path, error: OSError) -> WriteError:
    """A failed save, in the user's terms: the cause, that the previous file is intact, and
    what to do."""
    failed = write_error(path, error, verb="Saving")
    return WriteError(f"{failed} Free space or fix the folder, then resume the run with --resume.", failed.errno)


def top_name(epoch: int) -> str:
    return f"top_epoch_{epoch}.pth"
