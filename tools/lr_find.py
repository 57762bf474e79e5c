"""`python -m tools.lr_find [finder flags] [train.py flags]`: the learning-rate range test.

Builds what `python train.py [flags]` would train (model, data, optimizer, loss: every
train.py flag counts), then trains one batch per step at rates rising exponentially from
--start_lr to --end_lr, and stops when the loss diverges. The rates and the order of
operations are tools/lr_curve.py's; what the suggestion is and how it is chosen is said in
the output, in lr_find.json and on the chart. Into a folder of its own,
`<checkpoints_dir>/[<exp>/]lr_find/<model_type>_<save_prefix>_<time>/` (or --output_dir):

  lr_find.png    the loss (raw and smoothed) against the rate, log scale, the suggestion marked
  lr_find.csv    step, lr, loss, smoothed_loss
  lr_find.json   the suggestion and how it was chosen, the finder's flags, train.py's flags
  events.out.*   TensorBoard: lr_find/loss, lr_find/smoothed_loss and lr_find/lr by step, and the chart
  log.txt, command.sh, run_info.json

It changes no run and starts none: the weights it trained are dropped (it has no args.json,
so `python -m runs` and eval.py do not take the folder for a run). Train with the suggestion
yourself: `python train.py [the same flags] --lr <suggestion>`.
"""

import json
import logging
import math
import sys
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path

from PIL import Image
from torch.utils.tensorboard import SummaryWriter
from torchvision.transforms.v2.functional import pil_to_tensor

from options import parse_train_args
from tools import lr_curve
from tools.curve_png import log_chart
from train import Trainer
from utils.atomic import atomic_write_text
from utils.distributed import launched_by_torchrun, launched_world_size
from utils.errors import UserError
from utils.flags import AMOUNT, FRACTION, Parser, number, positive
from utils.logger import ProgressBar, log_to_file, rows_to_csv, setup_logging, stop_log_file
from utils.run_dir import create_unique_dir, experiment_dir, run_dir_name, save_command, unusable_folder
from utils.run_info import save_run_info

log = logging.getLogger(__name__)
PROG = "python -m tools.lr_find"


def finder_parser() -> Parser:
    parser = Parser(PROG, description="The learning-rate range test (docs/tools.md). Every other flag is "
                                      "train.py's (`python train.py -h`): the finder trains what they describe.")
    g = parser.add_argument_group("the range test")
    g.add_argument("--start_lr", type=positive, default=1e-7, help="the first rate (default: %(default)s)")
    g.add_argument("--end_lr", type=positive, default=10.0, help="the last rate (default: %(default)s)")
    g.add_argument("--num_steps", type=number(int, 5), default=300, help="steps (one batch each) from --start_lr to "
                   "--end_lr; fewer than the loss needs to fall suggest too low a rate (default: %(default)s)")
    g.add_argument("--smooth", type=FRACTION, default=0.9, help="beta of the loss's moving average; 0 = the raw "
                   "loss (default: %(default)s)")
    g.add_argument("--skip_start", type=AMOUNT, default=None,
                   help="burn-in: first steps left out of the suggestion (default: a tenth of --num_steps)")
    g.add_argument("--diverge", type=number(float, 1.0), default=4.0,
                   help="stop once the smoothed loss is this many times its lowest (default: %(default)s)")
    g.add_argument("--output_dir", default=None, help="the folder to write (default: <checkpoints_dir>/lr_find/"
                                                      "<model_type>_<save_prefix>_<time>)")
    return parser


