"""Run and result directories: unique names, the files that say how a run was made, and
finding runs again.

A run directory is claimed with a single `mkdir` (no `exist_ok`), so two runs started in
the same second, even concurrently, never share one: the second gets a `_1` suffix.

What counts as a run directory is decided here, in `is_run_dir`, and everything that looks
for runs (`eval.py` without --load_model_path, `python -m runs`) goes through
`find_run_dirs`: runs sit directly under the checkpoints folder, or one folder deeper in an
experiment folder (`--exp`), or deeper still if you file them by hand.
"""

import json
import os
import shlex
from argparse import Namespace
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from utils.atomic import atomic_write_text
from utils.errors import UserError


def create_unique_dir(path: str | Path) -> Path:
    """Create `path`, or `path_1`, `path_2`, ... if taken; never reuse an existing folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate, suffix = path, 0
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            suffix += 1
            candidate = path.with_name(f"{path.name}_{suffix}")


def run_dir_name(model_type: str, save_prefix: str) -> str:
    """`<model_type>_<save_prefix>_<YYYYmmdd-HHMMSS>`: sorts by time, says what ran."""
    return f"{model_type}_{save_prefix}_{datetime.now():%Y%m%d-%H%M%S}"


def save_args(args: Namespace, folder: Path) -> None:
    """args.json (machine readable) and args.txt (one `name: value` a line)."""
    values = vars(args)
    atomic_write_text(folder / "args.json", json.dumps(values, indent=2, sort_keys=True) + "\n")
    atomic_write_text(folder / "args.txt", "".join(f"{k}: {v}\n" for k, v in sorted(values.items())))


def launcher() -> list[str]:
    """How the script was started: `python`, or torchrun with its process counts (multi-node
    runs also need the rendezvous flags of the original command, which torchrun does not pass on)."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return ["python"]
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    nodes = int(os.environ["WORLD_SIZE"]) // per_node
    return ["torchrun", f"--nproc_per_node={per_node}"] + ([f"--nnodes={nodes}"] if nodes > 1 else [])


def save_command(folder: Path, script: str, argv: list[str]) -> None:
    """command.sh: the exact command line, re-runnable (it starts a new run directory)."""
    command = shlex.join([*launcher(), script, *argv])
    text = (
        "#!/usr/bin/env bash\n"
        f"# Recorded {datetime.now():%Y-%m-%d %H:%M:%S}. Re-running it starts a new run directory.\n"
        f"cd {shlex.quote(os.getcwd())}\n"
        f"{command}\n"
    )
    atomic_write_text(folder / "command.sh", text)
    (folder / "command.sh").chmod(0o755)


def check_experiment_name(name: str) -> None:
    """--exp becomes one folder under the checkpoints folder: refuse anything that would be
    several folders, leave it, or hide it (hidden folders are skipped when looking for runs)."""
    if not name or name != name.strip() or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise UserError(f"--exp {name!r} is not a folder name: use one non-empty name without '/' or "
                        "'\\', not starting with '.' and without spaces at either end, e.g. --exp lr_sweep.")


def experiment_dir(checkpoints_dir: str | Path, exp: str | None) -> Path:
    """Where a new run directory goes: `<checkpoints_dir>/<exp>/`, or `<checkpoints_dir>/`."""
    return Path(checkpoints_dir) / exp if exp else Path(checkpoints_dir)


def is_run_dir(folder: Path) -> bool:
    """The one rule for what a run directory is: a folder that directly holds `args.json`
    (train.py writes it as the run starts, before status.json and any checkpoint), except an evaluation's result
    folder, which holds one too. Those sit at `<dir>/<checkpoint stem>/<name>/`; inside a run
    they are never reached (the search does not enter runs), and for a loose checkpoint they
    are recognised by the `<dir>/<checkpoint stem>.pth` beside their parent."""
    if not (folder / "args.json").is_file():
        return False
    return not (folder.parent.parent / f"{folder.parent.name}.pth").is_file()


def find_run_dirs(root: str | Path) -> Iterator[Path]:
    """Every run directory under `root` (or `root` itself if it is one), in name order.
    Folders that are not runs are searched (experiment folders); runs and hidden folders
    are not entered, so evaluations inside runs are never taken for runs."""
    root = Path(root)
    if is_run_dir(root):
        yield root
        return
    try:
        children = sorted(entry.path for entry in os.scandir(root) if entry.is_dir() and entry.name[0] != ".")
    except OSError:  # missing, not a folder, or not readable: no runs there
        return
    for child in children:
        yield from find_run_dirs(child)


def newest_run_dir(root: str | Path) -> Path | None:
    """The most recently started (or resumed) run directory under `root`, experiment folders
    included: by the time of its args.json, which only training writes (an evaluation adds a
    folder inside a run, which would change the run folder's own time)."""
    return max(find_run_dirs(root), key=lambda p: (p / "args.json").stat().st_mtime, default=None)
