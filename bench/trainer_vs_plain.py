"""Benchmark: is the template slower than a hand-written loop? Prints figures; not a test.

    python bench/trainer_vs_plain.py [--rounds 12]             # CPU: the figures in README.md
    python bench/trainer_vs_plain.py --device cuda [--rounds 5] # GPU: resnet18, 32x32 from memory, batch 256
    python bench/trainer_vs_plain.py --task segmentation [--seg_data /tmp/digits] [--rounds 8]

In one process, with the same model, data, batch size and seed, it alternates epochs of
(a) the template's Trainer (`train_per_epoch`, `validate`: progress bar,
per-sample seeds, label checks, exact metrics, TensorBoard curves and pictures) and (b) a
plain loop of the pytorch/examples kind, and prints for each configuration the median epoch
time of both, the ratio template / plain for training and for evaluation, images per second,
peak memory and the compute efficiency the progress bar reports.

CPU (the default without CUDA): base model, batch 64, 2 workers, the demo pictures decoded
from disk every epoch; then `--in_memory` against disk. CUDA: resnet18 on the demo's 32x32
pictures held in memory (--in_memory), batch 256, 12 workers, epochs of CIFAR-10's length (195
training and 40 validation batches: the pictures repeated), in fp32 and in bf16 with
channels_last. On CUDA it also times the host time of each piece of the template's per-step
bookkeeping (bench/step_overhead.py), so that
a ratio above 1 comes with its likely cause. Timed regions end with torch.cuda.synchronize()
(here only: the template itself never waits for the GPU). Run it on a quiet machine: other
work on the cores skews both sides.

Segmentation (`--task segmentation [--seg_data /tmp/digits]`) runs bench/seg_vs_plain.py's
`speed` mode: the template's unet (batch 32, Adam) against a plain loop with pictures and masks
in memory, epochs interleaved in one process. That script also breaks an epoch into parts and
gives the plain loop's mIoU curve; its data, model and metric share nothing with the
classification sides here.
"""

import argparse
import copy
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest.mock import patch

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere

import train  # noqa: E402
from bench import seg_vs_plain  # noqa: E402
from bench.step_overhead import print_step_overhead  # noqa: E402
from data.demo_data import ensure_demo_data  # noqa: E402
from data.views import Part  # noqa: E402
from options import parse_train_args  # noqa: E402
from train import Trainer  # noqa: E402
from utils.host_memory import keep_freed_memory  # noqa: E402
from utils.logger import Logger  # noqa: E402
from utils.run_dir import RunDir  # noqa: E402
from utils.torch_utils import AMP_DTYPES, memory_format, unwrap_model  # noqa: E402

PRESETS = {
    "cpu": {"model_type": "base", "batch_size": 64, "num_workers": 2, "in_memory": False, "eval_passes": 5,
            "train_batches": 0, "val_batches": 0, "ablations": False, "configs": [[]]},
    "cuda": {"model_type": "resnet18", "batch_size": 256, "num_workers": 12, "in_memory": True, "eval_passes": 3,
             "train_batches": 195, "val_batches": 40, "ablations": True,
             "configs": [[], ["--amp", "bf16", "--channels_last"]]},
}
PLAIN_READ_EVERY = 20  # the plain loop reads its loss every 20 steps, like pytorch/examples' log_interval


def plain_train_epoch(model, loader, optimizer, scaler, device, amp_dtype, layout) -> None:
    """pytorch/examples mnist `train()` with the AMP recipe (autocast, GradScaler for fp16):
    forward, loss, backward, step; the loss read every 20 steps."""
    model.train()
    for i, batch in enumerate(loader):
        data = batch["image"].to(device, non_blocking=True, memory_format=layout)
        target = batch["label"].to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = F.cross_entropy(model(data), target)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if i % PLAIN_READ_EVERY == 0:
            loss.item()


