"""`python -m runs.sweep`: train every point of a grid of flags, times seeds (and folds), into
one experiment folder, and pick up where it left off when run again.

    python -m runs.sweep --exp lr_sweep --grid lr=0.001,0.003,0.01 --seeds 0 1 2 -- --epochs 3
    python -m runs.sweep --exp lr_opt --grid lr=0.001,0.01 --grid optimizer=sgd,adamw --seeds 0 1 --jobs 2
    python -m runs.sweep --exp cv --grid lr=0.001,0.01 --folds 5 -- --epochs 20   # train.py needs --fold(s)
    python -m runs checkpoints/lr_sweep --group_by lr      # then: mean ± std over the seeds

Flags after `--` go to every train.py run. Runs go to <checkpoints_dir>/<exp>/, beside the
manifest sweep.json (every point, its state and run directory) and sweep_logs/ (each run's
output). Running the same command again skips finished runs, resumes interrupted and dead
ones (train.py --resume), and leaves failed ones alone unless --retry_failed (a new run; the
manifest keeps the old one). Adding grid values or seeds adds points; other changes are
refused. Exit code: 0 all finished, 1 some did not (see the summary), 2 bad input,
128 + signal when stopped (Ctrl-C: 130; every run saves, the next invocation resumes).
"""

import argparse
import os
import signal
import sys
from pathlib import Path

from runs.gpus import job_devices
from runs.sweep_grid import check_train_flags, grid_points, parse_grid
from runs.sweep_manifest import (
    MANIFEST_NAME,
    SweepLock,
    entry_point,
    load_manifest,
    merge_points,
    new_manifest,
    save_manifest,
)
from runs.sweep_report import Progress, describe_plan, summary
from runs.sweep_runner import Job, Task, plan_task, refresh_state, run_tasks, start_job, task_command
from utils.atomic import writing
from utils.errors import UserError

TRAIN_SCRIPT = Path(__file__).resolve().parents[1] / "train.py"


def build_parser() -> argparse.ArgumentParser:
    usage_and_examples = "\n\n".join(__doc__.split("\n\n")[:3])
    parser = argparse.ArgumentParser(prog="python -m runs.sweep", description=usage_and_examples,
                                     usage="%(prog)s --exp NAME [--grid FLAG=V1,V2,...] [--seeds S ...] [options] "
                                           "[-- train.py flags]", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", required=True, help="experiment folder name: runs go to <checkpoints_dir>/<exp>/")
    parser.add_argument("--grid", action="append", default=[], metavar="FLAG=V1,V2",
                        help="a train.py flag and its values, e.g. lr=0.001,0.01; repeat for a grid of several flags")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                        help="run every grid point with each --seed (default: train.py's seed, once)")
    parser.add_argument("--folds", type=int, default=None, metavar="K",
                        help="cross-validation: run every point K times, with train.py flags --folds K --fold i")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (default: %(default)s); with CUDA GPUs "
                        "each gets its own through CUDA_VISIBLE_DEVICES, round robin")
    parser.add_argument("--gpus_per_job", type=int, default=None, metavar="G",
                        help="give each run G consecutive GPUs (default: one each when --jobs > 1)")
    parser.add_argument("--retry_failed", action="store_true", help="start failed points again, as new runs")
    parser.add_argument("--dry_run", action="store_true", help="print what would run, and run nothing")
    parser.add_argument("--checkpoints_dir", default="checkpoints",
                        help="folder that holds the experiment folders (default: %(default)s)")
    parser.add_argument("--script", type=Path, default=TRAIN_SCRIPT,
                        help="the training script (default: this project's train.py); it must take train.py's "
                             "--exp, --checkpoints_dir, --seed and --resume and log `Run directory: <path>`")
    return parser


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the sweep's own flags, the flags after `--` for every train.py run)."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


def check_args(args: argparse.Namespace) -> None:
    """Value checks argparse cannot do; raise UserError naming the flag."""
    check_exp_name(args.exp)
    for name, least in (("jobs", 1), ("gpus_per_job", 1), ("folds", 2)):
        value = getattr(args, name)
        if value is not None and value < least:
            raise UserError(f"--{name} {value} must be {least} or more.")
    if args.seeds is not None and len(set(args.seeds)) < len(args.seeds):
        raise UserError(f"--seeds {' '.join(map(str, args.seeds))} repeats a seed; give each once.")
    if not args.script.is_file():
        raise UserError(f"--script {args.script} does not exist; give the training script, e.g. train.py.")


