"""Command-line flags for train.py and eval.py, their checks, and the run directory.

`prepare_train_args(argv)` / `prepare_test_args(argv)` parse, check every value (a bad one
stops the program with one clear message and exit code 2, before anything is written),
create the run / result directory, save the args there and return the Namespace.
Pass `argv` as a list to call them from Python (tests); None reads `sys.argv`.
"""

import logging
import sys
from argparse import ArgumentParser, Namespace
from pathlib import Path

import torch

from data.data_entry import DATASETS, LIST_TYPES, eval_set_name
from data.demo_data import DEMO_ROOT, demo_list
from loss import LOSSES
from model.model_entry import MODELS
from utils.distributed import (
    broadcast_from_main,
    init_distributed,
    is_main_process,
    launched_by_torchrun,
    world_size,
)
from utils.errors import UserError
from utils.logger import setup_logging
from utils.run_dir import (
    check_experiment_name,
    create_unique_dir,
    experiment_dir,
    newest_run_dir,
    run_dir_name,
    save_args,
    save_command,
)
from utils.run_info import collect_run_info, file_sha256, save_run_info
from utils.run_status import RunStatus
from utils.torch_utils import read_checkpoint

log = logging.getLogger(__name__)

# eval.py takes these from the checkpoint's saved args unless given on its command line.
INHERITED_BY_EVAL = ("model_type", "data_type", "val_list", "image_size", "data_root", "ignore_index")
# Flags a resumed run may change: they alter neither the model, the data nor the updates.
HARMLESS_ON_RESUME = ("epochs", "num_workers", "print_freq", "log_freq", "save_freq", "save_every_steps",
                      "gpus", "debug", "checkpoints_dir")


def parse_common_args(parser: ArgumentParser) -> ArgumentParser:
    """Flags shared by training and evaluation."""
    group = parser.add_argument_group("common")
    group.add_argument("--model_type", default="base", choices=list(MODELS),
                       help="model to build, a name in model/model_entry.py (default: %(default)s)")
    group.add_argument("--data_type", default="list", choices=list(DATASETS),
                       help="data set, a name in data/data_entry.py (default: %(default)s)")
    group.add_argument("--save_prefix", default="exp",
                       help="a word naming the run in its folder name (default: %(default)s)")
    group.add_argument("--load_model_path", default=None,
                       help="checkpoint (.pth) or run directory to load weights from")
    group.add_argument("--load_not_strict", action="store_true",
                       help="load only the tensors whose names and shapes match the model")
    group.add_argument("--val_list", default=None,
                       help="list file of the validation / evaluation set (default: the demo's, "
                            "data/demo/val.txt, or seg_val.txt for --data_type seg_list)")
    group.add_argument("--data_root", default="data/downloads",
                       help="folder of torchvision data sets, e.g. MNIST (default: %(default)s)")
    group.add_argument("--download", action="store_true",
                       help="let torchvision download --data_type into --data_root (needs internet)")
    group.add_argument("--ignore_index", type=int, default=255,
                       help="segmentation: mask value that loss and metrics skip (default: %(default)s)")
    group.add_argument("--image_size", type=int, default=32,
                       help="list images are resized to this square side, pixels (default: %(default)s)")
    group.add_argument("--gpus", type=int, nargs="+", default=None,
                       help="GPU ids to use; several = DataParallel; -1 = CPU (default: GPU 0 if present)")
    group.add_argument("--seed", type=int, default=42,
                       help="seed for python, numpy and torch (default: %(default)s)")
    group.add_argument("--num_workers", type=int, default=2,
                       help="DataLoader worker processes; 0 loads in the main process (default: %(default)s)")
    group.add_argument("--batch_size", type=int, default=64,
                       help="samples per batch (default: %(default)s)")
    group.add_argument("--checkpoints_dir", default="checkpoints",
                       help="folder that holds the run directories (default: %(default)s)")
    group.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"],
                       help="mixed precision: autocast to bfloat16 or float16 (fp16 adds loss scaling); "
                            "bf16 suits recent GPUs (default: %(default)s)")
    group.add_argument("--channels_last", action="store_true",
                       help="NHWC memory layout for the model and images: faster convolutions on tensor cores")
    group.add_argument("--compile", action="store_true",
                       help="torch.compile the model (the first steps are slow while it compiles)")
    group.add_argument("--deterministic", action="store_true",
                       help="use only deterministic algorithms: same seed, same numbers (slower)")
    group.add_argument("--debug", action="store_true",
                       help="show the full traceback of input errors instead of one message")
    return parser


