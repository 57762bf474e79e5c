"""Command-line flags of train.py and eval.py, and their checks: parsing and checking, nothing
else. No file is written and no process group started here (utils/run_dir.py makes run
folders; main() joins torchrun's processes).

`parse_train_args(argv)` and `parse_eval_args(argv)` return the checked flags with the
checkpoint they continue from or evaluate, read once. A bad value stops the program with one
message and exit code 2, before anything is written. Besides the flags below, the chosen
model's and data set's own flags come from their constructors' signatures
(utils/signature_flags.py): `python train.py --model_type unet -h` lists unet's.
Pass `argv` as a list to call them from Python (tests); None reads `sys.argv`.
"""

import json
import math
import sys
from argparse import ArgumentParser, BooleanOptionalAction, Namespace
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import torch

from data import data_entry
from data.augment import POLICIES
from data.data_entry import DATASETS, reads_lists
from data.demo_data import DEMO_ROOT, demo_list
from data.unlabeled import INPUT_HINT
from loss import LOSSES, SOFT_TARGET_LOSSES
from model import model_entry
from model.model_entry import MODELS
from utils.distributed import launched_by_torchrun, launched_world_size
from utils.errors import UserError
from utils.optim import OPTIMIZERS, SCHEDULERS, schedule_depends_on_length
from utils.run_dir import check_folder_name, read_run_id
from utils.run_search import is_run_dir, runs_newest_first
from utils.signature_flags import add_signature_flags
from utils.torch_utils import read_checkpoint

# eval.py takes these, and the model's and data set's own flags, from the checkpoint's saved
# args unless given on its command line.
INHERITED_BY_EVAL = ("model_type", "data_type", "val_list", "ignore_index")
# Flags a resumed run may change: they alter neither the model, the data nor the updates.
HARMLESS_ON_RESUME = ("epochs", "num_workers", "in_memory", "print_freq", "log_freq", "save_freq",
                      "save_every_steps", "gpus", "debug", "checkpoints_dir", "patience", "min_delta")
# Flags that say how a run was started, not what it computes: not taken over by --config.
NOT_CONFIG = ("resume", "config")


class Parser(ArgumentParser):
    """argparse that reports an error in one line (and where the help is), without the usage block."""

    def __init__(self, prog: str, description: str | None = None, add_help: bool = True) -> None:
        super().__init__(prog=prog, description=description, add_help=add_help, allow_abbrev=False)
        self.context = ""  # what is being parsed, when not the command line (e.g. "--config x: ")

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.context}{message}\n(`python {self.prog} -h` lists the flags)\n")


@dataclass
class Resume:
    """What --resume continues from: the run's last.pth, read once, and the flags it changes."""

    path: Path
    checkpoint: dict
    changed: dict[str, tuple[object, object]]  # flag -> (the run's value, the value now)

    def record(self) -> dict:
        """The resumption as status.json records it."""
        return {"from": str(self.path),
                "changed_args": {name: {"was": old, "now": new} for name, (old, new) in self.changed.items()}}


def add_common_flags(parser: ArgumentParser) -> None:
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
    group.add_argument("--load_not_strict", action=BooleanOptionalAction, default=False,
                       help="load only the tensors whose names and shapes match the model")
    group.add_argument("--val_list", default=None,
                       help="list file of the validation / evaluation set (default: the demo's, "
                            "data/demo/val.txt, or seg_val.txt for --data_type seg_list)")
    group.add_argument("--ignore_index", type=int, default=255,
                       help="segmentation: mask value that loss and metrics skip (default: %(default)s)")
    group.add_argument("--gpus", type=int, nargs="+", default=None,
                       help="GPU ids to use; several = DataParallel; -1 = CPU (default: GPU 0 if present)")
    group.add_argument("--seed", type=int, default=42,
                       help="seed for python, numpy and torch (default: %(default)s)")
    group.add_argument("--num_workers", type=int, default=None,
                       help="DataLoader worker processes; 0 loads in the main process (default: 2; without a "
                            "GPU, 0 for an in-memory set read a batch at a time, which workers would only slow down)")
    group.add_argument("--batch_size", type=int, default=64,
                       help="samples per batch (per process under torchrun) (default: %(default)s)")
    group.add_argument("--checkpoints_dir", default="checkpoints",
                       help="folder that holds the run directories (default: %(default)s)")
    group.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"],
                       help="mixed precision: autocast to bfloat16 or float16 (fp16 adds loss scaling); "
                            "bf16 suits recent GPUs (default: %(default)s)")
    group.add_argument("--channels_last", action=BooleanOptionalAction, default=False,
                       help="NHWC memory layout for the model and images: faster convolutions on tensor cores")
    group.add_argument("--compile", action=BooleanOptionalAction, default=False,
                       help="torch.compile the model (the first steps are slow while it compiles)")
    group.add_argument("--deterministic", action=BooleanOptionalAction, default=False,
                       help="use only deterministic algorithms: same seed, same numbers (slower)")
    group.add_argument("--debug", action=BooleanOptionalAction, default=False,
                       help="show the full traceback of input errors instead of one message")


