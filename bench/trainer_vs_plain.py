"""Benchmark: is the template slower than a hand-written loop? Prints figures; not a test.

    python bench/trainer_vs_plain.py [--rounds 5] [--model_type base] [--batch_size 64] [--num_workers 2]

In one process, with the same model, data, batch size and seed, it alternates epochs of
(a) the template's Trainer (`train_per_epoch`, `val_per_epoch`: progress bar, prefetching,
per-sample seeds, exact metrics, TensorBoard pictures) and (b) a plain loop of the
pytorch/examples kind, and prints the median epoch-time ratio template / plain for training
and for evaluation, and the peak memory of each. Then it compares `--data_type mem_list`
with `list` (the same Trainer; epoch-time ratio) and prints the compute efficiency that the
progress bar reports. Run it on a quiet machine: other work on the cores skews both sides.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere

from data.augment import eval_transform, train_transform  # noqa: E402
from data.demo_data import ensure_demo_data  # noqa: E402
from data.list_dataset import ListDataset  # noqa: E402
from options import prepare_train_args  # noqa: E402
from train import Trainer  # noqa: E402
from utils.torch_utils import unwrap_model  # noqa: E402


def plain_train_epoch(model, loader, optimizer, device) -> None:
    """pytorch/examples mnist `train()`: forward, loss, backward, step; the loss read every 20 steps."""
    model.train()
    for i, batch in enumerate(loader):
        data, target = batch["image"].to(device, non_blocking=True), batch["label"].to(device, non_blocking=True)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(data), target)
        loss.backward()
        optimizer.step()
        if i % 20 == 0:
            loss.item()


@torch.no_grad()
def plain_eval_epoch(model, loader, device) -> float:
    """pytorch/examples mnist `test()`: summed loss and right answers, read every batch."""
    model.eval()
    test_loss, correct = 0.0, 0
    for batch in loader:
        data, target = batch["image"].to(device, non_blocking=True), batch["label"].to(device, non_blocking=True)
        output = model(data)
        test_loss += F.cross_entropy(output, target, reduction="sum").item()
        correct += output.argmax(dim=1).eq(target).sum().item()
    return correct / len(loader.dataset)


def timed(function, *args) -> tuple[float, float]:
    """(seconds, peak memory in MiB) of one call: CUDA's allocator peak, else this process's peak RSS."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak RSS (VmHWM)
    start = time.perf_counter()
    function(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        return time.perf_counter() - start, torch.cuda.max_memory_allocated() / 2**20
    seconds = time.perf_counter() - start
    peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
    return seconds, peak_kib / 1024


def template_trainer(args: argparse.Namespace, data_type: str, checkpoints: str) -> Trainer:
    argv = ["--model_type", args.model_type, "--data_type", data_type, "--batch_size", str(args.batch_size),
            "--num_workers", str(args.num_workers), "--checkpoints_dir", checkpoints, "--epochs", "1000",
            "--optimizer", "adam", "--scheduler", "none", "--seed", "0"]
    return Trainer(prepare_train_args(argv))


def plain_setup(trainer: Trainer, args: argparse.Namespace):
    """The same model weights, optimizer kind and data, in plain DataLoaders."""
    model = unwrap_model(trainer.model)
    plain_model = type(model)(**trainer.model_kwargs).to(trainer.device)
    plain_model.load_state_dict(model.state_dict())
    optimizer = torch.optim.Adam(plain_model.parameters(), lr=trainer.args.lr)
    common = dict(batch_size=args.batch_size, num_workers=args.num_workers, pin_memory=torch.cuda.is_available(),
                  persistent_workers=args.num_workers > 0)
    train_dataset = ListDataset(trainer.args.train_list, train_transform(32))
    train_loader = DataLoader(train_dataset, shuffle=True, drop_last=True, **common)  # the Trainer's batches
    val_loader = DataLoader(ListDataset(trainer.args.val_list, eval_transform(32)), shuffle=False, **common)
    return plain_model, optimizer, train_loader, val_loader


def compare(args: argparse.Namespace, checkpoints: str) -> None:
    trainer = template_trainer(args, "list", checkpoints)
    model, optimizer, train_loader, val_loader = plain_setup(trainer, args)
    sides = {
        "template train": lambda epoch: trainer.train_per_epoch(epoch),
        "plain train": lambda epoch: plain_train_epoch(model, train_loader, optimizer, trainer.device),
        "template eval": lambda epoch: trainer.val_per_epoch(epoch),
        "plain eval": lambda epoch: plain_eval_epoch(model, val_loader, trainer.device),
    }
    runs = {name: [] for name in sides}
    epoch = 0
    for round_index in range(args.rounds + 1):  # round 0 warms up (worker start, caches) and is dropped
        pairs = [("template train", "plain train")] + [("template eval", "plain eval")] * args.eval_passes
        for pair in pairs:  # alternate which side goes first, so drift hits both alike
            epoch += 1
            for name in pair if epoch % 2 else reversed(pair):
                measured = timed(sides[name], epoch)
                if round_index:
                    runs[name].append(measured)
    report(runs, trainer)


def report(runs: dict, trainer: Trainer) -> None:
    print(f"device {trainer.device}, model {trainer.args.model_type}, batch {trainer.args.batch_size}, "
          f"workers {trainer.args.num_workers}; median seconds per epoch over {len(runs['plain train'])} "
          f"training and {len(runs['plain eval'])} validation epochs a side")
    for part in ("train", "eval"):
        template = statistics.median(t for t, _ in runs[f"template {part}"])
        plain = statistics.median(t for t, _ in runs[f"plain {part}"])
        memory = {side: max(m for _, m in runs[f"{side} {part}"]) for side in ("template", "plain")}
        print(f"{part:5s}  template {template:7.3f} s   plain {plain:7.3f} s   ratio {template / plain:.3f}   "
              f"peak memory template {memory['template']:.0f} MiB, plain {memory['plain']:.0f} MiB")
    print(f"compute efficiency (progress bar, last template epoch): "
          f"{trainer.logger.scalars.get('time/data_efficiency', float('nan')):.1%}")


def compare_mem_list(args: argparse.Namespace, checkpoints: str) -> None:
    """The same Trainer on `list` (decode every epoch) and `mem_list` (decode once)."""
    times = {}
    for data_type in ("list", "mem_list"):
        trainer = template_trainer(args, data_type, checkpoints)
        trainer.train_per_epoch(1)  # warm-up
        times[data_type] = statistics.median(timed(trainer.train_per_epoch, e)[0] for e in range(2, 2 + args.rounds))
        efficiency = trainer.logger.scalars.get("time/data_efficiency", float("nan"))
        print(f"data {data_type:8s}: {times[data_type]:.3f} s per training epoch, compute efficiency {efficiency:.1%}")
    print(f"mem_list / list epoch-time ratio: {times['mem_list'] / times['list']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="measured epochs per side (default: %(default)s)")
    parser.add_argument("--model_type", default="base", help="model to time (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=64, help="batch size (default: %(default)s)")
    parser.add_argument("--num_workers", type=int, default=2, help="DataLoader workers (default: %(default)s)")
    parser.add_argument("--eval_passes", type=int, default=5,
                        help="validation epochs a side per round: they are short, so more of them "
                             "(default: %(default)s)")
    args = parser.parse_args()
    os.chdir(ROOT)  # the demo lists are relative to the project folder
    ensure_demo_data("data/demo/train.txt")
    with tempfile.TemporaryDirectory() as checkpoints:
        compare(args, checkpoints)
        compare_mem_list(args, checkpoints)


if __name__ == "__main__":
    main()