def parse_train_args(parser: ArgumentParser) -> ArgumentParser:
    """Common flags plus the training ones."""
    parse_common_args(parser)
    group = parser.add_argument_group("training")
    group.add_argument("--train_list", default=None,
                       help="list file of the training set (default: the demo's, data/demo/train.txt, "
                            "or seg_train.txt for --data_type seg_list)")
    group.add_argument("--epochs", type=int, default=10, help="epochs to train (default: %(default)s)")
    group.add_argument("--lr", type=float, default=3e-3, help="learning rate (default: %(default)s)")
    group.add_argument("--optimizer", default="adamw", choices=["sgd", "adam", "adamw"],
                       help="optimizer (default: %(default)s)")
    group.add_argument("--momentum", type=float, default=0.9,
                       help="SGD momentum; Adam/AdamW beta1 (default: %(default)s)")
    group.add_argument("--beta", type=float, default=0.999,
                       help="Adam/AdamW beta2 (default: %(default)s)")
    group.add_argument("--weight_decay", type=float, default=1e-4,
                       help="weight decay (default: %(default)s)")
    group.add_argument("--scheduler", default="cosine", choices=["none", "step", "cosine"],
                       help="learning-rate schedule, stepped once per epoch (default: %(default)s)")
    group.add_argument("--lr_step_size", type=int, default=None,
                       help="--scheduler step: epochs between decays (default: a third of --epochs)")
    group.add_argument("--lr_gamma", type=float, default=0.1,
                       help="--scheduler step: factor applied at each decay (default: %(default)s)")
    group.add_argument("--loss", default="cross_entropy", choices=list(LOSSES),
                       help="loss, a name in loss.py (default: %(default)s)")
    group.add_argument("--accum_steps", type=int, default=1,
                       help="add up the gradients of N batches per optimizer step: an N times larger "
                            "batch in the same memory (default: %(default)s)")
    group.add_argument("--clip_grad", type=float, default=0.0,
                       help="clip the gradient norm to this value before each step; 0 = off (default: %(default)s)")
    group.add_argument("--print_freq", type=int, default=20,
                       help="log the running loss every N steps (default: %(default)s)")
    group.add_argument("--log_freq", type=int, default=20,
                       help="write per-step TensorBoard curves (loss, lr) every N steps (default: %(default)s)")
    group.add_argument("--save_freq", type=int, default=5,
                       help="also keep epoch_<N>.pth every N epochs (default: %(default)s)")
    group.add_argument("--monitor", default=None,
                       help="curve that picks best.pth, e.g. val/acc or val/loss (default: the task's main "
                            "validation metric: val/acc for classification, val/miou for segmentation)")
    group.add_argument("--monitor_mode", default=None, choices=["max", "min"],
                       help="whether a larger or a smaller --monitor is better (default: min for a loss, else max)")
    group.add_argument("--resume", default=None,
                       help="continue a run: its directory (uses last.pth) or a checkpoint in it; "
                            "flags you add may only change harmless settings, e.g. --epochs")
    group.add_argument("--save_every_steps", type=int, default=0,
                       help="also save last.pth every N steps inside an epoch, so a long epoch can be "
                            "resumed mid-way (default: 0, only at the end of each epoch)")
    group.add_argument("--exp", default=None,
                       help="experiment name: the run directory goes into <checkpoints_dir>/<exp>/, so "
                            "related runs stay together (default: directly in <checkpoints_dir>/)")
    return parser