def add_train_flags(parser: ArgumentParser) -> None:
    """The training flags, in groups as `-h` shows them."""
    group = parser.add_argument_group("training")
    group.add_argument("--train_list", default=None,
                       help="list file of the training set (default: the demo's, data/demo/train.txt, "
                            "or seg_train.txt for --data_type seg_list)")
    group.add_argument("--epochs", type=int, default=10, help="epochs to train (default: %(default)s)")
    group.add_argument("--lr", type=float, default=3e-3, help="learning rate (default: %(default)s)")
    group.add_argument("--optimizer", default="adamw", choices=OPTIMIZERS, help="optimizer (default: %(default)s)")
    group.add_argument("--momentum", type=float, default=0.9,
                       help="SGD momentum; Adam/AdamW beta1 (default: %(default)s)")
    group.add_argument("--beta", type=float, default=0.999, help="Adam/AdamW beta2 (default: %(default)s)")
    group.add_argument("--weight_decay", type=float, default=1e-4, help="weight decay (default: %(default)s)")
    group.add_argument("--loss", default=None, choices=list(LOSSES),
                       help="loss, a name in loss.py (default: the task's: cross_entropy for classification, "
                            "ce_dice for segmentation)")
    group.add_argument("--label_smoothing", type=float, default=0.0,
                       help="cross entropy's label smoothing, e.g. 0.1 (default: %(default)s)")
    group.add_argument("--accum_steps", type=int, default=1,
                       help="add up the gradients of N batches per optimizer step: an N times larger "
                            "batch in the same memory (default: %(default)s)")
    group.add_argument("--clip_grad", type=float, default=0.0,
                       help="clip the gradient norm to this value before each step; 0 = off (default: %(default)s)")
    group.add_argument("--ema_decay", type=float, default=0.0,
                       help="keep an exponential moving average of the weights with this decay, e.g. 0.999 "
                            "(ramped up over the first steps as min(D, (1 + n) / (10 + n))), "
                            "validated every epoch as val_ema/...; 0 = off (default: %(default)s)")
    add_schedule_flags(parser)
    add_checkpoint_flags(parser)
    add_augment_flags(parser)
    add_debug_flags(parser)


def add_schedule_flags(parser: ArgumentParser) -> None:
    group = parser.add_argument_group("learning-rate schedule (stepped after every optimizer step)")
    group.add_argument("--scheduler", default="cosine", choices=SCHEDULERS,
                       help="after the warmup: cosine down to --min_lr, step, or constant (default: %(default)s)")
    group.add_argument("--warmup_epochs", type=float, default=0.0,
                       help="ramp the learning rate up linearly over this many epochs (fractions allowed) "
                            "(default: %(default)s)")
    group.add_argument("--min_lr", type=float, default=0.0,
                       help="--scheduler cosine: the learning rate it ends at (default: %(default)s)")
    group.add_argument("--lr_step_size", type=int, default=None,
                       help="--scheduler step: epochs between decays (default: a third of --epochs)")
    group.add_argument("--lr_gamma", type=float, default=0.1,
                       help="--scheduler step: factor applied at each decay (default: %(default)s)")


