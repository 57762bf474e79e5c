"""Command-line flags of train.py, eval.py and predict.py, and their checks: parsing and
checking, nothing else (no file is written, no process group started).

`parse_train_args(argv)`, `parse_eval_args(argv)` and `parse_predict_args(argv)` (argv None:
`sys.argv`) return the checked flags and the checkpoint they continue from or evaluate, read
once; a bad value is one message and exit code 2, before anything is written. Each flag's
check sits beside it: its `type=`, and `flag(..., on_resume=, eval_takes=, config=)` for what
it means to --resume, eval.py and --config. The chosen model's, data set's, optimizer's and
schedule's own flags, and every loss's, come from their constructors' signatures
(utils/signature_flags.py): `python train.py --model_type unet -h` lists unet's.
"""

import sys
from argparse import ArgumentParser, BooleanOptionalAction, Namespace
from pathlib import Path

from data import data_entry
from data.augment import POLICIES
from data.data_entry import DATASETS, check_list_exists, reads_lists
from data.demo_data import demo_list
from data.unlabeled import INPUT_HINT
from loss import LOSSES
from loss import SUPPLIED as LOSS_SUPPLIED
from model import model_entry
from model.model_entry import MODELS
from tasks import check_loss_flags
from tasks.tta import TTA_FLIPS
from utils.distributed import launched_by_torchrun, launched_world_size
from utils.errors import UserError
from utils.flags import (
    AMOUNT,
    COUNT,
    FRACTION,
    PROBABILITY,
    Parser,
    changed_flags,
    flag,
    flags_as_argv,
    number,
    positive,
    read_flags_file,
)
from utils.optim import (
    OPTIMIZER_SUPPLIED,
    OPTIMIZERS,
    SCHEDULER_SUPPLIED,
    SCHEDULERS,
    check_optimizer_flags,
    planned_over_epochs,
)
from utils.run_dir import Resume, check_folder_name
from utils.run_search import newest_matching_run, resolve_checkpoint, resume_checkpoint_path, saved_run_args
from utils.signature_flags import add_shared_flags, add_signature_flags, builder_kwargs, flag_parameters
from utils.torch_utils import check_gpus, read_checkpoint

# The flags that choose a component: its registry, what the code hands its builder itself,
# and the default; the chosen one's typed parameters are flags of their own.
COMPONENTS = {
    "model_type": ("model", MODELS, model_entry.SUPPLIED, "base"),
    "data_type": ("data set", DATASETS, data_entry.SUPPLIED, "list"),
    "optimizer": ("optimizer", OPTIMIZERS, OPTIMIZER_SUPPLIED, "adamw"),
    "scheduler": ("scheduler", SCHEDULERS, SCHEDULER_SUPPLIED, "cosine"),
}


def component_of(unknown: str) -> str:
    """For an unknown flag: which component's flag it is (`--min_lr` is --scheduler cosine's)."""
    name = unknown.removeprefix("--").removeprefix("no-")
    owners = [f"--{choice} {entry}" for choice, (_, registry, supplied, _) in COMPONENTS.items()
              for entry, builder in registry.items() if name in {p.name for p in flag_parameters(builder, supplied)}]
    return f"{unknown} is a flag of {' and of '.join(owners)}: add that to the command" if owners else ""