def parse_test_args(parser: ArgumentParser) -> ArgumentParser:
    """Common flags plus the evaluation ones. Model and data flags left out are taken
    from the checkpoint's saved args, so `eval.py --load_model_path X` just works."""
    parse_common_args(parser)
    parser.set_defaults(**{name: None for name in INHERITED_BY_EVAL}, save_prefix="eval")
    group = parser.add_argument_group("evaluation")
    group.add_argument("--save_viz", action="store_true",
                       help="also write PNG pictures of predictions into the result folder")
    group.add_argument("--viz_freq", type=int, default=10,
                       help="with --save_viz, draw every N-th batch (default: %(default)s)")
    return parser


def prepare_train_args(argv: list[str] | None = None) -> Namespace:
    """Parse and check the training flags, create the run directory (or, with --resume,
    reopen it), save the args, the code and machine facts and the status there."""
    parser = parse_train_args(ArgumentParser(description="Train a model; see README.md."))
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    changed = {}
    try:
        init_distributed()  # under torchrun: join the other processes (no-op otherwise)
        if args.resume is not None:
            args, changed = merge_resume_args(parser, argv, args.resume)
        args.train_list = args.train_list or demo_list(args.data_type, train=True)
        args.val_list = args.val_list or demo_list(args.data_type, train=False)
        check_common_args(args)
        check_train_args(args)
        if args.load_model_path is not None:
            args.load_model_path = str(resolve_checkpoint(args.load_model_path, args.checkpoints_dir))
    except UserError as error:
        parser.error(str(error))
    if args.resume is None:  # rank 0 makes the run directory and tells the others its name
        run_dir = None
        if is_main_process():
            run_dir = create_unique_dir(experiment_dir(args.checkpoints_dir, args.exp) /
                                        run_dir_name(args.model_type, args.save_prefix))
            save_command(run_dir, "train.py", argv)
        args.run_dir = str(broadcast_from_main(run_dir))
    if not is_main_process():  # the other processes write nothing
        setup_logging(None)
        return args
    run_dir = Path(args.run_dir)
    save_args(args, run_dir)
    setup_logging(run_dir / "log.txt")
    start_run_records(args, changed)
    return args


def start_run_records(args: Namespace, changed: dict) -> None:
    """status.json "running"; run_info.json (code and machine) for a new run, or, for a
    resumption, the code it resumes with and the arguments it changed."""
    run_dir = Path(args.run_dir)
    if args.resume is None:
        save_run_info(run_dir)
        RunStatus(run_dir).running()
        log.info(f"Run directory: {run_dir}")
        return
    info, _ = collect_run_info()
    changed = {name: {"was": old, "now": new} for name, (old, new) in changed.items()}
    RunStatus(run_dir).running(resumed_from=args.resume, changed_args=changed,
                               code={"git_commit": info["git_commit"], "git_dirty": info["git_dirty"]})
    log.info(f"Resuming {run_dir} from {args.resume}" + (f"; changed: {changed}" if changed else ""))