def add_checkpoint_flags(parser: ArgumentParser) -> None:
    group = parser.add_argument_group("checkpoints, stopping and resuming")
    group.add_argument("--monitor", default=None,
                       help="curve that picks best.pth, e.g. val/acc, val/loss or val_ema/acc (default: the task's "
                            "main validation metric: val/acc for classification, val/miou for segmentation)")
    group.add_argument("--monitor_mode", default=None, choices=["max", "min"],
                       help="whether a larger or a smaller --monitor is better (default: min for a loss, else max)")
    group.add_argument("--save_freq", type=int, default=5,
                       help="also keep epoch_<N>.pth every N epochs (default: %(default)s)")
    group.add_argument("--save_top_k", type=int, default=0,
                       help="also keep the K best epochs by --monitor as top_epoch_<N>.pth (default: %(default)s)")
    group.add_argument("--save_every_steps", type=int, default=0,
                       help="also save last.pth every N steps inside an epoch, so a long epoch can be "
                            "resumed mid-way (default: 0, only at the end of each epoch)")
    group.add_argument("--patience", type=int, default=0,
                       help="stop early after N epochs without --monitor improving; 0 = never (default: %(default)s)")
    group.add_argument("--min_delta", type=float, default=0.0,
                       help="the least change of --monitor that counts as an improvement (default: %(default)s)")
    group.add_argument("--resume", default=None,
                       help="continue a run: its directory (or its last.pth); flags you add may only change "
                            "harmless settings, e.g. --epochs")
    group.add_argument("--config", default=None,
                       help="take every flag from a previous run (its directory or args.json); flags "
                            "given on the command line win")
    group.add_argument("--exp", default=None,
                       help="experiment name: the run directory goes into <checkpoints_dir>/<exp>/, so "
                            "related runs stay together (default: directly in <checkpoints_dir>/)")
    group.add_argument("--print_freq", type=int, default=20,
                       help="show the running loss on the progress bar every N steps (default: %(default)s)")
    group.add_argument("--log_freq", type=int, default=20,
                       help="write per-step TensorBoard curves (loss, lr) every N steps (default: %(default)s)")


def add_augment_flags(parser: ArgumentParser) -> None:
    group = parser.add_argument_group("augmentation (torchvision.transforms.v2; all off by default)")
    group.add_argument("--crop_padding", type=int, default=0,
                       help="random shifts: pad by N pixels, then crop back (default: %(default)s)")
    group.add_argument("--hflip", type=float, default=0.0,
                       help="probability of a horizontal flip; wrong for digits and text (default: %(default)s)")
    group.add_argument("--vflip", type=float, default=0.0,
                       help="probability of a vertical flip (default: %(default)s)")
    group.add_argument("--aug_policy", default="none", choices=list(POLICIES),
                       help="a learned or random augmentation policy (default: %(default)s)")
    group.add_argument("--random_erasing", type=float, default=0.0,
                       help="probability of erasing a random rectangle (default: %(default)s)")
    group.add_argument("--mixup", type=float, default=0.0,
                       help="MixUp's Beta(alpha, alpha), e.g. 0.2; 0 = off (default: %(default)s)")
    group.add_argument("--cutmix", type=float, default=0.0,
                       help="CutMix's Beta(alpha, alpha), e.g. 1.0; 0 = off (default: %(default)s)")


def add_debug_flags(parser: ArgumentParser) -> None:
    group = parser.add_argument_group("checking a new model or data set quickly")
    group.add_argument("--limit_train_batches", type=int, default=0,
                       help="train on only the first N batches of each epoch; 0 = all (default: %(default)s)")
    group.add_argument("--limit_val_batches", type=int, default=0,
                       help="validate on only the first N batches; 0 = all (default: %(default)s)")
    group.add_argument("--overfit_batches", type=int, default=0,
                       help="train and validate on the same first N training batches each epoch, without "
                            "augmentation: the loss must fall towards zero (default: %(default)s)")
    group.add_argument("--fast_dev_run", action=BooleanOptionalAction, default=False,
                       help="one training and one validation batch, then stop; nothing is kept")
    group.add_argument("--folds", type=int, default=0,
                       help="k-fold cross-validation: split --train_list into K folds (default: 0, off)")
    group.add_argument("--fold", type=int, default=0,
                       help="with --folds: validate on fold N (0 to K-1), train on the others (default: %(default)s)")


