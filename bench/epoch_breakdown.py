"""Benchmark: where a template epoch's time goes, part by part. Prints figures; not a test.

    python bench/epoch_breakdown.py --train_list /tmp/digits/train.txt --val_list /tmp/digits/val.txt \\
        [--epochs 4] [-- more train.py flags]

Runs `train.py --model_type resnet18` (the flags of bench/lightning_vs_template.py; flags
after `--` are added) in this process, with timers put around the Trainer's parts from the
outside (the product has none), and prints seconds per epoch (the mean over the epochs after
the first, which also starts the workers):

  main process, wall and CPU seconds: waiting for data, forward + loss (train.forward),
  backward, optimizer step, the per-step bookkeeping (label check, train.measure: the Meter's
  loss mean and the task's confusion matrix; the progress bar's loss and the per-step
  curves), TensorBoard pictures, validation (train.evaluate), the
  epoch's curves (TensorBoard, metrics.csv) and checkpoint (status.json, serialising,
  waiting for the previous write), and what is left: the loop itself and tqdm;
  in the background: the checkpoint write and fsync (wall, its own thread), the prefetch
  thread (utils/logger.py's ProgressBar, CPU seconds), when the progress bar runs one;
  in the data workers: their CPU seconds per epoch (read from /proc), and what per-sample
  seeding, decoding and the transform cost, timed per item in this process (one thread, as a
  worker runs) and multiplied by the samples an epoch reads: CPU seconds that, on a 2-core
  machine, the workers take from the training step;
  start-up: from this script's first line (imports included) to the first batch, and the
  first epoch's time beyond the others (worker start, warm-up).
"""

import sys
import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import functools  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere

import torch  # noqa: E402

import tasks.classification  # noqa: E402
import tasks.task  # noqa: E402
import train  # noqa: E402
import utils.checkpoints  # noqa: E402
import utils.logger  # noqa: E402
from data.augment import Augment, train_transform  # noqa: E402
from data.list_dataset import ListDataset, load_image  # noqa: E402
from data.seeded_sampling import sample_seed, seed_generators  # noqa: E402

totals: dict[tuple[int, str], float] = defaultdict(float)  # (epoch, part) -> wall seconds
cpu_totals: dict[tuple[int, str], float] = defaultdict(float)  # (epoch, part) -> CPU seconds of this process
state = {"epoch": 0, "phase": "train", "first_batch": None}
lock = threading.Lock()


def add(part: str, seconds: float, epoch: int | None = None, cpu: float | None = None) -> None:
    with lock:
        key = (state["epoch"] if epoch is None else epoch, part)
        totals[key] += seconds
        if cpu is not None:
            cpu_totals[key] += cpu