def add_common_flags(parser: ArgumentParser) -> None:
    """Flags shared by training, evaluation and prediction."""
    g = parser.add_argument_group("common")
    flag(g, "--model_type", default="base", choices=list(MODELS), eval_takes=True,
         help="model to build, a name in model/model_entry.py")
    flag(g, "--data_type", default="list", choices=list(DATASETS), eval_takes=True,
         help="data set, a name in data/data_entry.py")
    flag(g, "--save_prefix", default="exp", help="a word naming the run in its folder name")
    flag(g, "--load_model_path", default=None, help="checkpoint (.pth) or run directory to load weights from")
    flag(g, "--load_not_strict", action=BooleanOptionalAction, default=False,
         help="load only the tensors whose names and shapes match the model")
    flag(g, "--val_list", default=None, eval_takes=True, help="list file of the validation / evaluation set "
         "(default: the demo's, data/demo/val.txt, or seg_val.txt for --data_type seg_list)")
    flag(g, "--ignore_index", type=int, default=255, eval_takes=True,
         help="segmentation: mask value that loss and metrics skip")
    flag(g, "--gpus", type=int, nargs="+", default=None, on_resume="allowed",
         help="GPU ids to use; several = DataParallel; -1 = CPU (default: GPU 0 if present)")
    flag(g, "--seed", type=int, default=42, help="seed for python, numpy and torch")
    flag(g, "--num_workers", type=AMOUNT, default=None, on_resume="allowed", help="DataLoader worker processes; 0 "
         "loads in the main process (default: 2; without a GPU, 0 for an in-memory set read a batch at a time)")
    flag(g, "--batch_size", type=COUNT, default=64, help="samples per batch (per process under torchrun)")
    flag(g, "--checkpoints_dir", default="checkpoints", on_resume="allowed",
         help="folder that holds the run directories")
    flag(g, "--amp", default="none", choices=["none", "bf16", "fp16"], help="mixed precision: autocast to bfloat16 "
         "or float16 (fp16 adds loss scaling); bf16 suits recent GPUs")
    flag(g, "--channels_last", action=BooleanOptionalAction, default=False,
         help="NHWC memory layout for the model and images: faster convolutions on tensor cores")
    flag(g, "--compile", action=BooleanOptionalAction, default=False,
         help="torch.compile the model (the first steps are slow while it compiles)")
    flag(g, "--deterministic", action=BooleanOptionalAction, default=False,
         help="use only deterministic algorithms: same seed, same numbers (slower)")
    flag(g, "--debug", action=BooleanOptionalAction, default=False, on_resume="allowed",
         help="show the full traceback of input errors instead of one message")