def merge_resume_args(parser: ArgumentParser, argv: list[str], resume: str) -> tuple[Namespace, dict]:
    """The resumed run's saved args, overridden by the flags given now. Flags that would
    change the model, the data or the optimisation are refused, naming each conflict."""
    checkpoint_path = resolve_checkpoint(resume, "", file_name="last.pth")
    checkpoint = read_checkpoint(checkpoint_path, mmap=True)
    saved = checkpoint.get("args")
    if not isinstance(saved, dict) or "epoch" not in checkpoint:
        raise UserError(f"--resume {resume}: {checkpoint_path} holds no saved args and progress; it was "
                        "not written by train.py, so there is no run to continue.")
    # argparse fills in defaults only for names the namespace lacks: the saved values stay.
    args = parser.parse_args(argv, namespace=Namespace(**saved))
    if checkpoint.get("world_size", 1) != world_size():
        raise UserError(f"--resume {resume}: the run used {checkpoint.get('world_size', 1)} process(es), now "
                        f"{world_size()}; that changes the batches it trains on. Resume with the same "
                        "torchrun --nproc_per_node (and --nnodes), or start a new run with --load_model_path.")
    if checkpoint["epoch"] >= args.epochs:
        raise UserError(f"--resume {resume}: the run already did all {checkpoint['epoch']} epochs; "
                        "pass a larger --epochs to extend it.")
    args.resume, args.run_dir = str(checkpoint_path), str(checkpoint_path.parent)
    changed = {name: (saved.get(name), value) for name, value in vars(args).items()
               if name not in ("resume", "run_dir") and saved.get(name) != value}
    conflicts = [f"--{name} {old} (run) vs {new} (now)" for name, (old, new) in changed.items()
                 if name not in HARMLESS_ON_RESUME]
    if conflicts:
        raise UserError(f"--resume {resume}: these flags would change the run it continues: "
                        f"{'; '.join(conflicts)}. Start a new run instead, or drop them; flags that may "
                        f"change on resume: {', '.join(HARMLESS_ON_RESUME)}.")
    return args, changed


def prepare_test_args(argv: list[str] | None = None) -> Namespace:
    """Parse and check the evaluation flags, fill the model/data flags from the checkpoint,
    create `<run dir>/<checkpoint stem>/<set name>_<save_prefix>/` and save the args there."""
    parser = parse_test_args(ArgumentParser(description="Evaluate a checkpoint; see README.md."))
    args = parser.parse_args(argv)
    try:
        init_distributed()  # under torchrun: join the other processes (no-op otherwise)
        args.load_model_path = str(resolve_checkpoint(args.load_model_path, args.checkpoints_dir))
        inherit_from_checkpoint(args, parse_train_args(ArgumentParser()))
        check_common_args(args)
        check_positive(args, "viz_freq")
    except UserError as error:
        parser.error(str(error))
    checkpoint = Path(args.load_model_path)
    result_dir = None
    if is_main_process():
        name = f"{eval_set_name(args)}_{args.save_prefix}"
        result_dir = create_unique_dir(checkpoint.parent / checkpoint.stem / name)
    args.result_dir = str(broadcast_from_main(result_dir))
    if not is_main_process():
        setup_logging(None)
        return args
    result_dir = Path(args.result_dir)
    save_args(args, result_dir)
    save_command(result_dir, "eval.py", sys.argv[1:] if argv is None else argv)
    setup_logging(result_dir / "log.txt")
    save_run_info(result_dir, extra={"checkpoint": str(checkpoint.resolve()),
                                     "checkpoint_sha256": file_sha256(checkpoint)})
    RunStatus(result_dir).running()
    log.info(f"Evaluating {checkpoint}; results go to {result_dir}")
    return args


def resolve_checkpoint(path: str | None, checkpoints_dir: str, file_name: str = "best.pth") -> Path:
    """A checkpoint file: a .pth as given, a run directory's `file_name`, or, when no path
    is given, `file_name` of the newest run under --checkpoints_dir."""
    if path is None:
        newest = newest_run_dir(checkpoints_dir)
        if newest is None:
            raise UserError(f"No --load_model_path given and no run directory under {checkpoints_dir}/ "
                            "to take the newest from; train first or pass a checkpoint path.")
        path = newest
    path = Path(path)
    if path.is_dir():
        path = path / file_name
    if not path.is_file():
        raise UserError(f"Checkpoint {path} does not exist; give a .pth checkpoint or a "
                        f"run directory that holds {file_name}.")
    return path


