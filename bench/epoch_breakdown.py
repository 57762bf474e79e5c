"""Benchmark: where a template epoch's time goes, part by part. Prints figures; not a test.

    python bench/epoch_breakdown.py --train_list /tmp/digits/train.txt --val_list /tmp/digits/val.txt \\
        [--epochs 4] [-- more train.py flags]

Runs `train.py --model_type resnet18` (the flags of bench/lightning_vs_template.py; flags
after `--` are added) in this process, with timers put around the Trainer's parts from the
outside (the product has none), and prints seconds per epoch (the mean over the epochs after
the first, which also starts the workers):

  main process, wall seconds: waiting for data, forward + loss, backward, optimizer step,
  the per-step bookkeeping (label check, batch metrics, Recorder, ConfusionMeter, the
  progress bar's loss and the per-step curves), TensorBoard pictures, validation, the
  epoch's curves (TensorBoard, metrics.csv) and checkpoint (status.json, serialising,
  waiting for the previous write), and what is left: the loop itself and tqdm;
  in the background: the checkpoint write and fsync (wall, its own thread), the prefetch
  thread (utils/progress.py, CPU seconds), when the progress bar runs one;
  in the data workers: per-sample seeding, decoding and the transform, timed per item in this
  process (one thread, as a worker runs) and multiplied by the samples an epoch reads:
  CPU seconds that, on a 2-core machine, the workers take from the training step;
  start-up: from this script's first line (imports included) to the first batch, and the
  first epoch's time beyond the others (worker start, warm-up).
"""

import sys
import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import functools  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere

import torch  # noqa: E402

import eval as evaluate  # noqa: E402
import metrics  # noqa: E402
import tasks  # noqa: E402
import train  # noqa: E402
import utils.checkpoints  # noqa: E402
import utils.logger  # noqa: E402
import utils.progress  # noqa: E402
from data.augment import Augment, train_transform  # noqa: E402
from data.list_dataset import ListDataset, load_image  # noqa: E402
from data.seeded_sampling import sample_seed, seed_generators  # noqa: E402

totals: dict[tuple[int, str], float] = defaultdict(float)  # (epoch, part) -> seconds
state = {"epoch": 0, "phase": "train", "first_batch": None}
lock = threading.Lock()


def add(part: str, seconds: float, epoch: int | None = None) -> None:
    with lock:
        totals[(state["epoch"] if epoch is None else epoch, part)] += seconds