@torch.no_grad()
def plain_eval_epoch(model, loader, device, amp_dtype, layout) -> float:
    """pytorch/examples mnist `test()`: summed loss and right answers, read every batch."""
    model.eval()
    test_loss, correct = 0.0, 0
    for batch in loader:
        data = batch["image"].to(device, non_blocking=True, memory_format=layout)
        target = batch["label"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            output = model(data)
        test_loss += F.cross_entropy(output, target, reduction="sum").item()
        correct += output.argmax(dim=1).eq(target).sum().item()
    return correct / len(loader.dataset)


def timed(function: Callable[[int], object], epoch: int, cuda: bool) -> tuple[float, float]:
    """(seconds, peak memory in MiB) of one call: CUDA's allocator peak, else this process's peak RSS."""
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak RSS (VmHWM)
    start = time.perf_counter()
    function(epoch)
    if cuda:
        torch.cuda.synchronize()
        return time.perf_counter() - start, torch.cuda.max_memory_allocated() / 2**20
    seconds = time.perf_counter() - start
    peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
    return seconds, peak_kib / 1024


def repeated(dataset: Dataset, batches: int, batch_size: int) -> Dataset:
    """`batches` full batches of `dataset`'s samples, cycled (all of it for 0): epochs of a
    fixed length from a small set."""
    return Part(dataset, [i % len(dataset) for i in range(batches * batch_size)]) if batches else dataset


def template_trainer(args: argparse.Namespace, config: list[str], folder: Path, in_memory: bool) -> Trainer:
    """A Trainer as train.py builds it, with the Logger that Trainer.train opens (so curves and
    pictures are written, as in a real run) and a run folder, never opened, whose stop signals
    the loop reads after each step (nothing is saved: no --save_every_steps, no stop)."""
    argv = ["--model_type", args.model_type, "--batch_size", str(args.batch_size),
            "--num_workers", str(args.num_workers), "--checkpoints_dir", str(folder), "--epochs", "1000",
            "--optimizer", "adam", "--scheduler", "none", "--seed", "0",
            "--gpus", "0" if args.device == "cuda" else "-1", "--in_memory" if in_memory else "--no-in_memory", *config]
    train_args, _ = parse_train_args(argv)
    real_sets = train.training_sets

    def fixed_length_sets(namespace: argparse.Namespace) -> tuple[Dataset, Dataset]:
        train_set, val_set = real_sets(namespace)
        return (repeated(train_set, args.train_batches, args.batch_size),
                repeated(val_set, args.val_batches, args.batch_size))

    with patch.object(train, "training_sets", fixed_length_sets):
        trainer = Trainer(train_args)
    trainer.logger = Logger(Path(tempfile.mkdtemp(dir=folder)))
    trainer.run = RunDir.new(folder, "bench")
    return trainer


def plain_sides(trainer: Trainer) -> dict[str, Callable[[int], object]]:
    """The plain loop on a copy of the template's model, with the same optimizer settings, the
    same samples (those under the template's per-sample seeding) and the same loader settings."""
    a, device = trainer.args, trainer.device
    model = copy.deepcopy(unwrap_model(trainer.model))
    layout, amp_dtype = memory_format(a.channels_last), AMP_DTYPES[a.amp]
    model = model.to(memory_format=torch.channels_last) if a.channels_last else model
    optimizer = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(a.momentum, a.beta), weight_decay=a.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=a.amp == "fp16")
    common = dict(batch_size=a.batch_size, num_workers=a.num_workers, pin_memory=torch.cuda.is_available(),
                  persistent_workers=a.num_workers > 0)
    train_loader = DataLoader(trainer.train_loader.dataset.dataset, shuffle=True, drop_last=True, **common)
    val_loader = DataLoader(trainer.val_loader.dataset, shuffle=False, **common)
    return {"plain train": lambda e: plain_train_epoch(model, train_loader, optimizer, scaler, device, amp_dtype,
                                                       layout),
            "plain eval": lambda e: plain_eval_epoch(model, val_loader, device, amp_dtype, layout)}


def template_sides(trainer: Trainer, efficiency: list[float]) -> dict[str, Callable[[int], object]]:
    """The template's training and validation epochs."""
    def train_epoch(epoch: int) -> None:
        trainer.train_per_epoch(epoch)
        efficiency.append(trainer.logger.scalars.get("time/data_efficiency", float("nan")))

    return {"template train": train_epoch, "template eval": lambda epoch: trainer.validate()}