def add_train_flags(parser: ArgumentParser) -> None:
    """The training flags, in groups as `-h` shows them."""
    g = parser.add_argument_group("training")
    flag(g, "--train_list", default=None, help="list file of the training set (default: the demo's, "
         "data/demo/train.txt, or seg_train.txt for --data_type seg_list)")
    flag(g, "--epochs", type=COUNT, default=10, on_resume="allowed", help="epochs to train")
    flag(g, "--lr", type=positive, default=3e-3, help="learning rate")
    flag(g, "--optimizer", default="adamw", choices=list(OPTIMIZERS),
         help="optimizer, a name in utils/optim.py; `--optimizer sgd -h` lists its flags")
    flag(g, "--weight_decay", type=number(float, 0), default=1e-4, help="weight decay")
    flag(g, "--accum_steps", type=COUNT, default=1, help="add up the gradients of N batches per optimizer step: an "
         "N times larger batch in the same memory")
    flag(g, "--clip_grad", type=number(float, 0), default=0.0,
         help="clip the gradient norm to this value before each step; 0 = off")
    flag(g, "--ema_decay", type=FRACTION, default=0.0, help="keep an exponential moving average of the weights with "
         "this decay, e.g. 0.999 (ramped up as min(D, (1 + n) / (10 + n))), validated as val_ema/...; 0 = off")
    g = parser.add_argument_group("learning-rate schedule (stepped after every optimizer step)")
    flag(g, "--scheduler", default="cosine", choices=list(SCHEDULERS), help="after the warmup: cosine down to "
         "--min_lr, step, or none (constant); `--scheduler step -h` lists its flags")
    flag(g, "--warmup_epochs", type=number(float, 0), default=0.0,
         help="ramp the learning rate up linearly over this many epochs (fractions allowed)")
    g = parser.add_argument_group("checkpoints, stopping and resuming")
    flag(g, "--monitor", default=None, help="curve that picks best.pth, e.g. val/acc, val/loss or val_ema/acc "
         "(default: the task's main validation metric: val/acc for classification, val/miou for segmentation)")
    flag(g, "--monitor_mode", default=None, choices=["max", "min"],
         help="whether a larger or a smaller --monitor is better (default: min for a loss, else max)")
    flag(g, "--save_freq", type=COUNT, default=5, on_resume="allowed", help="also keep epoch_<N>.pth every N epochs")
    flag(g, "--save_top_k", type=AMOUNT, default=0, help="also keep the K best epochs by --monitor as "
         "top_epoch_<N>.pth")
    flag(g, "--save_every_steps", type=AMOUNT, default=0, on_resume="allowed", help="also save last.pth every N "
         "steps inside an epoch, so a long epoch can be resumed mid-way (default: 0, only at the end of each epoch)")
    flag(g, "--patience", type=AMOUNT, default=0, on_resume="allowed",
         help="stop early after N epochs without --monitor improving; 0 = never")
    flag(g, "--min_delta", type=number(float, 0), default=0.0, on_resume="allowed",
         help="the least change of --monitor that counts as an improvement")
    flag(g, "--resume", default=None, config=False, help="continue a run: its directory (or its last.pth); flags "
         "you add may only change harmless settings, e.g. --epochs")
    flag(g, "--config", default=None, config=False, help="take every flag from a previous run (its directory or "
         "args.json); flags given on the command line win")
    flag(g, "--exp", default=None, help="experiment name: the run directory goes into <checkpoints_dir>/<exp>/, so "
         "related runs stay together (default: directly in <checkpoints_dir>/)")
    flag(g, "--print_freq", type=COUNT, default=20, on_resume="allowed",
         help="show the running loss on the progress bar every N steps")
    flag(g, "--log_freq", type=COUNT, default=20, on_resume="allowed",
         help="write per-step TensorBoard curves (loss, lr) every N steps")
    flag(g, "--profile", type=AMOUNT, default=0, on_resume="allowed", config=False, help="torch.profiler over N "
         "training steps after 2 of warm-up, into <run dir>/profile/ (a trace and the top operators); 0 = off")
    g = parser.add_argument_group("augmentation (torchvision.transforms.v2; all off by default)")
    flag(g, "--crop_padding", type=AMOUNT, default=0, help="random shifts: pad by N pixels, then crop back")
    flag(g, "--hflip", type=PROBABILITY, default=0.0, help="probability of a horizontal flip; wrong for digits, text")
    flag(g, "--vflip", type=PROBABILITY, default=0.0, help="probability of a vertical flip")
    flag(g, "--aug_policy", default="none", choices=list(POLICIES), help="a learned or random augmentation policy")
    flag(g, "--random_erasing", type=PROBABILITY, default=0.0, help="probability of erasing a random rectangle")
    flag(g, "--mixup", type=number(float, 0), default=0.0, help="MixUp's Beta(alpha, alpha), e.g. 0.2; 0 = off")
    flag(g, "--cutmix", type=number(float, 0), default=0.0, help="CutMix's Beta(alpha, alpha), e.g. 1.0; 0 = off")
    g = parser.add_argument_group("checking a new model or data set quickly")
    flag(g, "--limit_train_batches", type=AMOUNT, default=0,
         help="train on only the first N batches of each epoch; 0 = all")
    flag(g, "--limit_val_batches", type=AMOUNT, default=0, help="validate on only the first N batches; 0 = all")
    flag(g, "--overfit_batches", type=AMOUNT, default=0, help="train and validate on the same first N training "
         "batches each epoch, without augmentation: the loss must fall towards zero")
    flag(g, "--fast_dev_run", action=BooleanOptionalAction, default=False,
         help="one training and one validation batch, then stop; nothing is kept")
    flag(g, "--folds", type=AMOUNT, default=0, help="k-fold cross-validation: split --train_list into K folds "
         "(default: 0, off)")
    flag(g, "--fold", type=AMOUNT, default=0, help="with --folds: validate on fold N (0 to K-1), train on the others")


def add_result_flags(parser: ArgumentParser, prog: str) -> None:
    """What eval.py and predict.py share: where the results go, which weights."""
    g = parser.add_argument_group("evaluation" if prog == "eval.py" else "prediction")
    if prog == "eval.py":
        flag(g, "--save_viz", action=BooleanOptionalAction, default=False,
             help="also write PNG pictures of predictions into the result folder")
        flag(g, "--viz_freq", type=COUNT, default=10, help="with --save_viz, draw every N-th batch")
    else:
        flag(g, "--input", required=True, help="a folder of pictures (searched recursively), a list file of image "
                                               "paths (one a line) or one picture")
        flag(g, "--top_k", type=COUNT, default=5, help="classification: the K best classes in columns top1..topK "
                                                       "(at most the number of classes)")
    flag(g, "--output_dir", default=None, help="write the result folder here instead of beside the checkpoint "
                                               "(e.g. when the checkpoint is on read-only storage)")
    flag(g, "--ema", action=BooleanOptionalAction, default=False,
         help="use the checkpoint's averaged weights (from --ema_decay) instead of its own")
    flag(g, "--tta", default="none", choices=list(TTA_FLIPS), help="average the scores of each picture and its flips")


