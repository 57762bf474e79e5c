"""A trained checkpoint, rebuilt for the tools: which file a command names (a .pth, a run
directory's best.pth, or the newest run's), its run's training flags, and its model with
its task, the way eval.py rebuilds them (`eval.load_model`)."""

from argparse import Namespace
from pathlib import Path

from torch import nn

from eval import load_model
from tasks import Task
from utils.errors import UserError
from utils.run_search import newest_matching_run, resolve_checkpoint
from utils.torch_utils import read_checkpoint_and_sha256


def find_checkpoint(path: str | None, checkpoints_dir: str, prog: str) -> tuple[Path, dict, str]:
    """The checkpoint `path` names (a run directory: its best.pth; None: the newest finished
    run's), read once, and the SHA-256 of the bytes read (what the tool records)."""
    resolved = resolve_checkpoint(path or newest_matching_run(checkpoints_dir, {}, prog=prog))
    checkpoint, sha256 = read_checkpoint_and_sha256(resolved)
    return resolved, checkpoint, sha256


def training_args(checkpoint: dict, path: Path) -> Namespace:
    """The flags the checkpoint's run trained with; a checkpoint train.py did not write is refused."""
    saved = checkpoint.get("args")
    if not (isinstance(saved, dict) and isinstance(checkpoint.get("model_kwargs"), dict) and checkpoint.get("task")):
        raise UserError(f"{path} does not say which model, task and flags it holds (no args, model_kwargs and "
                        "task): give a checkpoint written by train.py.")
    return Namespace(**saved)


def rebuild_model(checkpoint: dict, path: Path, ema: bool = False) -> tuple[nn.Module, Task, Namespace]:
    """The checkpoint's model with its weights (its averaged ones with `ema`), its task and
    its run's flags; the model on the CPU, in eval mode."""
    args = training_args(checkpoint, path)
    if ema and not isinstance(checkpoint.get("ema"), dict):
        raise UserError(f"--ema: {path} holds no averaged weights; train with --ema_decay to have them.")
    loading = Namespace(**{**vars(args), "load_model_path": str(path), "ema": ema, "load_not_strict": False})
    model, task = load_model(loading, checkpoint, checkpoint["model_kwargs"], checkpoint["task"])
    return model.eval(), task, args