def parse_args(argv: list[str]) -> tuple[Namespace, Namespace]:
    """The finder's flags and train.py's (checked by train.py's own parser); bad ones exit with 2."""
    parser = finder_parser()
    own, rest = parser.parse_known_args(argv)
    own.skip_start = own.num_steps // 10 if own.skip_start is None else own.skip_start
    if own.end_lr <= own.start_lr:
        parser.error(f"--end_lr {own.end_lr} must be larger than --start_lr {own.start_lr}.")
    if own.skip_start + 3 > own.num_steps:
        parser.error(f"--skip_start {own.skip_start} leaves fewer than 3 of --num_steps {own.num_steps} to choose "
                     "from; use more steps or a shorter burn-in.")
    if launched_by_torchrun():
        parser.error(f"the finder runs as one process, but torchrun started {launched_world_size()}; run it with "
                     "python.")
    if any(word == "--resume" or word.startswith("--resume=") for word in rest):
        parser.error("--resume: the finder starts from what the flags build (--load_model_path for trained "
                     "weights), never from a run to continue; it changes no run.")
    train_args, _ = parse_train_args(rest)
    return own, train_args


def endless(trainer: Trainer) -> Iterator[dict]:
    """Training batches, epoch after epoch, in the order train.py would see them."""
    epoch = 0
    while True:
        epoch += 1
        trainer.train_loader.sampler.set_epoch(epoch)
        yield from trainer.train_loader


def range_test(trainer: Trainer, lrs: list[float], beta: float, factor: float) -> tuple[list[float], bool]:
    """One optimizer step per rate, as train.py's step (train_step, backward, optimizer_step:
    clipping and the loss scaler included; no schedule, no average). Returns the losses, up
    to and including the one at which the smoothed loss diverged, and whether it did."""
    trainer.scheduler, trainer.ema = None, None  # the rate is the finder's; nothing is averaged
    trainer.model.train()
    losses: list[float] = []
    for lr, batch in zip(lrs, ProgressBar(endless(trainer), "lr_find")):
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr
        trainer.task.check_labels(batch["label"], batch["path"])
        if trainer.mix is not None:
            batch["image"], batch["target"] = trainer.mix(batch["image"], batch["label"])
        out = trainer.train_step(batch)
        loss = out["loss"].item()
        losses.append(loss)
        if not math.isfinite(loss) or lr_curve.diverged(lr_curve.smoothed(losses, beta), factor):
            log.info(f"Diverged at step {len(losses)} (lr {lr:.3g}): the smoothed loss passed {factor} x its lowest.")
            return losses, True
        trainer.scaler.scale(out["loss"]).backward()
        trainer.optimizer_step()
    return losses, False


def describe_choice(own: Namespace) -> str:
    return (f"the steepest fall of the smoothed loss per decade of rate (moving average, beta {own.smooth}, "
            f"bias-corrected, read forwards and backwards so that it does not lag), between a burn-in of "
            f"{own.skip_start} steps and the lowest smoothed loss")


def write_results(folder: Path, own: Namespace, train_args: Namespace, lrs: list[float], losses: list[float],
                  diverged: bool) -> dict:
    """The chart, the table, TensorBoard and lr_find.json; returns lr_find.json's content."""
    kept = losses[:-1] if diverged else losses  # the step that diverged is no candidate
    smooth, no_lag = lr_curve.smoothed(losses, own.smooth), lr_curve.zero_lag(kept, own.smooth)
    chosen = lr_curve.suggestion(lrs, kept, own.smooth, own.skip_start)
    index, lowest = chosen if chosen is not None else (None, None)
    result = {
        "suggested_lr": lrs[index] if chosen else None,
        "how_chosen": describe_choice(own),
        "suggested_step": index + 1 if chosen else None,
        "lowest_smoothed_loss": {"step": lowest + 1, "lr": lrs[lowest], "loss": no_lag[lowest]} if chosen else None,
        "diverged_at_step": len(losses) if diverged else None,
        "steps_run": len(losses),
        "finder": vars(own),
        "train_args": vars(train_args),
    }
    rows = [{"step": i + 1, "lr": lr, "loss": loss, "smoothed_loss": s, "smoothed_no_lag": z}
            for i, (lr, loss, s, z) in enumerate(zip(lrs, losses, smooth, no_lag + [math.nan]))]
    atomic_write_text(folder / "lr_find.csv", rows_to_csv(rows))
    atomic_write_text(folder / "lr_find.json", json.dumps(result, indent=2) + "\n")
    draw_chart(folder / "lr_find.png", lrs[:len(losses)], losses, smooth, no_lag, result, own.diverge,
               f"learning-rate range test: {train_args.model_type} on {Path(train_args.train_list).name}")
    with SummaryWriter(log_dir=str(folder)) as writer:
        for row in rows:
            for name in ("loss", "smoothed_loss", "smoothed_no_lag", "lr"):
                if math.isfinite(row[name]):
                    writer.add_scalar(f"lr_find/{name}", row[name], row["step"])
        with Image.open(folder / "lr_find.png") as chart:
            writer.add_image("lr_find/chart", pil_to_tensor(chart.convert("RGB")), 0)
    return result


