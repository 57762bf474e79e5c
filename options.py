"""Command-line flags of train.py, eval.py and predict.py, and their checks: parsing and
checking, nothing else (no file is written, no process group started). The template's own
flags (common, training, evaluation) are in template_flags.py, which imports no torch, so
that `-h` and a bad value answer at once; the components' come from their signatures here.

`parse_train_args(argv)`, `parse_eval_args(argv)` and `parse_predict_args(argv)` (argv None: `sys.argv`)
return the checked flags and the checkpoint they continue from or evaluate, read once; a bad value is
one message and exit code 2, before anything is written. Each flag's check sits beside it: its `type=`,
and `flag(..., on_resume=, eval_takes=, config=)` for what it means to --resume, eval.py and --config.
The chosen model's, data set's, optimizer's and schedule's own flags, and every loss's, come from their
constructors' signatures (utils/signature_flags.py): `python train.py --model_type unet -h` lists unet's.
"""

import sys
from argparse import ArgumentParser, Namespace
from pathlib import Path

from data import data_entry
from data.augment import POLICIES
from data.data_entry import DATASETS, check_list_exists, reads_lists
from data.demo_data import demo_list
from data.unlabeled import INPUT_HINT
from loss import LOSSES
from loss import SUPPLIED as LOSS_SUPPLIED
from model import model_entry
from model.model_entry import MODELS, preprocessing_defaults
from tasks import check_loss_flags
from tasks.tta import TTA_FLIPS
from template_flags import AS_TRAINED, answer_early, template_parser
from utils.distributed import launched_by_torchrun, launched_world_size
from utils.errors import UserError
from utils.flags import Parser, changed_flags, flag, flags_as_argv, read_flags_file
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
from utils.torch_utils import check_gpus, read_checkpoint, read_checkpoint_and_sha256

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
    """The flags of train.py, eval.py or predict.py, with those of the components `chosen`
    (e.g. model_type="unet"; the others their defaults). predict.py reads pictures at the
    checkpoint's size: it has the model's flags, not the data set's."""
    names = {"train.py": list(COMPONENTS), "eval.py": ["model_type", "data_type"], "predict.py": ["model_type"]}
    chosen = {name: chosen.get(name, COMPONENTS[name][3]) for name in names[prog]}
    parser = template_parser(prog, {name: list(registry) for name, (_, registry, _, _) in COMPONENTS.items()}
                             | {"aug_policy": list(POLICIES), "tta": list(TTA_FLIPS)})
    parser.hint = component_of
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
    answer_early("train.py", argv)  # again, for callers other than train.py (the slurm script, tests)
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
        words = flags_as_argv(parser, saved, f"--config {first.config}: ", others) + argv
        args = parser.parse_args(words)
        preprocessing_defaults(args, {word.split("=")[0][2:] for word in words if word.startswith("--")})
    try:
        finish_train_args(args)
        if resume is not None:
            resume.changed = check_resume(args, saved, resume, parser)
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
    if args.load_model_path is not None and not args.resume:
        args.load_model_path = str(resolve_checkpoint(args.load_model_path))
    if args.fast_dev_run:  # one batch of each, one epoch; the run directory is not kept
        args.epochs, args.limit_train_batches, args.limit_val_batches = 1, 1, 1


# Always among a run's TensorBoard hyperparameters, at their default or not: what a reader
# compares first.
ALWAYS_IDENTIFYING = ("model_type", "data_type", "lr", "batch_size", "epochs")