def add_eval_flags(parser: ArgumentParser) -> None:
    group = parser.add_argument_group("evaluation")
    group.add_argument("--save_viz", action=BooleanOptionalAction, default=False,
                       help="also write PNG pictures of predictions into the result folder")
    group.add_argument("--viz_freq", type=int, default=10,
                       help="with --save_viz, draw every N-th batch (default: %(default)s)")
    group.add_argument("--output_dir", default=None,
                       help="write the result folder here instead of beside the checkpoint (e.g. when the "
                            "checkpoint is on read-only storage)")
    group.add_argument("--ema", action=BooleanOptionalAction, default=False,
                       help="evaluate the checkpoint's averaged weights (from --ema_decay) instead of its own")


def add_component_flags(parser: ArgumentParser, model_type: str, data_type: str) -> None:
    """The chosen model's and data set's own flags, from their constructors' signatures."""
    taken = {action.dest: group.title for group in parser._action_groups for action in group._group_actions}
    add_signature_flags(parser, f"model {model_type}", MODELS[model_type], model_entry.SUPPLIED, taken)
    taken = {action.dest: group.title for group in parser._action_groups for action in group._group_actions}
    add_signature_flags(parser, f"data set {data_type}", DATASETS[data_type], data_entry.SUPPLIED, taken)


def component_flag_names(parser: ArgumentParser) -> list[str]:
    """The flags add_component_flags added (the groups named `model ...` and `data set ...`)."""
    return [action.dest for group in parser._action_groups if group.title.startswith(("model ", "data set "))
            for action in group._group_actions]


def train_parser(model_type: str = "base", data_type: str = "list") -> Parser:
    parser = Parser("train.py", "Train a model (see README.md). Model and data set flags depend on "
                    "--model_type and --data_type: `python train.py --model_type unet -h` lists unet's.")
    add_common_flags(parser)
    add_train_flags(parser)
    add_component_flags(parser, model_type, data_type)
    return parser


def eval_parser(model_type: str = "base", data_type: str = "list") -> Parser:
    parser = Parser("eval.py", "Evaluate a checkpoint (see README.md). Model and data flags default to "
                    "the checkpoint's.")
    add_common_flags(parser)
    parser.set_defaults(save_prefix="eval")
    add_eval_flags(parser)
    add_component_flags(parser, model_type, data_type)
    return parser


def pre_parse(prog: str, argv: list[str], **defaults: object) -> Namespace:
    """The few flags that decide which other flags exist (and their defaults): read first."""
    parser = Parser(prog, add_help=False)
    for name, default in defaults.items():
        choices = {"model_type": list(MODELS), "data_type": list(DATASETS)}.get(name)
        parser.add_argument(f"--{name}", default=default, choices=choices)
    return parser.parse_known_args(argv)[0]


def parse_train_args(argv: list[str] | None = None) -> tuple[Namespace, Resume | None]:
    """The checked training flags, and what --resume continues from (None for a new run)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    first = pre_parse("train.py", argv, model_type=None, data_type=None, resume=None, config=None)
    try:
        resume, saved = None, {}
        if first.resume is not None:
            path = resume_checkpoint_path(first.resume)
            resume = Resume(path, read_checkpoint(path, mmap=True), {})
            saved = saved_run_args(resume.checkpoint, path)
        elif first.config is not None:
            saved = read_config(first.config)
        parser = train_parser(*component_names(first, saved))
    except UserError as error:
        Parser("train.py").error(str(error))
    if resume is not None:
        # A flag added to the template after the run started (e.g. a new model parameter) takes
        # its default, which by design keeps the old behaviour: it is no change of the run.
        saved = {action.dest: action.default for action in parser._actions if action.option_strings
                 and action.dest not in saved and action.dest != "help"} | saved
        # argparse fills in defaults only for names the namespace lacks: the saved values stay.
        args = parser.parse_args(argv, namespace=Namespace(**saved))
    else:
        args = parser.parse_args(config_argv(parser, saved, first.config) + argv)
    try:
        finish_train_args(args)
        if resume is not None:
            resume.changed = check_resume(args, saved, resume.checkpoint)
    except UserError as error:
        parser.error(str(error))
    return args, resume


def finish_train_args(args: Namespace) -> None:
    """Defaults that depend on other flags, then every check."""
    args.train_list = args.train_list or demo_list(args.data_type, train=True)
    args.val_list = args.val_list or demo_list(args.data_type, train=False)
    check_common_args(args)
    check_train_args(args)
    if args.load_model_path is not None:
        args.load_model_path = str(resolve_checkpoint(args.load_model_path, args.checkpoints_dir))
    if args.fast_dev_run:  # one batch of each, one epoch; the run directory is not kept
        args.epochs, args.limit_train_batches, args.limit_val_batches = 1, 1, 1


def component_names(first: Namespace, saved: dict) -> tuple[str, str]:
    """--model_type and --data_type: given now, else the run's or config's, else the defaults."""
    model_type = first.model_type or saved.get("model_type", "base")
    data_type = first.data_type or saved.get("data_type", "list")
    if model_type not in MODELS:
        raise UserError(f"The saved --model_type {model_type!r} is not in MODELS (model/model_entry.py); "
                        f"valid names: {', '.join(MODELS)}.")
    if data_type not in DATASETS:
        raise UserError(f"The saved --data_type {data_type!r} is not in DATASETS (data/data_entry.py); "
                        f"valid names: {', '.join(DATASETS)}.")
    return model_type, data_type


def read_config(config: str) -> dict:
    """--config: a run directory's args.json, or an args.json file."""
    path = Path(config)
    path = path / "args.json" if path.is_dir() else path
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--config {config}: {path} does not exist; give a run directory or its args.json.") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"--config {config}: {path} is not readable JSON ({error}).") from None
    if not isinstance(values, dict):
        raise UserError(f"--config {config}: {path} holds no JSON object of flags.")
    return {name: value for name, value in values.items() if name not in NOT_CONFIG}