def check_exp_name(name: str) -> None:
    """--exp becomes one folder (the rule of train.py's --exp): refuse anything that would be
    several folders, leave the checkpoints folder, or hide it from the runs listing."""
    if not name or name != name.strip() or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise UserError(f"--exp {name!r} is not a folder name: use one non-empty name without '/' or "
                        "'\\', not starting with '.' and without spaces at either end, e.g. --exp lr_sweep.")


def main(argv: list[str] | None = None) -> int:
    """Entry point; a UserError becomes one line on stderr and exit code 2."""
    own, train_flags = split_argv(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(own)
    try:
        check_args(args)
        return sweep(args, train_flags)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before any run started (e.g. while torch counts the GPUs)
        print("Stopped before any run started.", file=sys.stderr)
        return 128 + signal.SIGINT


def sweep(args: argparse.Namespace, train_flags: list[str]) -> int:
    """Check the sweep against its manifest, then run (or with --dry_run, describe) what is left."""
    grid = parse_grid(args.grid)
    check_train_flags(train_flags, grid)
    points = grid_points(grid, args.seeds, args.folds)
    devices = job_devices(args.jobs, args.gpus_per_job)
    exp_dir = Path(args.checkpoints_dir) / args.exp
    if args.dry_run:
        manifest, tasks = prepare(exp_dir, args, train_flags, points)
        print(describe_plan(manifest, tasks, exp_dir, lambda task: command_of(task, args, train_flags, manifest)))
        return 0
    with writing(exp_dir / MANIFEST_NAME):
        exp_dir.mkdir(parents=True, exist_ok=True)
    with SweepLock(exp_dir):
        manifest, tasks = prepare(exp_dir, args, train_flags, points)
        save_manifest(exp_dir, manifest)
        print(f"Sweep {args.exp}: {len(manifest['points'])} points, {len(tasks)} to run, {args.jobs} at a time; "
              f"logs in {exp_dir / 'sweep_logs'}. Ctrl-C stops every run (each saves); from another shell: "
              f"kill -INT -- -{os.getpgrp()}", flush=True)
        with Progress(manifest, exp_dir, tasks) as progress:
            stopped = run_tasks(tasks, args.jobs, lambda task, slot: start(task, slot, args, train_flags, manifest,
                                                                           devices, exp_dir),
                                exp_dir, manifest, progress.report)
        save_manifest(exp_dir, manifest)
    text, all_finished = summary(manifest, exp_dir, list(dict(grid)), stopped)
    print(text)
    return 128 + stopped if stopped else 0 if all_finished else 1


def prepare(exp_dir: Path, args: argparse.Namespace, train_flags: list[str], points: list) -> tuple[dict, list[Task]]:
    """The manifest (read and merged with this command's points, or new) and the tasks to run."""
    manifest = load_manifest(exp_dir)
    if manifest is None:
        manifest = new_manifest(args.exp, train_flags, args.folds, points)
    else:
        merge_points(manifest, points, train_flags, args.folds)
    for entry in manifest["points"]:
        refresh_state(entry, exp_dir)
    tasks = [plan_task(entry, exp_dir, args.retry_failed) for entry in manifest["points"]]
    return manifest, [task for task in tasks if task is not None]


def command_of(task: Task, args: argparse.Namespace, train_flags: list[str], manifest: dict) -> list[str]:
    """The train.py command line of a task."""
    script = os.path.relpath(args.script) if not os.path.relpath(args.script).startswith("..") else str(args.script)
    point_flags = entry_point(task.entry).train_flags(manifest["folds"])
    return task_command(task, [sys.executable, script], [*point_flags, *train_flags, "--exp", args.exp,
                                                         "--checkpoints_dir", args.checkpoints_dir])


def start(task: Task, slot: int, args: argparse.Namespace, train_flags: list[str], manifest: dict,
          devices: list[str] | None, exp_dir: Path) -> Job:
    """Start a task's train.py in job slot `slot` (which decides its GPUs)."""
    return start_job(task, command_of(task, args, train_flags, manifest), slot, devices, args.gpus_per_job, exp_dir)


if __name__ == "__main__":
    sys.exit(main())