def timer(owner: object, name: str, part: str | None = None, phase: str | None = None) -> None:
    """Wrap `owner.name` so that its wall time adds to `part` (prefixed by the phase: train /
    val / end); `phase` sets the phase for what it calls."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapped(*args, **kwargs):
        previous = state["phase"]
        if phase:
            state["phase"] = phase
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            add(f"{previous if phase is None else phase}: {part or name}", time.perf_counter() - start)
            state["phase"] = previous

    setattr(owner, name, wrapped)


def instrument() -> None:
    T, E = train.Trainer, evaluate.Evaluator

    original_epoch = T.run_epoch

    def run_epoch(self, epoch):
        state["epoch"] = epoch
        start = time.perf_counter()
        try:
            return original_epoch(self, epoch)
        finally:
            add("epoch", time.perf_counter() - start)
            state["epoch"] = 0  # what runs between and after the epochs counts for none of them

    T.run_epoch = run_epoch
    timer(T, "train_per_epoch", "total", phase="train")
    timer(T, "val_per_epoch", "total", phase="val")
    timer(E, "step", "forward + loss")
    timer(torch.Tensor, "backward", "backward")
    timer(T, "optimizer_step", "optimizer step")
    timer(tasks.ClassificationTask, "check_labels", "bookkeeping: label check")
    timer(E, "compute_metrics", "bookkeeping: batch metrics")
    timer(utils.logger.Recorder, "record", "bookkeeping: Recorder")
    timer(metrics.ConfusionMeter, "update", "bookkeeping: ConfusionMeter")
    timer(T, "report_step", "bookkeeping: bar loss + step curves")
    timer(E, "gen_imgs_to_write", "pictures (grid)")
    timer(utils.logger.Logger, "save_imgs", "pictures (TensorBoard)")
    timer(utils.logger.Logger, "save_curves", "curves + metrics.csv", phase="end")
    timer(T, "save_checkpoints", "checkpoint (status, serialise, wait)", phase="end")
    timer(utils.checkpoints.CheckpointWriter, "wait", "checkpoint: waiting for the previous write")

    write = utils.checkpoints.CheckpointWriter._write

    def timed_write(self, data, names, remove):
        epoch, start = state["epoch"], time.perf_counter()
        write(self, data, names, remove)
        add("background: checkpoint write + fsync (wall)", time.perf_counter() - start, epoch)

    utils.checkpoints.CheckpointWriter._write = timed_write

    # The prefetch thread of the progress bar, where there is one: its CPU time.
    generator = getattr(utils.progress, "BackgroundGenerator", None)
    if generator is not None:
        run = generator.run

        def timed_run(self):
            epoch, start = state["epoch"], time.thread_time()
            try:
                run(self)
            finally:
                add("background: prefetch thread (CPU)", time.thread_time() - start, epoch)

        generator.run = timed_run

    # Data waits: the progress bar's own count (time between asking for a batch and getting it).
    iterate = utils.progress.ProgressBar.__iter__

    def bar_iter(self):
        phase = state["phase"]
        try:
            for batch in iterate(self):
                if state["first_batch"] is None:
                    state["first_batch"] = time.perf_counter()
                yield batch
        finally:
            add(f"{phase}: waiting for data", self.wait_time)

    utils.progress.ProgressBar.__iter__ = bar_iter


def worker_costs(train_list: str, val_list: str, extra: list[str]) -> dict[str, float]:
    """CPU seconds per epoch of what the workers do, from per-item timings in this process."""
    torch.set_num_threads(1)  # as in a DataLoader worker
    train_set = ListDataset(train_list, train_transform(Augment(), 32))
    val_count = len(ListDataset(val_list, train_transform(Augment(), 32)))
    entries, count = train_set.entries, len(train_set)
    images = [load_image(e.image, e.where) for e in entries]
    costs = {}
    for name, transform in (("transform (resize + normalise)", train_transform(Augment(), 32)),
                            ("transform with --crop_padding 4 --hflip 0.5",
                             train_transform(Augment(crop_padding=4, hflip=0.5), 32))):
        costs[name] = per_item(lambda i, t=transform: t(images[i]), count)
    costs["decode (open, check, to RGB tensor)"] = per_item(lambda i: load_image(entries[i].image, entries[i].where),
                                                            count)
    costs["per-sample seeding"] = per_item(lambda i: seed_generators(sample_seed(42, 1, i)), count)
    samples = count // 64 * 64 + val_count  # what an epoch reads: full training batches, the validation set
    return {f"workers: {name} (CPU, {samples} items)": seconds * samples for name, seconds in costs.items()}


def per_item(function, count: int, rounds: int = 5) -> float:
    """Median CPU seconds of one call, over `rounds` passes of `count` items."""
    times = []
    for _ in range(rounds):
        start = time.process_time()
        for index in range(count):
            function(index)
        times.append((time.process_time() - start) / count)
    return statistics.median(times)


def report(epochs: int, ready: float, workers: dict[str, float]) -> None:
    """Means over the epochs after the first (means, unlike medians, add up)."""
    measured = range(2, epochs + 1)
    parts = sorted({part for _, part in totals}, key=order)
    per_epoch = {part: statistics.mean(totals.get((e, part), 0.0) for e in measured) for part in parts}
    first = totals.get((1, "epoch"), 0.0)
    print(f"\nseconds per epoch, mean of epochs 2-{epochs} (main process: wall; background and workers: as marked)")
    for part in parts:
        print(f"  {part:62s} {per_epoch[part]:7.3f}")
    train_parts = [p for p in parts if p.startswith("train: ") and p != "train: total"]
    loop = per_epoch["train: total"] - sum(per_epoch[p] for p in train_parts)
    print(f"  {'train: the rest (loop, progress bar)':62s} {loop:7.3f}")
    end = per_epoch["epoch"] - per_epoch["train: total"] - per_epoch["val: total"]
    print(f"  {'end of epoch (curves, checkpoint, log line)':62s} {end:7.3f}")
    for name, seconds in workers.items():
        print(f"  {name:62s} {seconds:7.3f}")
    print(f"  {'start-up: script start to the first batch':62s} {ready:7.3f}")
    print(f"  {'start-up: first epoch beyond the mean epoch':62s} {first - per_epoch['epoch']:7.3f}")


def order(part: str) -> tuple[int, str]:
    ranks = ("epoch", "train: total", "train:", "val: total", "val:", "end:", "background")
    return next(i for i, prefix in enumerate(ranks) if part.startswith(prefix)), part


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train_list", default="/tmp/digits/train.txt", help="training list (default: %(default)s)")
    parser.add_argument("--val_list", default="/tmp/digits/val.txt", help="validation list (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs to run (default: %(default)s)")
    parser.add_argument("extra", nargs="*", help="more train.py flags, after --")
    args = parser.parse_args()
    instrument()
    with tempfile.TemporaryDirectory() as checkpoints:
        argv = ["--model_type", "resnet18", "--train_list", args.train_list, "--val_list", args.val_list,
                "--epochs", str(args.epochs), "--checkpoints_dir", checkpoints, *args.extra]
        with contextlib.redirect_stderr(open("/dev/null", "w")):  # the progress bars
            code = train.main(argv)
        if code:
            raise SystemExit(f"train.py exited with {code}")
    ready = state["first_batch"] - STARTED
    report(args.epochs, ready, worker_costs(args.train_list, args.val_list, args.extra))


if __name__ == "__main__":
    main()