def add_component_flags(parser: ArgumentParser, chosen: dict[str, str], losses: bool) -> None:
    """The chosen components' own flags, from their constructors' signatures, in a group
    each; with `losses`, every loss's (which one trains is known once the data tells the task).
    eval.py takes the model's, data set's and loss's from the checkpoint it evaluates."""
    for choice, entry in chosen.items():
        title, registry, supplied, _ = COMPONENTS[choice]
        taken = {a.dest: g.title for g in parser._action_groups for a in g._group_actions}
        names = add_signature_flags(parser, f"{title} {entry}", registry[entry], supplied, taken)
        for action in parser._actions[len(parser._actions) - len(names):]:
            action.eval_takes = choice in ("model_type", "data_type")
            action.on_resume = "allowed" if action.dest in getattr(registry[entry], "changeable_on_resume", ()) \
                else "refused"
    if losses:
        group = parser.add_argument_group("loss", "a loss's flags are its constructor's parameters (loss.py)")
        flag(group, "--loss", default=None, choices=list(LOSSES), eval_takes=True, help="loss, a name in loss.py "
             "(default: the task's: cross_entropy for classification, ce_dice for segmentation)")
        taken = {a.dest: g.title for g in parser._action_groups for a in g._group_actions}
        names = add_shared_flags(parser, "loss", LOSSES, LOSS_SUPPLIED, taken, group)
        for action in parser._actions[len(parser._actions) - len(names):]:
            action.eval_takes = True


def build_parser(prog: str = "train.py", **chosen: str) -> Parser:
    """The flags of train.py, eval.py or predict.py, with those of the components `chosen` (the others: defaults)."""
    names = list(COMPONENTS) if prog == "train.py" else ["model_type", "data_type"]
    chosen = {name: chosen.get(name, COMPONENTS[name][3]) for name in names}
    what = {"train.py": "Train a model", "eval.py": "Evaluate a checkpoint", "predict.py": "Predict on pictures"}
    parser = Parser(prog, hint=component_of, description=f"{what[prog]} (see README.md). A component's own flags "
                    "follow its choice: `python train.py --model_type unet -h` lists unet's.")
    add_common_flags(parser)
    if prog == "train.py":
        add_train_flags(parser)
    else:
        parser.set_defaults(save_prefix=prog.removesuffix(".py"))
        add_result_flags(parser, prog)
    add_component_flags(parser, chosen, losses=prog != "predict.py")
    return parser


def chosen_components(prog: str, argv: list[str], saved: dict) -> dict[str, str]:
    """The components a command chooses: given now, else the run's or config's, else the default."""
    first = Parser(prog, add_help=False)
    for name in COMPONENTS:
        first.add_argument(f"--{name}", choices=list(COMPONENTS[name][1]))
    given = vars(first.parse_known_args(argv)[0])
    chosen = {name: given[name] or saved.get(name, COMPONENTS[name][3]) for name in COMPONENTS}
    for name, entry in chosen.items():
        if entry not in COMPONENTS[name][1]:
            raise UserError(f"The saved --{name} {entry!r} is not a registered name; valid names: "
                            f"{', '.join(COMPONENTS[name][1])}.")
    return chosen