def config_argv(parser: Parser, config: dict, source: str | None) -> list[str]:
    """The --config values as command-line words, checked by the same parser as typed flags;
    the command line comes after them, so it wins. Unknown keys are an error naming them."""
    if not config:
        return []
    actions = {action.dest: action for action in parser._actions if action.option_strings}
    unknown = sorted(set(config) - set(actions))
    if unknown:
        parser.error(f"--config {source}: unknown flag(s) {', '.join(unknown)}; valid flags: "
                     f"{', '.join(sorted(set(actions) - {'help'}))}.")
    words = []
    for name, value in config.items():
        action = actions[name]
        if value is None:  # the flag's own default (e.g. --in_memory's: by the set's size)
            continue
        if isinstance(action, BooleanOptionalAction):
            words.append(f"--{name}" if value else f"--no-{name}")
        else:
            values = value if isinstance(value, list) else [value]
            words += [f"--{name}", *map(str, values)]
    parser.context = f"--config {source}: "  # a bad value in the file is reported as coming from it
    parser.parse_args(words)
    parser.context = ""
    return words


def resume_checkpoint_path(resume: str) -> Path:
    """--resume takes a run directory or its own last.pth: never another checkpoint (it would
    turn its folder into a run, or retrain a finished run's later epochs over its files)."""
    path = Path(resume)
    folder = path if path.is_dir() else path.parent
    if path.is_file() and path.name != "last.pth":
        raise UserError(f"--resume {resume}: resume takes a run directory (or its last.pth), not {path.name}. "
                        f"To start a new run from those weights: --load_model_path {resume}.")
    if not path.exists():
        raise UserError(f"--resume {resume} does not exist; give a run directory.")
    if not is_run_dir(folder):
        raise UserError(f"--resume {resume}: {folder} is not a run directory (it holds no args.json). To start "
                        f"a new run from a checkpoint's weights, use --load_model_path instead.")
    if not (folder / "last.pth").is_file():
        raise UserError(f"--resume {resume}: {folder} has no last.pth yet (it stopped before its first save); "
                        "start it again instead.")
    return folder / "last.pth"


def saved_run_args(checkpoint: dict, path: Path) -> dict:
    """The flags a run was started with, from its last.pth, once it is sure the file is that
    run's own (not one copied in from another run)."""
    saved = checkpoint.get("args")
    if not isinstance(saved, dict) or "epoch" not in checkpoint:
        raise UserError(f"--resume: {path} holds no saved args and progress; it was not written by train.py, "
                        "so there is no run to continue.")
    folder_id, checkpoint_id = read_run_id(path.parent), checkpoint.get("run_id")
    if folder_id is None or folder_id != checkpoint_id:
        raise UserError(f"--resume: {path} does not belong to the run in {path.parent} (its run_id is "
                        f"{checkpoint_id}, the folder's run_info.json says {folder_id}); it was copied or the "
                        "folder's records are gone. Resume the run it came from, or start a new run from its "
                        f"weights with --load_model_path {path}.")
    return saved


