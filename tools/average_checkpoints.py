"""`python -m tools.average_checkpoints <run dir> [--top_k K] [--output FILE]`: the weights of
the best epochs a run kept (`--save_top_k`: top_epoch_<N>.pth) averaged into one checkpoint,
as timm's avg_checkpoints.py does, with the BatchNorm statistics computed again.

An average of weights is not an average of what they compute: BatchNorm's running mean and
variance, averaged, no longer match the activations of the averaged weights. They are
therefore measured again, as torch.optim.swa_utils.update_bn does: reset, then the whole
training set once through the averaged model in training mode, without gradients, as the
run's training loader reads it (its augmentation and order, seeded by the run's --seed),
each batch weighing alike.

The output, by default `<run dir>/averaged_top<K>.pth`, is a plain-dict checkpoint (the
weights, the run's model_kwargs, task, class names and flags, and `averaged`: which epochs,
their files and monitored values), which eval.py and predict.py take as any checkpoint:
`python eval.py --load_model_path <run dir>/averaged_top3.pth`. It is not a training state:
--resume continues from last.pth only. An existing output is never replaced.
"""

import io
import json
import logging
import sys
from argparse import Namespace
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from data.data_entry import select_train_loader, training_sets
from tools.saved_run import rebuild_model
from utils.atomic import atomic_write_bytes
from utils.errors import UserError
from utils.flags import AMOUNT, Parser
from utils.liveness import dead_reason
from utils.logger import setup_logging
from utils.run_info import file_sha256
from utils.run_search import is_run_dir
from utils.torch_utils import model_state, read_checkpoint, select_device, set_seed

log = logging.getLogger(__name__)
PROG = "python -m tools.average_checkpoints"


def build_parser() -> Parser:
    parser = Parser(PROG, description="Average the top-k checkpoints of a run into one, BatchNorm statistics "
                                      "recomputed on its training data (docs/tools.md).")
    parser.add_argument("run_dir", help="a run directory trained with --save_top_k")
    parser.add_argument("--top_k", type=AMOUNT, default=0, help="average the K best of the kept epochs (default: "
                                                                "all that the run kept)")
    parser.add_argument("--output", default=None, help="the file to write (default: <run dir>/averaged_top<K>.pth)")
    parser.add_argument("--gpus", type=int, nargs="+", default=None, help="GPU for the BatchNorm pass; -1 = CPU "
                                                                          "(default: GPU 0 if present)")
    parser.add_argument("--num_workers", type=AMOUNT, default=None, help="DataLoader workers for the BatchNorm "
                                                                         "pass (default: the run's)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of input errors")
    return parser


def kept_epochs(run_dir: Path, top_k: int) -> tuple[list[tuple[float, int]], dict]:
    """The run's kept top-k (monitored value, epoch), best first, the `top_k` best of them, and
    its last.pth; every file must be there."""
    last = read_checkpoint(run_dir / "last.pth", mmap=True)
    top = [(value, epoch) for value, epoch in (last.get("checkpoints") or {}).get("top", [])]
    if len(top) < 2:
        raise UserError(f"{run_dir} keeps {len(top)} top-k checkpoint(s) (top_epoch_<N>.pth); averaging needs 2 or "
                        "more: train with --save_top_k 3 (or more).")
    if top_k == 1 or top_k > len(top):
        raise UserError(f"--top_k {top_k}: {run_dir} keeps {len(top)} top-k checkpoints; give 2 to {len(top)} "
                        "(or leave it out: all).")
    top = top[:top_k or len(top)]
    missing = [f"top_epoch_{epoch}.pth" for _, epoch in top if not (run_dir / f"top_epoch_{epoch}.pth").is_file()]
    if missing:
        raise UserError(f"{run_dir} lacks {', '.join(missing)}, which its last.pth lists among the kept epochs.")
    return top, last


