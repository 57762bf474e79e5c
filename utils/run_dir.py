"""Run and result directories: unique names, and the files that say how a run was made.

A run directory is claimed with a single `mkdir` (no `exist_ok`), so two runs started in
the same second, even concurrently, never share one: the second gets a `_1` suffix.
"""

import json
import os
import shlex
from argparse import Namespace
from datetime import datetime
from pathlib import Path

from utils.atomic import atomic_write_text


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


def newest_run_dir(root: str | Path) -> Path | None:
    """The most recently started run directory under `root` (one holding args.json), if any."""
    runs = [p.parent for p in Path(root).glob("*/args.json")]
    return max(runs, key=lambda p: p.stat().st_mtime, default=None)
