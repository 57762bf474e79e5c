"""A stand-in for train.py in the sweep's tests (`python -m runs.sweep --script tests/fake_train.py`):
the same flags, files and `Run directory:` line that the sweep relies on, no torch, instant.

    --lr <= 0                 a bad flag: one `error:` line, exit 2, no run directory (as train.py)
    --fail_lr X               the run with --lr X fails after making its run directory (status.json
                              failed, exit 1)
    --wait_for_signal         writes last.pth, then waits for SIGINT/SIGTERM: saves, exit 128 + signal
    --barrier DIR --barrier_count N   waits until N runs reached DIR (proves they run at once)
    --resume <run dir>        marks that run finished and notes the resumption in resumed.txt

Each new run records CUDA_VISIBLE_DEVICES in env.json and writes metrics.csv with val/acc =
lr * 10 + seed / 100, so tests can check what the group table computes.
"""

import argparse
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

DEADLINE = 600  # tests/helpers.py EVENT_DEADLINE: a barrier waits this long at most


def write_status(run_dir: Path, **values: object) -> None:
    path = run_dir / "status.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    tmp = run_dir / ".status.json.tmp"
    tmp.write_text(json.dumps({**old, **values}))
    os.replace(tmp, path)


def new_run_dir(args: argparse.Namespace) -> Path:
    """`fake_run`, `fake_run_1`, ...: names that say nothing of the run, as when train.py's runs
    start in the same second, so the sweep must learn each run's directory from its own log."""
    parent = Path(args.checkpoints_dir) / (args.exp or "")
    parent.mkdir(parents=True, exist_ok=True)
    for suffix in range(1000):
        candidate = parent / ("fake_run" if suffix == 0 else f"fake_run_{suffix}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError("no free run directory name")


def wait_at_barrier(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + DEADLINE
    while len(list(folder.iterdir())) < count:
        if time.monotonic() > deadline:
            sys.exit("barrier: the other runs never came (they did not run at once)")
        time.sleep(0.01)


def wait_for_signal(run_dir: Path) -> None:
    def stop(number: int, frame: object) -> None:
        write_status(run_dir, status="interrupted", error=f"stopped by {signal.Signals(number).name}")
        sys.exit(128 + number)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    (run_dir / "last.pth").write_bytes(b"fake checkpoint")
    write_status(run_dir, waiting=True)  # the event a test waits for: handlers are in place
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        time.sleep(0.05)
    sys.exit("no signal came")


def main() -> int:
    parser = argparse.ArgumentParser(prog="fake_train.py")
    for name, default in (("--checkpoints_dir", "checkpoints"), ("--exp", None), ("--resume", None),
                          ("--barrier", None), ("--fold", None), ("--folds", None)):
        parser.add_argument(name, default=default)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--barrier_count", type=int, default=2)
    parser.add_argument("--fail_lr", type=float, default=None)
    parser.add_argument("--wait_for_signal", action="store_true")
    args, others = parser.parse_known_args()
    if args.resume is not None:
        run_dir = Path(args.resume)
        with open(run_dir / "resumed.txt", "a") as file:
            file.write("resumed\n")
        write_status(run_dir, status="finished", pid=os.getpid())
        return 0
    if args.lr <= 0:
        print(f"fake_train.py: error: --lr {args.lr} must be a positive number.", file=sys.stderr)
        return 2
    run_dir = new_run_dir(args)
    (run_dir / "args.json").write_text(json.dumps({**vars(args), "others": others, "model_type": "fake"}))
    (run_dir / "env.json").write_text(json.dumps({"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}))
    write_status(run_dir, status="running", host=socket.gethostname(), pid=os.getpid())
    print(f"Run directory: {run_dir}", flush=True)
    (run_dir / "metrics.csv").write_text(f"epoch,val/acc\n1,{args.lr * 10 + args.seed / 100}\n")
    if args.barrier:
        wait_at_barrier(Path(args.barrier), args.barrier_count)
    if args.lr == args.fail_lr:
        write_status(run_dir, status="failed", error="ValueError: the fake run failed on purpose")
        return 1
    if args.wait_for_signal:
        wait_for_signal(run_dir)
    write_status(run_dir, status="finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