def average_weights(checkpoints: list[dict], names: list[str]) -> dict[str, torch.Tensor]:
    """The mean of each floating-point tensor (in float64, then in its own type); integer ones
    (BatchNorm's batch counts) from the first, the best; they must all hold the same tensors."""
    states = [model_state(checkpoint) for checkpoint in checkpoints]
    for name, state in zip(names[1:], states[1:]):
        if state.keys() != states[0].keys() or any(state[k].shape != states[0][k].shape for k in state):
            raise UserError(f"{name} does not hold the same tensors as {names[0]}; they are not of one model.")
    averaged = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            averaged[key] = (sum(state[key].double() for state in states) / len(states)).to(first.dtype)
        else:
            averaged[key] = first.clone()
    return averaged


def recompute_batchnorm(model: nn.Module, train_args: Namespace, device: torch.device) -> int:
    """BatchNorm's running statistics measured again over the run's training set (see the
    module docstring); returns the number of batches (0: the model has no BatchNorm)."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return 0
    set_seed(train_args.seed)  # dropout before a BatchNorm draws: the same statistics every time
    loader = select_train_loader(train_args, training_sets(train_args)[0])
    loader.sampler.set_epoch(1)
    update_bn((batch["image"] for batch in loader), model.to(device), device)
    return len(loader)


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 written, 2 bad input (one message; nothing written)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    try:
        return average(args)
    except UserError as error:
        if args.debug:
            raise
        parser.error(str(error))


def average(args: Namespace) -> int:
    run_dir = Path(args.run_dir)
    if not is_run_dir(run_dir) or not (run_dir / "last.pth").is_file():
        raise UserError(f"{run_dir} is not a run directory with a last.pth; give the folder of a run trained with "
                        "--save_top_k.")
    try:
        status = json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        status = {}
    if isinstance(status, dict) and status.get("status") == "running" and dead_reason(status) is None:
        raise UserError(f"{run_dir} is still training (status.json: running); its top-k files change as it goes. "
                        "Average them once it has finished.")
    top, last = kept_epochs(run_dir, args.top_k)
    output = Path(args.output) if args.output else run_dir / f"averaged_top{len(top)}.pth"
    if output.exists():
        raise UserError(f"{output} exists; an averaged checkpoint is never replaced: remove it, or give --output.")
    if not output.parent.is_dir():
        raise UserError(f"--output {output}: the folder {output.parent} does not exist.")
    files = [run_dir / f"top_epoch_{epoch}.pth" for _, epoch in top]
    checkpoints = [read_checkpoint(path, mmap=True) for path in files]
    if any(checkpoint.get("run_id") != last.get("run_id") for checkpoint in checkpoints):
        raise UserError(f"The top_epoch files of {run_dir} are not all of the run in it (their run_id differs).")
    best = checkpoints[0]
    model, _, train_args = rebuild_model(best, files[0])
    model.load_state_dict(average_weights(checkpoints, [path.name for path in files]))
    if args.num_workers is not None:
        train_args.num_workers = args.num_workers
    batches = recompute_batchnorm(model, train_args, select_device(args.gpus))
    monitor = (last.get("checkpoints") or {}).get("monitor")
    state = {key: best[key] for key in ("model_kwargs", "loss_kwargs", "class_names", "task", "data", "run_id", "args")
             if key in best}
    state |= {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "ema": None,
              "epoch": max(epoch for _, epoch in top),
              "averaged": {"epochs": [epoch for _, epoch in top], "files": [path.name for path in files],
                           "sha256": [file_sha256(path) for path in files], "monitor": monitor,
                           "values": [value for value, _ in top], "batchnorm_batches": batches}}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(output, buffer.getvalue())
    statistics = (f"BatchNorm statistics recomputed on {batches} training batches" if batches
                  else "no BatchNorm to recompute")
    log.info(f"Averaged epochs {', '.join(str(e) for _, e in top)} of {run_dir} (best {monitor} "
             f"{', '.join(f'{v:.4g}' for v, _ in top)}); {statistics}. Written: {output}\n"
             f"  evaluate it: python eval.py --load_model_path {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
