"""Which checkpoints a run keeps, and writing them without holding training up.

`CheckpointKeeper` decides, epoch by epoch: `last.pth` always, `best.pth` when --monitor
improves (by more than --min_delta), `epoch_<N>.pth` every --save_freq epochs, the
--save_top_k best epochs as `top_epoch_<N>.pth` (the others deleted), and whether
--patience epochs without improvement stop the run early. Its own state goes into every
checkpoint, so a resumed run decides exactly as an uninterrupted one.

`CheckpointWriter` serialises a checkpoint once, in the training thread (the tensors are
copied then, so training may go on), and writes it in a background thread: one write and
fsync for `last.pth`, then hard links for the other names of the same epoch. Every file
appears atomically (temporary file, fsync, rename): a crash or a full disk mid-save keeps
the previous file, and the temporary files a killed save leaves are removed when the run
is next opened (utils/run_dir.py).
"""

import errno
import io
import os
import threading
from pathlib import Path

import torch

from utils.atomic import atomic_write_bytes
from utils.errors import UserError


class CheckpointWriter:
    """Writes checkpoints into a folder, one at a time, in a background thread."""

    def __init__(self, folder: Path, enabled: bool = True) -> None:
        """`enabled=False`: the other processes under torchrun, which write nothing."""
        self.folder, self.enabled = Path(folder), enabled
        self._thread: threading.Thread | None = None
        self._error: Exception | None = None

    def submit(self, state: dict, names: list[str], remove: tuple[str, ...] = ()) -> None:
        """Save `state` as each of `names` (the first written, the others linked to it), then
        delete `remove`; returns once `state` is serialised, before the files are written."""
        if not self.enabled:
            return
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.wait()  # in order: the previous checkpoint is on disk before this one is
        self._thread = threading.Thread(target=self._write, args=(buffer.getvalue(), names, remove),
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

    def _write(self, data: bytes, names: list[str], remove: tuple[str, ...]) -> None:
        try:
            first = self.folder / names[0]
            atomic_write_bytes(first, data)
            for name in names[1:]:
                link_or_copy(first, self.folder / name, data)
            for name in remove:
                (self.folder / name).unlink(missing_ok=True)
        except OSError as error:
            self._error = UserError(save_error(self.folder / names[0], error))


def link_or_copy(source: Path, target: Path, data: bytes) -> None:
    """`target` as a second name of `source` (a hard link, put in place atomically); a copy of
    `data` where the file system has no hard links."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.link.tmp")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        atomic_write_bytes(target, data)
        return
    os.replace(temporary, target)


def save_error(path: Path, error: OSError) -> str:
    """A failed save, in the user's terms: the cause, and that the previous file is intact."""
    cause = "the disk is full" if error.errno == errno.ENOSPC else (error.strerror or str(error))
    return (f"Saving {path} failed: {cause}. The previous {path.name} is intact (saves are atomic); "
            "free space or fix the folder, then resume the run with --resume.")


class CheckpointKeeper:
    """best / last / epoch_<N> / top-k checkpoints and early stopping, by --monitor."""

    def __init__(self, monitor: str, mode: str, save_freq: int, save_top_k: int = 0, patience: int = 0,
                 min_delta: float = 0.0) -> None:
        self.monitor, self.mode, self.min_delta = monitor, mode, min_delta
        self.save_freq, self.save_top_k, self.patience = save_freq, save_top_k, patience
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.epochs_without_improvement = 0
        self.top: list[tuple[float, int]] = []  # (value, epoch) of the kept top-k, best first

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

    def files_for(self, epoch: int, improved: bool) -> tuple[list[str], tuple[str, ...]]:
        """The names the epoch's checkpoint is kept as (last.pth first), and the top-k files
        it pushes out, after `judge`."""
        names = ["last.pth", *(["best.pth"] if improved else []),
                 *([f"epoch_{epoch}.pth"] if epoch % self.save_freq == 0 else [])]
        if not self.save_top_k:
            return names, ()
        if epoch in {e for _, e in self.top}:
            names.append(top_name(epoch))
        return names, tuple(top_name(e) for e in self.dropped if e != epoch)

    def remove_stale_top_files(self, writer: CheckpointWriter) -> None:
        """Delete top_epoch_<N>.pth files the kept list does not hold (left by a run killed
        between saving a new one and deleting an old one)."""
        if not writer.enabled:
            return
        kept = {top_name(epoch) for _, epoch in self.top}
        for path in writer.folder.glob("top_epoch_*.pth"):
            if path.name not in kept:
                path.unlink(missing_ok=True)

    def state_dict(self) -> dict:
        return {"monitor": self.monitor, "best": self.best, "best_epoch": self.best_epoch,
                "epochs_without_improvement": self.epochs_without_improvement,
                "top": [[value, epoch] for value, epoch in self.top]}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.epochs_without_improvement = state["epochs_without_improvement"]
        self.top = [(value, epoch) for value, epoch in state["top"]]


def top_name(epoch: int) -> str:
    return f"top_epoch_{epoch}.pth"