def timer(owner: object, name: str, part: str | None = None, phase: str | None = None) -> None:
    """Wrap `owner.name` so that its wall time adds to `part` (prefixed by the phase: train /
    val / end); `phase` sets the phase for what it calls."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapped(*args, **kwargs):
        previous = state["phase"]
        if phase:
            state["phase"] = phase
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            add(f"{previous if phase is None else phase}: {part or name}", time.perf_counter() - start,
                cpu=time.process_time() - cpu)
            state["phase"] = previous

    setattr(owner, name, wrapped)


def instrument() -> None:
    T, Task, Meter = train.Trainer, tasks.classification.ClassificationTask, tasks.task.Meter
    Bar, Checkpoints = utils.logger.ProgressBar, utils.checkpoints.Checkpoints

    original_epoch = T.run_epoch

    def run_epoch(self, epoch):
        state["epoch"] = epoch
        start, cpu, workers = time.perf_counter(), time.process_time(), worker_cpu(self)
        try:
            return original_epoch(self, epoch)
        finally:
            add("epoch", time.perf_counter() - start, cpu=time.process_time() - cpu)
            add("workers: CPU of the DataLoader workers (measured)", worker_cpu(self) - workers)
            state["epoch"] = 0  # what runs between and after the epochs counts for none of them

    T.run_epoch = run_epoch
    timer(T, "train_per_epoch", "total", phase="train")
    timer(T, "validate", "total", phase="val")
    timer(train, "forward", "forward + loss")  # the one forward pass: Trainer.train_step's and train.evaluate's
    timer(torch.Tensor, "backward", "backward")
    timer(T, "optimizer_step", "optimizer step")
    timer(Task, "check_labels", "bookkeeping: label check")
    timer(train, "measure", "bookkeeping: measure (loss mean, confusion matrix)")
    # What the loop does every --print_freq / --log_freq steps: none of these calls another.
    for owner, name in ((train, "check_finite"), (Meter, "local_mean"), (Bar, "show"),
                        (utils.logger.Logger, "record_step")):
        timer(owner, name, "bookkeeping: bar loss + step curves")
    timer(Task, "pictures", "pictures (grid)")
    timer(utils.logger.Logger, "save_imgs", "pictures (TensorBoard)")
    timer(utils.logger.Logger, "save_curves", "curves + metrics.csv", phase="end")
    timer(T, "save_checkpoints", "checkpoint (status, serialise, wait)", phase="end")
    timer(Checkpoints, "wait", "checkpoint: waiting for the previous write")

    write = Checkpoints._write

    def timed_write(self, data, names, remove):
        epoch, start = state["epoch"], time.perf_counter()
        write(self, data, names, remove)
        add("background: checkpoint write + fsync (wall)", time.perf_counter() - start, epoch)

    Checkpoints._write = timed_write

    # The prefetch thread of the progress bar, where there is one: its CPU time.
    generator = getattr(utils.logger, "BackgroundGenerator", None)
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
    iterate = Bar.__iter__

    def bar_iter(self):
        phase = state["phase"]
        try:
            for batch in iterate(self):
                if state["first_batch"] is None:
                    state["first_batch"] = time.perf_counter()
                yield batch
        finally:
            add(f"{phase}: waiting for data", self.wait_time)

    Bar.__iter__ = bar_iter


def worker_cpu(trainer) -> float:
    """User + system CPU seconds so far of the persistent worker processes of the training and
    validation loaders (read from /proc; 0 before they start)."""
    total = 0.0
    for loader in (trainer.train_loader, trainer.val_loader):
        iterator = getattr(loader, "_iterator", None)  # the persistent workers' iterator, once started
        for worker in getattr(iterator, "_workers", []):
            try:
                fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


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
    """Means over the epochs after the first (means, unlike medians, add up). Two columns for
    the main process: wall seconds, and CPU seconds of the whole process (all its threads:
    torch's own, and the background threads while the part ran)."""
    measured = range(2, epochs + 1)
    parts = sorted({part for _, part in totals}, key=order)

    def mean(table: dict, part: str) -> float:
        return statistics.mean(table.get((e, part), 0.0) for e in measured)

    wall = {part: mean(totals, part) for part in parts}
    cpu = {part: mean(cpu_totals, part) if any((e, part) in cpu_totals for e in measured) else None
           for part in parts}
    print(f"\nseconds per epoch, mean of epochs 2-{epochs}: wall | CPU of the main process (background "
          "threads and workers: as marked)")
    for part in parts:
        shown = f"{cpu[part]:7.3f}" if cpu[part] is not None else "       "
        print(f"  {part:62s} {wall[part]:7.3f} | {shown}")
    train_parts = [p for p in parts if p.startswith("train: ") and p != "train: total"]
    for name, table in (("wall", wall), ("cpu", cpu)):
        loop = table["train: total"] - sum(table[p] or 0.0 for p in train_parts)
        end = table["epoch"] - table["train: total"] - table["val: total"]
        print(f"  {'train: the rest (loop, progress bar), ' + name:62s} {loop:7.3f}")
        print(f"  {'end of epoch (curves, checkpoint, log line), ' + name:62s} {end:7.3f}")
    for name, seconds in workers.items():
        print(f"  {name:62s} {seconds:7.3f}")
    first = totals.get((1, "epoch"), 0.0)
    print(f"  {'start-up: script start to the first batch (wall)':62s} {ready:7.3f}")
    print(f"  {'start-up: first epoch beyond the mean epoch (wall)':62s} {first - wall['epoch']:7.3f}")


def order(part: str) -> tuple[int, str]:
    ranks = ("epoch", "train: total", "train:", "val: total", "val:", "end:", "background", "workers")
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
                "--epochs", str(args.epochs), "--checkpoints_dir", checkpoints, "--no-in_memory", *args.extra]
        with contextlib.redirect_stderr(open("/dev/null", "w")):  # the progress bars
            code = train.main(argv)
        if code:
            raise SystemExit(f"train.py exited with {code}")
    ready = state["first_batch"] - STARTED
    report(args.epochs, ready, worker_costs(args.train_list, args.val_list, args.extra))


if __name__ == "__main__":
    main()