def measure(sides: dict[str, Callable[[int], object]], args: argparse.Namespace) -> dict[str, list]:
    """Epochs of every side, interleaved, the order rotating each time so that drift hits all
    sides alike; round 0 warms up (worker start, cuDNN tuning, caches) and is dropped. Stops
    after --max_seconds (at least two measured rounds)."""
    groups = [[name for name in sides if name.endswith(part)] for part in ("train", "eval")]
    runs = {name: [] for name in sides}
    epoch, start = 0, time.perf_counter()
    for round_index in range(args.rounds + 1):
        for names in [groups[0]] + [groups[1]] * args.eval_passes:
            epoch += 1
            shift = epoch % len(names)
            for name in names[shift:] + names[:shift]:
                measured = timed(sides[name], epoch, args.device == "cuda")
                if round_index:
                    runs[name].append(measured)
        if round_index >= 2 and args.max_seconds and time.perf_counter() - start > args.max_seconds:
            break
    return runs


def report(name: str, runs: dict[str, list], trainer: Trainer, efficiency: list[float]) -> None:
    """The figures of one configuration, then one SUMMARY line for scripts."""
    a = trainer.args
    samples = {"train": len(trainer.train_loader) * a.batch_size, "eval": len(trainer.val_loader.dataset)}
    print(f"[{name}] device {trainer.device}, model {a.model_type}, batch {a.batch_size}, workers {a.num_workers}, "
          f"{len(trainer.train_loader)} training / {len(trainer.val_loader)} validation batches an epoch; "
          f"median over {len(runs['plain train'])} training and {len(runs['plain eval'])} validation epochs a side")
    ratios = {}
    for part in ("train", "eval"):
        seconds = {side: statistics.median(t for t, _ in runs[f"{side} {part}"]) for side in ("template", "plain")}
        memory = {side: max(m for _, m in runs[f"{side} {part}"]) for side in ("template", "plain")}
        ratios[part] = seconds["template"] / seconds["plain"]
        per_second = {side: samples[part] / seconds[side] for side in seconds}
        print(f"{part:5s}  template {seconds['template']:7.3f} s   plain {seconds['plain']:7.3f} s   ratio "
              f"{ratios[part]:.3f}   images/s template {per_second['template']:,.0f}, plain {per_second['plain']:,.0f}"
              f"   peak memory template {memory['template']:.0f} MiB, plain {memory['plain']:.0f} MiB")
    compute = statistics.median(efficiency) if efficiency else float("nan")
    print(f"compute efficiency (progress bar, median of the template's training epochs): {compute:.1%}")
    print(f"SUMMARY {name.replace(' ', '+')} train_ratio={ratios['train']:.3f} eval_ratio={ratios['eval']:.3f} "
          f"train_images_per_s={samples['train'] / statistics.median(t for t, _ in runs['template train']):.0f} "
          f"eval_images_per_s={samples['eval'] / statistics.median(t for t, _ in runs['template eval']):.0f} "
          f"efficiency={compute:.3f}", flush=True)


def compare(args: argparse.Namespace, config: list[str], folder: Path) -> None:
    """Template against plain loop (and the bookkeeping's cost) for one configuration of flags."""
    name = " ".join(flag.removeprefix("--") for flag in config) or "fp32"
    trainer = template_trainer(args, config, folder, args.in_memory)
    efficiency: list[float] = []
    sides = template_sides(trainer, efficiency) | plain_sides(trainer)
    runs = measure(sides, args)
    report(name, runs, trainer, efficiency[1:])  # the first is the warm-up's
    if args.ablations:
        plain_epoch = statistics.median(t for t, _ in runs["plain train"])
        print_step_overhead(trainer, plain_epoch / len(trainer.train_loader) * 1e6)
    print(flush=True)