def parse_train_args(argv: list[str] | None = None) -> tuple[Namespace, Resume | None]:
    """The checked training flags, and what --resume continues from (None for a new run)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    first = Parser("train.py", add_help=False)
    first.add_argument("--resume")
    first.add_argument("--config")
    first = first.parse_known_args(argv)[0]
    try:
        resume, saved = None, {}
        if first.resume is not None:
            path = resume_checkpoint_path(first.resume)
            resume = Resume(path, read_checkpoint(path, mmap=True), {})
            saved = saved_run_args(resume.checkpoint, path)
        elif first.config is not None:
            saved = read_flags_file(first.config, "--config")
        parser = build_parser("train.py", **chosen_components("train.py", argv, saved))
    except UserError as error:
        Parser("train.py").error(str(error))
    if resume is not None:
        # A flag added to the template after the run started (e.g. a new model parameter) takes
        # its default, which by design keeps the old behaviour: it is no change of the run.
        saved = {a.dest: a.default for a in parser._actions if a.option_strings and a.dest not in saved
                 and a.dest != "help"} | saved | {"profile": 0}  # --profile is for the process given it
        # argparse fills in defaults only for names the namespace lacks: the saved values stay.
        args = parser.parse_args(argv, namespace=Namespace(**saved))
    else:
        # Flags of components this run does not use (another model's, the step schedule's) are left out.
        others = {p.name for _, registry, supplied, _ in COMPONENTS.values() for builder in registry.values()
                  for p in flag_parameters(builder, supplied)}
        args = parser.parse_args(flags_as_argv(parser, saved, f"--config {first.config}: ", others) + argv)
    try:
        finish_train_args(args)
        if resume is not None:
            resume.changed = check_resume(args, saved, resume.checkpoint, parser)
    except UserError as error:
        parser.error(str(error))
    return args, resume


def finish_train_args(args: Namespace) -> None:
    """Defaults that depend on other flags, then the checks that involve several flags."""
    args.train_list = args.train_list or demo_list(args.data_type, train=True)
    args.val_list = args.val_list or demo_list(args.data_type, train=False)
    check_common_args(args)
    if args.monitor is not None and not args.monitor.startswith(("train/", "val/", "val_ema/")):
        raise UserError(f"--monitor {args.monitor!r} must name a curve, e.g. val/acc, val/loss or val_ema/acc.")
    if args.monitor is not None and args.monitor.startswith("val_ema/") and not args.ema_decay:
        raise UserError(f"--monitor {args.monitor} needs the averaged weights: add --ema_decay, e.g. 0.999.")
    if args.folds and (args.folds < 2 or not args.fold < args.folds):
        raise UserError(f"--folds {args.folds} --fold {args.fold}: use --folds 2 or more and --fold from 0 to "
                        f"--folds - 1.")
    if reads_lists(args.data_type):
        check_list_exists("--train_list", args.train_list)
    if args.exp is not None:
        check_folder_name("--exp", args.exp)
    check_optimizer_flags(vars(args))  # built once on a stand-in weight: a value they refuse is named now
    check_loss_flags(vars(args))
    if args.load_model_path is not None:
        args.load_model_path = str(resolve_checkpoint(args.load_model_path))
    if args.fast_dev_run:  # one batch of each, one epoch; the run directory is not kept
        args.epochs, args.limit_train_batches, args.limit_val_batches = 1, 1, 1


def check_resume(args: Namespace, saved: dict, checkpoint: dict, parser: Parser) -> dict[str, tuple[object, object]]:
    """The flags a resumption changes; refused when they would change the run it continues."""
    resume, processes = args.resume, launched_world_size()
    if checkpoint.get("world_size", 1) != processes:
        raise UserError(f"--resume {resume}: the run used {checkpoint.get('world_size', 1)} process(es), now "
                        f"{processes}; that changes the batches it trains on. Resume with the same "
                        "torchrun --nproc_per_node (and --nnodes), or start a new run with --load_model_path.")
    changed, refused = changed_flags(parser, saved, args)
    if refused:
        allowed = [a.dest for a in parser._actions if getattr(a, "on_resume", "") == "allowed"]
        raise UserError(f"--resume {resume}: these flags would change the run it continues: "
                        f"{'; '.join(f'--{n} {changed[n][0]} (run) vs {changed[n][1]} (now)' for n in refused)}. "
                        f"Start a new run, or drop them; flags that may change on resume: {', '.join(allowed)}.")
    if checkpoint["epoch"] >= args.epochs:
        raise UserError(f"--resume {resume}: the run already did all {checkpoint['epoch']} epochs; "
                        "pass a larger --epochs to extend it.")
    schedule = builder_kwargs(SCHEDULERS[args.scheduler], vars(args), SCHEDULER_SUPPLIED)
    if "epochs" in changed and planned_over_epochs(args.scheduler, schedule):
        raise UserError(f"--resume {resume} --epochs {args.epochs}: the run's --scheduler {args.scheduler} was planned "
                        f"over its {saved['epochs']} epochs (a cosine ends at --min_lr), so extending it would train "
                        "on at the end of the schedule. Continue with a new run from its weights instead: "
                        f"--load_model_path {Path(resume_checkpoint_path(resume)).resolve()} --epochs <more> "
                        "(a new schedule).")
    return changed


def parse_eval_args(argv: list[str] | None = None, prog: str = "eval.py") -> tuple[Namespace, dict]:
    """The checked flags of eval.py (or predict.py), model and data flags defaulting to the
    checkpoint's saved ones (the loss's too, for eval.py), and the checkpoint, read once."""
    argv = sys.argv[1:] if argv is None else list(argv)
    first = Parser(prog, add_help=False)
    for name, default in (("load_model_path", None), ("checkpoints_dir", "checkpoints"), ("model_type", None),
                          ("data_type", None)):
        first.add_argument(f"--{name}", default=default)
    first = first.parse_known_args(argv)[0]
    try:
        if {"-h", "--help"} & set(argv):  # help needs no checkpoint
            build_parser(prog, **chosen_components(prog, argv, {})).parse_args(argv)
        if prog == "predict.py" and launched_by_torchrun():
            raise UserError(f"predict.py runs as one process, but torchrun started {launched_world_size()}; "
                            "run it with python (it uses one GPU, chosen by --gpus).")
        wanted = {name: value for name in ("model_type", "data_type") if (value := getattr(first, name)) is not None}
        path = resolve_checkpoint(first.load_model_path or newest_matching_run(first.checkpoints_dir, wanted))
        checkpoint = read_checkpoint(path, mmap=True)
        saved = checkpoint.get("args") if isinstance(checkpoint.get("args"), dict) else {}
        parser = build_parser(prog, **chosen_components(prog, argv, saved))
    except UserError as error:
        Parser(prog).error(str(error))
    parser.set_defaults(**{a.dest: saved[a.dest] for a in parser._actions if getattr(a, "eval_takes", False)
                           and a.dest in saved})
    args = parser.parse_args(argv)
    try:
        args.load_model_path = str(path)
        if prog == "eval.py":
            args.val_list = args.val_list or demo_list(args.data_type, train=False)
            check_common_args(args)
        else:
            check_predict_args(args, checkpoint)
        if args.ema and not isinstance(checkpoint.get("ema"), dict):
            raise UserError(f"--ema: {path} holds no averaged weights; train with --ema_decay to have them.")
    except UserError as error:
        parser.error(str(error))
    return args, checkpoint


def parse_predict_args(argv: list[str] | None = None) -> tuple[Namespace, dict]:
    """The checked flags of predict.py (as eval.py's: model and data flags from the checkpoint)."""
    return parse_eval_args(argv, prog="predict.py")


def check_predict_args(args: Namespace, checkpoint: dict) -> None:
    """predict.py's checks (not check_common_args: the training lists play no part, and may be gone by now)."""
    if not Path(args.input).exists():
        raise UserError(f"--input {args.input} does not exist; {INPUT_HINT}.")
    check_folder_name("--save_prefix", args.save_prefix)
    check_gpus(args.gpus)
    if not isinstance(checkpoint.get("model_kwargs"), dict) or checkpoint.get("task") is None:
        raise UserError(f"{args.load_model_path} does not say which model, task and classes it holds (no "
                        "model_kwargs and task): predict.py needs a checkpoint written by train.py.")


def check_common_args(args: Namespace) -> None:
    """Checks shared by training and evaluation; raise UserError naming the flag."""
    if reads_lists(args.data_type):
        check_list_exists("--val_list", args.val_list)
    if args.load_model_path is not None and not Path(args.load_model_path).exists():
        raise UserError(f"--load_model_path {args.load_model_path} does not exist.")
    check_folder_name("--save_prefix", args.save_prefix)
    check_gpus(args.gpus)