def inherit_from_checkpoint(args: Namespace, train_parser: ArgumentParser) -> None:
    """Fill the model/data flags eval.py was not given: the checkpoint's saved args first,
    then the training defaults (for checkpoints made elsewhere, without saved args)."""
    saved = read_checkpoint(args.load_model_path, mmap=True).get("args", {})
    for name in INHERITED_BY_EVAL:
        if getattr(args, name) is None:
            setattr(args, name, saved.get(name, train_parser.get_default(name)))
    args.val_list = args.val_list or demo_list(args.data_type, train=False)


def check_common_args(args: Namespace) -> None:
    """Value checks shared by training and evaluation; raise UserError naming the flag."""
    for name in ("batch_size", "image_size"):
        check_positive(args, name)
    if args.num_workers < 0:
        raise UserError(f"--num_workers {args.num_workers} is negative; use 0 or more.")
    if args.data_type in LIST_TYPES:
        check_list_exists("--val_list", args.val_list)
    if args.load_model_path is not None and not Path(args.load_model_path).exists():
        raise UserError(f"--load_model_path {args.load_model_path} does not exist.")
    check_gpus(args.gpus)


def check_train_args(args: Namespace) -> None:
    """Value checks for training only; raise UserError naming the flag."""
    for name in ("epochs", "print_freq", "save_freq", "log_freq", "accum_steps"):
        check_positive(args, name)
    if args.clip_grad < 0:
        raise UserError(f"--clip_grad {args.clip_grad} is negative; use 0 (off) or a positive norm.")
    if args.save_every_steps < 0:
        raise UserError(f"--save_every_steps {args.save_every_steps} is negative; use 0 (off) or more.")
    if not args.lr > 0:
        raise UserError(f"--lr {args.lr} must be a positive number.")
    for name in ("momentum", "beta"):
        if not 0 <= getattr(args, name) < 1:
            raise UserError(f"--{name} {getattr(args, name)} must be in [0, 1).")
    if args.weight_decay < 0:
        raise UserError(f"--weight_decay {args.weight_decay} is negative; use 0 or more.")
    if args.lr_step_size is not None and args.lr_step_size < 1:
        raise UserError(f"--lr_step_size {args.lr_step_size} must be 1 or more.")
    if args.monitor is not None and not args.monitor.startswith(("train/", "val/")):
        raise UserError(f"--monitor {args.monitor!r} must name a curve, e.g. val/acc or val/loss.")
    if args.data_type in LIST_TYPES:
        check_list_exists("--train_list", args.train_list)
    if args.exp is not None:
        check_experiment_name(args.exp)


def check_positive(args: Namespace, name: str) -> None:
    value = getattr(args, name)
    if value < 1:
        raise UserError(f"--{name} {value} must be 1 or more.")


def check_list_exists(flag: str, path: str) -> None:
    """A list file must exist, except the demo lists, which are generated on first use."""
    if not Path(path).is_file() and Path(path).resolve().parent != DEMO_ROOT.resolve():
        raise UserError(f"{flag} {path} does not exist; give a list file with one "
                        "`<image path> <label>` line per sample.")


def check_gpus(gpus: list[int] | None) -> None:
    """`--gpus` must name GPUs that exist (or be -1 for the CPU)."""
    if gpus is None or gpus == [-1]:
        return
    if launched_by_torchrun():
        raise UserError(f"--gpus {' '.join(map(str, gpus))} is for a single process; under torchrun each "
                        "process uses the GPU of its LOCAL_RANK. Leave --gpus out and choose GPUs with "
                        "CUDA_VISIBLE_DEVICES.")
    available = torch.cuda.device_count()
    if available == 0:
        raise UserError(f"--gpus {' '.join(map(str, gpus))} asks for CUDA, but no CUDA GPU is "
                        "available here; leave --gpus out (or use -1) to run on the CPU.")
    bad = [gpu for gpu in gpus if not 0 <= gpu < available]
    if bad:
        raise UserError(f"--gpus {' '.join(map(str, bad))}: no such GPU; ids 0 to {available - 1} exist.")