def draw_chart(path: Path, lrs: list[float], losses: list[float], smooth: list[float], no_lag: list[float],
               result: dict, factor: float, title: str) -> None:
    """lr_find.png: the three curves against the rate; the y axis from the lowest loss to the
    starting one, or higher as far as the smoothed loss went up to where a divergence is
    called (raw spikes above are cut off)."""
    finite = [y for y in smooth if math.isfinite(y)]
    top = max(finite[0], min(max(finite), min(finite) * factor))
    y_range = (min(y for y in losses + finite if math.isfinite(y)), top * 1.02)
    marker = (result["suggested_lr"], f"suggested {result['suggested_lr']:.2g}") if result["suggested_lr"] else None
    log_chart(path, lrs, [(losses, "#b8b8b8", "loss"), (smooth, "#1f5fbf", "smoothed"),
                          (no_lag + [math.nan] * (len(lrs) - len(no_lag)), "#2a9d3a", "smoothed, no lag")],
              title, "learning rate", "loss", marker=marker, y_range=y_range)


def output_folder(own: Namespace, args: Namespace) -> Path:
    parent = Path(own.output_dir) if own.output_dir else experiment_dir(args.checkpoints_dir, args.exp) / "lr_find"
    try:
        return create_unique_dir(parent / run_dir_name(args.model_type, args.save_prefix))
    except OSError as error:
        raise UserError(unusable_folder(parent, error)) from None


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 done, 2 bad input (one message; nothing written)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    setup_logging()
    own, train_args = parse_args(argv)
    folder = None
    try:
        trainer = Trainer(train_args)  # bad data or model end here, before the folder exists
        folder = output_folder(own, train_args)
        log_to_file(folder / "log.txt")
        save_command(folder, "-m tools.lr_find", argv)
        save_run_info(folder)
        lrs = lr_curve.rates(own.start_lr, own.end_lr, own.num_steps)
        log.info(f"Range test: {own.num_steps} steps from lr {own.start_lr:g} to {own.end_lr:g}; into {folder}")
        losses, diverged = range_test(trainer, lrs, own.smooth, own.diverge)
        result = write_results(folder, own, train_args, lrs, losses, diverged)
    except UserError as error:
        log.error(f"error: {error}")
        return 2
    finally:
        if folder is not None:
            stop_log_file(folder / "log.txt")
    if result["suggested_lr"] is None:
        log.warning("No suggestion: fewer than 3 steps between the burn-in and the lowest smoothed loss (the loss "
                    "fell only in the burn-in); lower --start_lr, a shorter --skip_start or more --num_steps.")
    else:
        log.info(f"Suggested --lr {result['suggested_lr']:.3g} (step {result['suggested_step']}): "
                 f"{result['how_chosen']}. The lowest smoothed loss, {result['lowest_smoothed_loss']['loss']:.4g}, "
                 f"was at lr {result['lowest_smoothed_loss']['lr']:.3g}. Chart: {folder / 'lr_find.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