def compare_in_memory(args: argparse.Namespace, folder: Path) -> None:
    """The same Trainer reading the pictures from disk every epoch and holding them in memory."""
    times = {}
    for in_memory in (False, True):
        trainer = template_trainer(args, [], folder, in_memory)
        trainer.train_per_epoch(1)  # warm-up
        times[in_memory] = statistics.median(timed(trainer.train_per_epoch, e, args.device == "cuda")[0]
                                             for e in range(2, 2 + args.rounds))
        efficiency = trainer.logger.scalars.get("time/data_efficiency", float("nan"))
        where = "in memory" if in_memory else "from disk"
        print(f"data {where}: {times[in_memory]:.3f} s per training epoch, compute efficiency {efficiency:.1%}")
    print(f"--in_memory / from disk epoch-time ratio: {times[True] / times[False]:.3f}")


def parse_args() -> argparse.Namespace:
    """Flags left out take the device's preset (PRESETS)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="where to train; auto: cuda when there is a GPU (default: %(default)s)")
    parser.add_argument("--task", choices=["classification", "segmentation"], default="classification",
                        help="segmentation: the unet on --seg_data's mask lists against a plain loop, as "
                             "`bench/seg_vs_plain.py speed` times them (default: %(default)s)")
    parser.add_argument("--seg_data", type=Path, default=ROOT / "data" / "demo",
                        help="--task segmentation: a folder with seg_train.txt, seg_val.txt and seg_classes.txt "
                             "(default: the demo set; bench/digits_data.py writes a real one)")
    parser.add_argument("--rounds", type=int, default=5, help="measured epochs per side (default: %(default)s)")
    parser.add_argument("--max_seconds", type=float, default=0,
                        help="stop a configuration's rounds after this long, two at least (default: no limit)")
    parser.add_argument("--model_type", help="model to time (cpu: base, cuda: resnet18)")
    parser.add_argument("--batch_size", type=int, help="batch size (cpu: 64, cuda: 256)")
    parser.add_argument("--num_workers", type=int, help="DataLoader workers (cpu: 2, cuda: 12)")
    parser.add_argument("--in_memory", action=argparse.BooleanOptionalAction,
                        help="pictures decoded once and held in memory (cpu: off, cuda: on)")
    parser.add_argument("--train_batches", type=int,
                        help="training batches an epoch, the pictures repeated; 0: the demo set once (cuda: 195)")
    parser.add_argument("--val_batches", type=int, help="validation batches an epoch, likewise (cuda: 40)")
    parser.add_argument("--eval_passes", type=int,
                        help="validation epochs a side per round: they are short, so more of them (cpu: 5, cuda: 3)")
    parser.add_argument("--amp", choices=list(AMP_DTYPES),
                        help="time this one --amp setting (default: cpu none; cuda none, then bf16 + channels_last)")
    parser.add_argument("--channels_last", action=argparse.BooleanOptionalAction, help="with --amp: NHWC or not")
    parser.add_argument("--ablations", action=argparse.BooleanOptionalAction,
                        help="also time each piece of the template's per-step bookkeeping (cpu: off, cuda: on)")
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA GPU here")
    for name, value in PRESETS[args.device].items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    if args.amp is not None or args.channels_last is not None:
        args.configs = [["--amp", args.amp or "none", *(["--channels_last"] if args.channels_last else [])]]
    return args


def describe_machine(device: str) -> str:
    if device != "cuda":
        return f"torch {torch.__version__} on the CPU ({os.cpu_count()} cores)"
    return (f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
            f"{torch.cuda.get_device_name()}, {os.cpu_count()} CPU cores")


def main() -> None:
    args = parse_args()
    os.chdir(ROOT)  # the demo lists are relative to the project folder
    ensure_demo_data("data/demo/train.txt")
    kept = keep_freed_memory()  # as train.py does; both sides share this process
    print(describe_machine(args.device) + f"; freed memory kept for reuse: {'yes' if kept else 'no'}", flush=True)
    if args.task == "segmentation":  # bench/seg_vs_plain.py's speed mode: the template's unet against a plain loop
        seg_vs_plain.speed(argparse.Namespace(data=args.seg_data, rounds=args.rounds, config=None), [])
        return
    with tempfile.TemporaryDirectory() as folder:
        for config in args.configs:
            compare(args, config, Path(folder))
            gc.collect()  # the configuration's worker processes end with its loaders
        if args.device == "cpu":
            compare_in_memory(args, Path(folder))


if __name__ == "__main__":
    main()