def check_resume(args: Namespace, saved: dict, checkpoint: dict) -> dict[str, tuple[object, object]]:
    """The flags a resumption changes; refused when they would change the run it continues."""
    resume, processes = args.resume, launched_world_size()
    if checkpoint.get("world_size", 1) != processes:
        raise UserError(f"--resume {resume}: the run used {checkpoint.get('world_size', 1)} process(es), now "
                        f"{processes}; that changes the batches it trains on. Resume with the same "
                        "torchrun --nproc_per_node (and --nnodes), or start a new run with --load_model_path.")
    changed = {name: (saved.get(name), value) for name, value in vars(args).items()
               if name not in NOT_CONFIG and saved.get(name) != value}
    conflicts = [f"--{name} {old} (run) vs {new} (now)" for name, (old, new) in changed.items()
                 if name not in HARMLESS_ON_RESUME]
    if conflicts:
        raise UserError(f"--resume {resume}: these flags would change the run it continues: "
                        f"{'; '.join(conflicts)}. Start a new run instead, or drop them; flags that may "
                        f"change on resume: {', '.join(HARMLESS_ON_RESUME)}.")
    if checkpoint["epoch"] >= args.epochs:
        raise UserError(f"--resume {resume}: the run already did all {checkpoint['epoch']} epochs; "
                        "pass a larger --epochs to extend it.")
    if "epochs" in changed and schedule_depends_on_length(args.scheduler, args.lr_step_size):
        raise UserError(f"--resume {resume} --epochs {args.epochs}: the run's --scheduler {args.scheduler} was planned "
                        f"over its {saved['epochs']} epochs (a cosine ends at --min_lr), so extending it would train "
                        "on at the end of the schedule. Continue with a new run from its weights instead: "
                        f"--load_model_path {last_checkpoint(resume).resolve()} --epochs <more> (a new schedule).")
    return changed


def last_checkpoint(resume: str) -> Path:
    """The last.pth that --resume names (a run directory, or the file itself)."""
    path = Path(resume)
    return path if path.is_file() else path / "last.pth"


def parse_eval_args(argv: list[str] | None = None) -> tuple[Namespace, dict]:
    """The checked evaluation flags (model and data flags default to the checkpoint's saved
    ones), and the checkpoint, read once."""
    argv = sys.argv[1:] if argv is None else list(argv)
    first = pre_parse("eval.py", argv, load_model_path=None, checkpoints_dir="checkpoints", model_type=None,
                      data_type=None)
    if {"-h", "--help"} & set(argv):  # help needs no checkpoint
        eval_parser(*component_names(first, {})).parse_args(argv)
    try:
        path = eval_checkpoint_path(first)
        checkpoint = read_checkpoint(path, mmap=True)
        saved = checkpoint.get("args") if isinstance(checkpoint.get("args"), dict) else {}
        parser = eval_parser(*component_names(first, saved))
    except UserError as error:
        Parser("eval.py").error(str(error))
    inherited = (*INHERITED_BY_EVAL, *component_flag_names(parser))
    parser.set_defaults(**{name: saved[name] for name in inherited if name in saved})
    args = parser.parse_args(argv)
    try:
        args.load_model_path = str(path)
        args.val_list = args.val_list or demo_list(args.data_type, train=False)
        check_common_args(args)
        check_positive(args, "viz_freq")
        if args.ema and not isinstance(checkpoint.get("ema"), dict):
            raise UserError(f"--ema: {path} holds no averaged weights; train with --ema_decay to have them.")
    except UserError as error:
        parser.error(str(error))
    return args, checkpoint


