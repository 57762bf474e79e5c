"""Benchmark: how long `python -m runs` takes to list, and to aggregate, 1,000 run directories.

    python bench/runs_table.py [--runs 1000] [--epochs 30]

Writes synthetic run directories (args.json, status.json, metrics.csv with one row per
epoch, run_info.json, a small stand-in last.pth, and an evaluation for every third run;
a tenth of them in experiment folders) into a temporary folder, then times the listing
twice: in this process (reading and formatting only), and as a user runs it (a new Python
process, start-up included); then `--group_by lr --group_by model_type` the same two ways
(21 groups of about 48 runs: 7 learning rates x 3 models, with several seeds each). The
target is under 2 seconds for 1,000 runs.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from runs.listing import list_runs  # noqa: E402

ARGS = {"batch_size": 64, "beta": 0.999, "checkpoints_dir": "checkpoints", "data_root": "data/downloads",
        "data_type": "list", "debug": False, "deterministic": False, "download": False, "epochs": 30,
        "exp": None, "gpus": None, "image_size": 32, "load_model_path": None, "load_not_strict": False,
        "loss": "cross_entropy", "lr": 0.003, "lr_gamma": 0.1, "lr_step_size": None, "model_type": "base",
        "momentum": 0.9, "monitor": "val/acc", "monitor_mode": "max", "num_workers": 2, "optimizer": "adamw",
        "print_freq": 20, "resume": None, "save_every_steps": 0, "save_freq": 5, "save_prefix": "exp",
        "scheduler": "cosine", "seed": 42, "train_list": "data/demo/train.txt", "val_list": "data/demo/val.txt",
        "weight_decay": 0.0001}


def write_run(run_dir: Path, index: int, epochs: int) -> None:
    """One finished run's text files, as train.py writes them, with varied values."""
    run_dir.mkdir(parents=True)
    args = {**ARGS, "lr": 0.001 * (1 + index % 7), "seed": index // 21, "epochs": epochs,
            "model_type": ("base", "better", "resnet18")[index % 3], "run_dir": str(run_dir)}
    (run_dir / "args.json").write_text(json.dumps(args, indent=2, sort_keys=True))
    (run_dir / "status.json").write_text(json.dumps({
        "status": "finished", "started": "2026-11-25T13:01:02+01:00", "ended": "2026-11-25T13:31:40+01:00",
        "updated": "2026-11-25T13:31:40+01:00", "error": None, "resumes": []}))
    (run_dir / "run_info.json").write_text(json.dumps({"git_commit": "0" * 40, "git_dirty": False}))
    lines = ["epoch,train/lr,train/loss,train/acc,val/loss,val/acc"]
    jitter = (index * 7919 % 100) / 10_000  # seeds differ a little, so the groups have a spread
    lines += [f"{e},{0.003 / e:.6f},{1 / e:.6f},{1 - 1 / (e + 1):.6f},{1.2 / e:.6f},{1 - 1.1 / (e + 2) - jitter:.6f}"
              for e in range(1, epochs + 1)]
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    (run_dir / "last.pth").write_bytes(b"\0" * 1024)  # the listing must never open it
    if index % 3 == 0:
        result_dir = run_dir / "best" / "val_eval"
        result_dir.mkdir(parents=True)
        (result_dir / "args.json").write_text("{}")
        (result_dir / "result.txt").write_text("loss: 0.123\nacc: 0.970\n" + "".join(
            f"acc/{name}: 0.9\n" for name in ("circle", "square", "triangle", "star", "cross")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=30)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "checkpoints"
        for index in range(options.runs):
            parent = root / f"exp_{index // 100}" if index % 10 == 0 else root
            write_run(parent / f"base_exp_20261125-{index:06d}", index, options.epochs)
        table, listed, listed_command = time_listing(root, [])
        groups, grouped, grouped_command = time_listing(root, ["--group_by", "lr", "--group_by", "model_type"])
    print(table.splitlines()[0][:120])
    print("\n".join(groups.splitlines()[:4]))
    print(f"{options.runs} runs, {options.epochs} epochs each: listed in {listed:.2f} s in-process, "
          f"{listed_command:.2f} s as `python -m runs` (start-up included); target < 2 s")
    print(f"{options.runs} runs aggregated (--group_by lr --group_by model_type, {len(groups.splitlines()) - 3} "
          f"groups) in {grouped:.2f} s in-process, {grouped_command:.2f} s as `python -m runs`")


def time_listing(root: Path, flags: list[str]) -> tuple[str, float, float]:
    """(the output, seconds in this process, seconds as a new `python -m runs` process)."""
    group_by = flags[1::2]
    start = time.perf_counter()
    text = list_runs(root, where=[], sort="best" if not group_by else None, descending=True, as_csv=False,
                     group_by=group_by)
    in_process = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "runs", str(root), *flags], check=True, capture_output=True,
                   cwd=Path(__file__).resolve().parents[1])
    return text, in_process, time.perf_counter() - start


if __name__ == "__main__":
    main()