def identifying_flags(args: Namespace) -> dict[str, object]:
    """The flags that tell this run from others, for TensorBoard's HPARAMS tab (all 60-odd would
    bury the swept one): ALWAYS_IDENTIFYING, and every other flag whose value differs from its
    default, except those that say where and how a run is carried out rather than what it
    trains (those a resumed run may change: --gpus, --num_workers, --print_freq, ...) and
    --resume / --config. Defaults that depend on other flags (the demo lists, the model's
    --mean / --std) count as they were filled in for this run's choices."""
    parser = build_parser("train.py", **{name: getattr(args, name) for name in COMPONENTS})
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}
    baseline = Namespace(**{name: action.default for name, action in actions.items()})
    model_flags = ["model_type"] + [p.name for p in flag_parameters(MODELS[args.model_type], model_entry.SUPPLIED)]
    implied = Namespace(**vars(baseline) | {name: getattr(args, name) for name in model_flags})  # --pretrained's
    preprocessing_defaults(implied, given=set())
    for name in vars(baseline).keys() - set(model_flags):
        setattr(baseline, name, getattr(implied, name))
    baseline.train_list = baseline.train_list or demo_list(args.data_type, train=True)
    baseline.val_list = baseline.val_list or demo_list(args.data_type, train=False)
    return {name: value for name, value in vars(args).items() if name in ALWAYS_IDENTIFYING
            or (name in actions and value != getattr(baseline, name) and getattr(actions[name], "config", True)
                and getattr(actions[name], "on_resume", "refused") != "allowed")}


def check_resume(args: Namespace, saved: dict, resume_of: Resume, parser: Parser) -> dict[str, tuple[object, object]]:
    """The flags a resumption changes; refused when they would change the run it continues."""
    resume, processes, checkpoint = args.resume, launched_world_size(), resume_of.checkpoint
    if checkpoint.get("world_size", 1) != processes:
        raise UserError(f"--resume {resume}: the run used {checkpoint.get('world_size', 1)} process(es), now "
                        f"{processes}; that changes the batches it trains on. Resume with the same "
                        "torchrun --nproc_per_node (and --nnodes), or start a new run with --load_model_path.")
    changed, refused = changed_flags(parser, saved, args)
    if refused:
        allowed = [a.dest for a in parser._actions if getattr(a, "on_resume", "") == "allowed"]
        raise UserError(f"--resume {resume}: these flags would change the run it continues: "
                        f"{'; '.join(f'--{n} {changed[n][0]} (run) vs {changed[n][1]} (now)' for n in refused)}. "
                        f"Start a new run instead, or drop them; flags that may change on resume: "
                        f"{', '.join(allowed)}.")
    if checkpoint["epoch"] >= args.epochs and resume_of.finished:  # else killed after its last save: finish it
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
    answer_early(prog, argv)  # -h needs no checkpoint
    first = Parser(prog, add_help=False)
    for name, default in (("load_model_path", None), ("checkpoints_dir", "checkpoints"), ("model_type", None),
                          ("data_type", None)):
        first.add_argument(f"--{name}", default=default)
    first.add_argument("--allow_unfinished", action="store_true")
    first = first.parse_known_args(argv)[0]
    try:
        if prog == "predict.py" and launched_by_torchrun():
            raise UserError(f"predict.py runs as one process, but torchrun started {launched_world_size()}; "
                            "run it with python (it uses one GPU, chosen by --gpus).")
        wanted = {name: value for name in ("model_type", "data_type") if (value := getattr(first, name)) is not None}
        path = resolve_checkpoint(first.load_model_path or newest_matching_run(first.checkpoints_dir, wanted,
                                                                               first.allow_unfinished, prog))
        checkpoint, sha256 = read_checkpoint_and_sha256(path)  # what is loaded is what is recorded
        saved = checkpoint.get("args") if isinstance(checkpoint.get("args"), dict) else {}
        parser = build_parser(prog, **chosen_components(prog, argv, saved))
    except UserError as error:
        Parser(prog).error(str(error))
    parser.set_defaults(**{a.dest: saved[a.dest] for a in parser._actions if getattr(a, "eval_takes", False)
                           and a.dest in saved})
    parser.set_defaults(**{name: saved.get(name, default) for name, default in AS_TRAINED[prog].items()})
    args = parser.parse_args(argv)
    try:
        args.load_model_path, args.load_model_sha256 = str(path), sha256  # run_info.json records both
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
    resuming = getattr(args, "resume", None)  # a resumed run reads its own checkpoint only
    if args.load_model_path is not None and not resuming and not Path(args.load_model_path).exists():
        raise UserError(f"--load_model_path {args.load_model_path} does not exist.")
    check_folder_name("--save_prefix", args.save_prefix)
    check_gpus(args.gpus)