def predict_parser(model_type: str = "base", data_type: str = "list") -> Parser:
    parser = Parser("predict.py", "Predict on pictures without labels (see docs/predict.md). Model flags "
                    "default to the checkpoint's.")
    add_common_flags(parser)
    parser.set_defaults(save_prefix="predict")
    group = parser.add_argument_group("prediction")
    group.add_argument("--input", required=True,
                       help="a folder of pictures (searched recursively), a list file of image paths (one a "
                            "line) or one picture")
    group.add_argument("--top_k", type=int, default=5,
                       help="classification: the K best classes in columns top1..topK (at most the number "
                            "of classes) (default: %(default)s)")
    group.add_argument("--output_dir", default=None,
                       help="write the result folder here instead of beside the checkpoint")
    group.add_argument("--ema", action=BooleanOptionalAction, default=False,
                       help="predict with the checkpoint's averaged weights (from --ema_decay) instead of its own")
    add_component_flags(parser, model_type, data_type)
    return parser


def parse_predict_args(argv: list[str] | None = None) -> tuple[Namespace, dict]:
    """The checked flags of predict.py (model and data flags default to the checkpoint's, as in
    eval.py), and the checkpoint, read once."""
    argv = sys.argv[1:] if argv is None else list(argv)
    first = pre_parse("predict.py", argv, load_model_path=None, checkpoints_dir="checkpoints", model_type=None,
                      data_type=None)
    if {"-h", "--help"} & set(argv):  # help needs no checkpoint
        predict_parser(*component_names(first, {})).parse_args(argv)
    try:
        if launched_by_torchrun():
            raise UserError(f"predict.py runs as one process, but torchrun started {launched_world_size()}; "
                            "run it with python (it uses one GPU, chosen by --gpus).")
        path = eval_checkpoint_path(first)
        checkpoint = read_checkpoint(path, mmap=True)
        saved = checkpoint.get("args") if isinstance(checkpoint.get("args"), dict) else {}
        parser = predict_parser(*component_names(first, saved))
    except UserError as error:
        Parser("predict.py").error(str(error))
    inherited = (*INHERITED_BY_EVAL, *component_flag_names(parser))
    parser.set_defaults(**{name: saved[name] for name in inherited if name in saved})
    args = parser.parse_args(argv)
    try:
        args.load_model_path = str(path)
        check_predict_args(args, checkpoint)
    except UserError as error:
        parser.error(str(error))
    return args, checkpoint


def check_predict_args(args: Namespace, checkpoint: dict) -> None:
    """Value checks for predict.py. Not check_common_args: the training lists (--val_list)
    play no part, and may be gone by the time a model is used."""
    for name in ("batch_size", "top_k"):
        check_positive(args, name)
    if args.num_workers is not None and args.num_workers < 0:
        raise UserError(f"--num_workers {args.num_workers} is negative; use 0 or more.")
    if not Path(args.input).exists():
        raise UserError(f"--input {args.input} does not exist; {INPUT_HINT}.")
    check_folder_name("--save_prefix", args.save_prefix)
    check_gpus(args.gpus)
    if not isinstance(checkpoint.get("model_kwargs"), dict) or checkpoint.get("task") is None:
        raise UserError(f"{args.load_model_path} does not say which model, task and classes it holds (no "
                        "model_kwargs and task): predict.py needs a checkpoint written by train.py.")
    if args.ema and not isinstance(checkpoint.get("ema"), dict):
        raise UserError(f"--ema: {args.load_model_path} holds no averaged weights; train with --ema_decay "
                        "to have them.")


def eval_checkpoint_path(first: Namespace) -> Path:
    """--load_model_path as a checkpoint file; without it, best.pth of the newest run whose
    --model_type and --data_type agree with the ones given now."""
    if first.load_model_path is not None:
        return resolve_checkpoint(first.load_model_path, first.checkpoints_dir)
    wanted = {name: value for name, value in (("model_type", first.model_type), ("data_type", first.data_type))
              if value is not None}
    return resolve_checkpoint(newest_matching_run(first.checkpoints_dir, wanted), first.checkpoints_dir)


