"""No hidden host-device synchronisation in the batch loops on a GPU (marked `gpu`).

Why: a step that waits for the GPU (`.item()`, `.cpu()`, a boolean mask, `nonzero`, a copy to
the GPU from unpinned memory without non_blocking) stops the host from queueing the next
kernels, and the GPU idles while Python catches up: the template is then slower than a
hand-written loop, however fast each piece is.

How, and why this way: real training through the Trainer (helpers.start_training, then
`trainer.train`), two epochs, with --print_freq and --log_freq larger than the run, so the
documented reads come only with each loop's first batch (`i % print_freq == 0` at i = 0, and
that batch's pictures for TensorBoard). The progress bar that train.py and eval.py iterate is
swapped for one that turns `torch.cuda.set_sync_debug_mode("error")` on around the body of
every batch after the first, in the second epoch: the first epoch warms up (cuDNN tunes each
batch shape once, the caching allocator fills), and the reads at an epoch's end (the epoch's
sums, the confusion matrix, the checkpoint) come after the loop, outside the checked part.
So the checked part is exactly "every step but the documented ones" - label checks, the
forward and backward passes, the optimizer, metric sums and confusion matrices included -
without editing the loops to mark read points. A sync there raises at its own line.
Validation is checked the same way: it is Evaluator.eval, the loop eval.py runs.
"""

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers import start_training

import train
from data.demo_data import generate_demo_data
from utils.logger import ProgressBar

pytestmark = [pytest.mark.gpu, pytest.mark.slow]
TRAIN_STEPS, VAL_BATCHES = 10, 3  # 160 and 48 samples, batches of 16
CLASSIFICATION = ["--data_type", "list", "--model_type", "base"]
SEGMENTATION = ["--data_type", "seg_list", "--model_type", "unet"]


class SyncCheckedBar(ProgressBar):
    """A ProgressBar whose batches after the first, from epoch 2 on, run with any CUDA
    synchronisation raising an error; counts the batches it checked per loop ("train", "val")."""

    checked: Counter = Counter()

    def __iter__(self):
        loop, epoch = self.desc.rsplit(" ", 1)  # train.py names the bars "train 2", "val 2"
        for i, batch in enumerate(super().__iter__()):
            check = int(epoch) >= 2 and i > 0
            if check:
                SyncCheckedBar.checked[loop] += 1
                torch.cuda.set_sync_debug_mode("error")
            try:
                yield batch  # the loop's body runs here
            finally:
                torch.cuda.set_sync_debug_mode("default")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("syncs") / "demo"
    generate_demo_data(root, num_train=16 * TRAIN_STEPS, num_val=16 * VAL_BATCHES)
    return root


@pytest.fixture
def checked_bars(monkeypatch: pytest.MonkeyPatch) -> Counter:
    monkeypatch.setattr(train, "ProgressBar", SyncCheckedBar)  # training's loop and evaluate()
    SyncCheckedBar.checked = Counter()
    yield SyncCheckedBar.checked
    torch.cuda.set_sync_debug_mode("default")  # also after a failure left a batch's body early


def argv(demo: Path, checkpoints: Path, task: list[str], workers: int) -> list[str]:
    lists = ("seg_train.txt", "seg_val.txt") if "seg_list" in task else ("train.txt", "val.txt")
    return [*task, "--train_list", str(demo / lists[0]), "--val_list", str(demo / lists[1]),
            "--checkpoints_dir", str(checkpoints), "--epochs", "2", "--batch_size", "16",
            "--num_workers", str(workers), "--print_freq", "1000", "--log_freq", "1000", "--save_freq", "1000"]


CASES = {
    "classification": (CLASSIFICATION, [], 0),
    "classification bf16 channels_last": (CLASSIFICATION, ["--amp", "bf16", "--channels_last"], 0),
    # Batches pinned by the loader's pin-memory thread, as on a real GPU run.
    "classification 2 workers": (CLASSIFICATION, [], 2),
    "classification fp16": (CLASSIFICATION, ["--amp", "fp16"], 0),
    # The EMA update after every step (utils/ema.py: torch's own AveragedModel update waits).
    "classification ema": (CLASSIFICATION, ["--ema_decay", "0.99"], 0),
    "segmentation": (SEGMENTATION, [], 0),
    "segmentation bf16": (SEGMENTATION, ["--amp", "bf16"], 0),
}


def unchecked(function: Callable) -> Callable:
    """`function` run with sync checking off: for a read that is known and documented."""
    def call(*args, **kwargs):
        mode = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("default")
        try:
            return function(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode(mode)
    return call


@pytest.mark.parametrize(("task", "extra", "workers"), list(CASES.values()), ids=list(CASES))
def test_no_sync_between_documented_reads(demo, tmp_path, checked_bars, task, extra, workers) -> None:
    trainer, run = start_training(argv(demo, tmp_path, task, workers) + extra)
    assert trainer.device.type == "cuda"
    if "fp16" in extra:
        # Documented (README, speed flags): GradScaler.step reads whether any gradient overflowed
        # (`found_inf.item()` in torch.amp.GradScaler._maybe_opt_step) once per optimizer step,
        # unless the optimizer is a fused one. Everything else in an fp16 step is checked.
        trainer.scaler.step = unchecked(trainer.scaler.step)
    try:
        trainer.train(run)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        run.close()
    # Every checked batch ran (the bars were the ones the loops used), none raised.
    assert checked_bars == {"train": TRAIN_STEPS - 1, "val": VAL_BATCHES - 1}
