"""Benchmark: how long saving an epoch's checkpoints holds the training loop up. Prints figures; not a test.

    python bench/checkpoint_cost.py [--rounds 7] [--folder checkpoints]

The checkpoint is the one the Trainer writes (`training_state` in utils/checkpoints.py) for
resnet18 with 1,000 classes (11.7 M parameters, 45 MiB of weights) and AdamW, after one step
(so the optimizer holds its two averages: the file is about three times the weights). An epoch that improves
--monitor keeps it as last.pth and best.pth. Interleaved, each round:

- before (the template at commit 50d7f45): `torch.save` into a temporary file, fsync, rename,
  once for last.pth and again for best.pth, all in the training thread;
- now (utils/checkpoints.py): `Checkpoints.submit` serialises once into memory (the only
  part the training thread waits for) and a background thread writes last.pth (fsync, rename)
  and links best.pth to it; the time until both are on disk is shown too (training goes on
  meanwhile; here the benchmark waits for it).

Files go to --folder (the disk run directories live on).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere

from model.resnet18 import build_resnet18  # noqa: E402
from utils.atomic import atomic_write  # noqa: E402
from utils.checkpoints import Checkpoints, training_state  # noqa: E402


def checkpoint_state() -> dict:
    """What Trainer.checkpoint_state holds for resnet18 / 1,000 classes after one AdamW step."""
    torch.manual_seed(0)
    model = build_resnet18(num_classes=1000)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=100)
    state = training_state(model, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False), None)
    return state | {"epoch": 1, "global_step": 100, "metrics": {"val/acc": 0.5}, "history": [{"epoch": 1}]}


def save_before(state: dict, folder: Path) -> None:
    """Commit 50d7f45's Trainer.save_checkpoints for an improved epoch: atomic_torch_save twice."""
    for name in ("last.pth", "best.pth"):
        atomic_write(folder / name, lambda file: torch.save(state, file))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="measured saves a side (default: %(default)s)")
    parser.add_argument("--folder", default=str(ROOT / "checkpoints"),
                        help="where to write (a temporary folder inside it; default: %(default)s)")
    args = parser.parse_args()
    state = checkpoint_state()
    weights = sum(t.numel() * t.element_size() for t in state["model"].values()) / 2**20
    times: dict[str, list[float]] = {name: [] for name in ("before: blocked", "now: blocked", "now: until on disk")}
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        writer = Checkpoints("val/acc", "max", save_freq=1)  # as the Trainer builds it; only its writing is timed
        writer.open(Path(folder))
        for round_index in range(args.rounds + 1):  # round 0 warms up and is dropped
            measured = {}
            for side in ("before", "now") if round_index % 2 else ("now", "before"):
                start = time.perf_counter()
                if side == "before":
                    save_before(state, Path(folder))
                    measured["before: blocked"] = time.perf_counter() - start
                    continue
                writer.submit(state, ["last.pth", "best.pth"])
                measured["now: blocked"] = time.perf_counter() - start
                writer.wait()
                measured["now: until on disk"] = time.perf_counter() - start
            if round_index:
                for name, value in measured.items():
                    times[name].append(value)
        size = os.path.getsize(Path(folder) / "last.pth") / 2**20
    print(f"torch {torch.__version__}; resnet18, 1,000 classes: {weights:.0f} MiB of weights, checkpoint "
          f"{size:.0f} MiB "
          f"(weights + AdamW's averages); last.pth + best.pth; median seconds of {args.rounds} saves a side")
    for name, values in times.items():
        print(f"{name:24s} {statistics.median(values):7.3f} s   (min {min(values):.3f}, max {max(values):.3f})")
    before, now = statistics.median(times["before: blocked"]), statistics.median(times["now: blocked"])
    print(f"training blocked per improved epoch: before {before:.3f} s, now {now:.3f} s ({before / now:.1f}x less)")


if __name__ == "__main__":
    main()