def newest_matching_run(checkpoints_dir: str, wanted: dict[str, str]) -> str:
    """The newest run under `checkpoints_dir` trained with the `wanted` flag values (by the
    time of its args.json, which only training writes)."""
    runs = runs_newest_first(checkpoints_dir)
    if not runs:
        raise UserError(f"No --load_model_path given and no run directory under {checkpoints_dir}/ "
                        "to take the newest from; train first or pass a checkpoint path.")
    for run in runs:
        try:
            saved = json.loads((run / "args.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(saved, dict) and all(saved.get(name) == value for name, value in wanted.items()):
            return str(run)
    given = " ".join(f"--{name} {value}" for name, value in wanted.items())
    raise UserError(f"No --load_model_path given, and no run under {checkpoints_dir}/ was trained with {given} "
                    f"(the newest, {runs[0]}, was not); pass --load_model_path.")


def resolve_checkpoint(path: str, checkpoints_dir: str, file_name: str = "best.pth") -> Path:
    """A checkpoint file: a .pth as given, or a run directory's `file_name`."""
    path = Path(path)
    if path.is_dir():
        path = path / file_name
    if not path.is_file():
        raise UserError(f"Checkpoint {path} does not exist; give a .pth checkpoint or a "
                        f"run directory that holds {file_name}.")
    return path


def check_common_args(args: Namespace) -> None:
    """Value checks shared by training and evaluation; raise UserError naming the flag."""
    check_positive(args, "batch_size")
    if args.num_workers is not None and args.num_workers < 0:
        raise UserError(f"--num_workers {args.num_workers} is negative; use 0 or more.")
    if reads_lists(args.data_type):
        check_list_exists("--val_list", args.val_list)
    if args.load_model_path is not None and not Path(args.load_model_path).exists():
        raise UserError(f"--load_model_path {args.load_model_path} does not exist.")
    check_folder_name("--save_prefix", args.save_prefix)
    check_gpus(args.gpus)


def check_train_args(args: Namespace) -> None:
    """Value checks for training only; raise UserError naming the flag."""
    for name in ("epochs", "print_freq", "save_freq", "log_freq", "accum_steps"):
        check_positive(args, name)
    for name in ("clip_grad", "save_every_steps", "weight_decay", "warmup_epochs", "min_lr", "save_top_k", "patience",
                 "min_delta", "crop_padding", "mixup", "cutmix", "limit_train_batches", "limit_val_batches",
                 "overfit_batches"):
        if not getattr(args, name) >= 0:
            raise UserError(f"--{name} {getattr(args, name)} must be 0 or more.")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        raise UserError(f"--lr {args.lr} must be a positive number.")
    for name in ("momentum", "beta", "label_smoothing", "ema_decay"):
        if not 0 <= getattr(args, name) < 1:
            raise UserError(f"--{name} {getattr(args, name)} must be in [0, 1).")
    for name in ("hflip", "vflip", "random_erasing"):
        if not 0 <= getattr(args, name) <= 1:
            raise UserError(f"--{name} {getattr(args, name)} is a probability: it must be in [0, 1].")
    check_schedule(args)
    if (args.mixup or args.cutmix) and args.loss not in (None, *SOFT_TARGET_LOSSES):  # None: classification's CE
        raise UserError(f"--mixup / --cutmix make soft targets, which --loss {args.loss} does not take; use "
                        f"--loss {' or '.join(SOFT_TARGET_LOSSES)}.")
    if args.monitor is not None and not args.monitor.startswith(("train/", "val/", "val_ema/")):
        raise UserError(f"--monitor {args.monitor!r} must name a curve, e.g. val/acc, val/loss or val_ema/acc.")
    if args.monitor is not None and args.monitor.startswith("val_ema/") and not args.ema_decay:
        raise UserError(f"--monitor {args.monitor} needs the averaged weights: add --ema_decay, e.g. 0.999.")
    if args.folds and (args.folds < 2 or not 0 <= args.fold < args.folds):
        raise UserError(f"--folds {args.folds} --fold {args.fold}: use --folds 2 or more and --fold from 0 to "
                        f"--folds - 1.")
    if reads_lists(args.data_type):
        check_list_exists("--train_list", args.train_list)
    if args.exp is not None:
        check_folder_name("--exp", args.exp)


def check_schedule(args: Namespace) -> None:
    if args.lr_step_size is not None and args.lr_step_size < 1:
        raise UserError(f"--lr_step_size {args.lr_step_size} must be 1 or more.")
    if args.min_lr and args.scheduler != "cosine":
        raise UserError(f"--min_lr {args.min_lr} applies to --scheduler cosine only (not {args.scheduler}).")
    if args.min_lr >= args.lr:
        raise UserError(f"--min_lr {args.min_lr} must be below --lr {args.lr}.")


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

