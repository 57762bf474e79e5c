"""The template's own flags: common, training, evaluation and prediction, each with its check
(`type=`, and `flag(..., on_resume=, eval_takes=, config=)`: what it means to --resume,
eval.py and --config). The chosen components' own flags, and the parse itself, are in
options.py.

They need no component, and this file imports none (nor torch), so `answer_early` reads them
before anything else: `-h` shows them at once and a bad value of one is refused, while the
components and torch, seconds to import on a quiet machine and up to a minute on a busy one,
are still loading. The entry points call it before their own imports.
"""

import os
import sys
from argparse import ArgumentParser, ArgumentTypeError, BooleanOptionalAction

from utils.flags import AMOUNT, COUNT, FRACTION, PROBABILITY, Parser, flag, number, positive, worker_processes
from utils.trackers import LOGGER_NAMES, missing_package

# The first lines of -h: the flags most runs set; every flag follows, by group.
USAGE = {"train.py": "python train.py [--model_type NAME] [--data_type NAME] [--train_list FILE --val_list FILE]\n"
                     "       [--epochs N] [--lr LR] [--batch_size N] [--resume RUN_DIR] [flag ...]",
         "eval.py": "python eval.py [--load_model_path RUN_DIR_OR_PTH] [--val_list FILE] [--save_viz] [flag ...]",
         "predict.py": "python predict.py --input FOLDER_LIST_OR_PICTURE [--load_model_path RUN_DIR_OR_PTH]\n"
                       "       [--top_k K] [flag ...]"}
# What eval.py and predict.py have no flag for (nothing of theirs is random, predict.py reads
# pictures at the model's size, not a data set): as the checkpoint's run had it, else these.
AS_TRAINED = {"eval.py": {"seed": 42},
              "predict.py": {"seed": 42, "val_list": None, "ignore_index": 255, "image_size": None}}


def add_common_flags(parser: ArgumentParser, prog: str, names: dict[str, list[str]]) -> None:
    """Flags shared by training, evaluation and prediction (less what AS_TRAINED gives them);
    `names`: the choices of the flags that choose a component ({}: not checked yet)."""
    g = parser.add_argument_group("common")
    flag(g, "--model_type", default="base", choices=names.get("model_type"), eval_takes=True,
         help="model to build, a name in model/model_entry.py")
    flag(g, "--data_type", default="list", choices=names.get("data_type"), eval_takes=True,
         help="data set, a name in data/data_entry.py")
    flag(g, "--save_prefix", default="exp", help="a word naming the run in its folder name")
    flag(g, "--load_model_path", default=None, help="checkpoint (.pth) or run directory to load weights from")
    flag(g, "--load_not_strict", action=BooleanOptionalAction, default=False,
         help="load only the tensors whose names and shapes match the model")
    if prog != "predict.py":
        flag(g, "--val_list", default=None, eval_takes=True, help="list file of the validation / evaluation set "
             "(default: the demo's, data/demo/val.txt, or seg_val.txt for --data_type seg_list)")
        flag(g, "--ignore_index", type=int, default=255, eval_takes=True,
             help="segmentation: mask value that loss and metrics skip")
    flag(g, "--gpus", type=int, nargs="+", default=None, on_resume="allowed",
         help="GPU ids to use; several = DataParallel; -1 = CPU (default: GPU 0 if present)")
    if prog == "train.py":
        flag(g, "--seed", type=int, default=42, help="seed for python, numpy and torch")
    for name, what in (("mean", "subtracted"), ("std", "divided by")):
        flag(g, f"--{name}", type=float, nargs="+", default=None, eval_takes=True, help=f"per channel, {what} after "
             "scaling pictures to [0, 1] (default: a pretrained model's own, else 0.5)")
    flag(g, "--num_workers", type=worker_processes, default=None, on_resume="allowed", help="DataLoader worker "
         "processes, at most 4 per CPU; 0 loads in the main process (default: 2; without a GPU, 0 for an in-memory "
         "set read a batch at a time)")
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


def add_train_flags(parser: ArgumentParser, names: dict[str, list[str]]) -> None:
    """The training flags, in groups as `-h` shows them."""
    g = parser.add_argument_group("training")
    flag(g, "--train_list", default=None, help="list file of the training set (default: the demo's, "
         "data/demo/train.txt, or seg_train.txt for --data_type seg_list)")
    flag(g, "--epochs", type=COUNT, default=10, on_resume="allowed", help="epochs to train")
    flag(g, "--lr", type=positive, default=3e-3, help="learning rate")
    flag(g, "--optimizer", default="adamw", choices=names.get("optimizer"),
         help="optimizer, a name in utils/optim.py; `--optimizer sgd -h` lists its flags")
    flag(g, "--weight_decay", type=number(float, 0), default=1e-4, help="weight decay")
    flag(g, "--accum_steps", type=COUNT, default=1, help="add up the gradients of N batches per optimizer step: an "
         "N times larger batch in the same memory")
    flag(g, "--clip_grad", type=number(float, 0), default=0.0,
         help="clip the gradient norm to this value before each step; 0 = off")
    flag(g, "--freeze_epochs", type=AMOUNT, default=0, help="train only the head (the last layer) for N epochs, "
         "the backbone frozen, its BatchNorm in eval mode; then all of it")
    flag(g, "--backbone_lr_scale", type=number(float, 0), default=1.0, help="the backbone's learning rate, as a "
         "multiple of --lr (the head's)")
    flag(g, "--layer_decay", type=number(float, 0, 1, high_open=False), default=1.0, help="each backbone unit's "
         "lr is this times the next one's, from the head down: the units nearest the input learn slowest")
    flag(g, "--ema_decay", type=FRACTION, default=0.0, help="keep an exponential moving average of the weights with "
         "this decay, e.g. 0.999 (ramped up as min(D, (1 + n) / (10 + n))), validated as val_ema/...; 0 = off")
    g = parser.add_argument_group("learning-rate schedule (stepped after every optimizer step)")
    flag(g, "--scheduler", default="cosine", choices=names.get("scheduler"), help="after the warmup: cosine down to "
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
    g = parser.add_argument_group("loggers (metrics.csv is always written; docs/trackers.md)")
    flag(g, "--logger", type=installed_tracker, nargs="+", default=["tensorboard"], choices=LOGGER_NAMES,
         on_resume="allowed", help="where the curves go besides metrics.csv: tensorboard, mlflow, wandb (one or "
         "several; MLflow and W&B offline, into the run folder, and only when named: utils/trackers.py)")
    flag(g, "--mlflow_uri", default=None, on_resume="allowed", help="with --logger mlflow: its tracking URI, e.g. "
         "file:checkpoints/mlruns for one store of every run (default: MLFLOW_TRACKING_URI, else <run dir>/mlruns)")
    g = parser.add_argument_group("augmentation (torchvision.transforms.v2; all off by default)")
    flag(g, "--crop_padding", type=AMOUNT, default=0, help="random shifts: pad by N pixels, then crop back")
    flag(g, "--hflip", type=PROBABILITY, default=0.0, help="probability of a horizontal flip; wrong for digits, text")
    flag(g, "--vflip", type=PROBABILITY, default=0.0, help="probability of a vertical flip")
    flag(g, "--aug_policy", default="none", choices=names.get("aug_policy"),
         help="a learned or random augmentation policy")
    flag(g, "--random_erasing", type=PROBABILITY, default=0.0, help="probability of erasing a random rectangle")
    flag(g, "--mixup", type=number(float, 0), default=0.0, help="MixUp's Beta(alpha, alpha), e.g. 0.2; 0 = off")
    flag(g, "--cutmix", type=number(float, 0), default=0.0, help="CutMix's Beta(alpha, alpha), e.g. 1.0; 0 = off")
    flag(g, "--sampler", default="shuffle", choices=["shuffle", "balanced"], help="each epoch a shuffle of every "
         "sample, or a draw in which every class comes about equally often (imbalanced classes)")
    g = parser.add_argument_group("checking a new model or data set quickly")
    flag(g, "--limit_train_batches", type=AMOUNT, default=0,
         help="train on only the first N batches of each epoch; 0 = all")
    flag(g, "--limit_val_batches", type=AMOUNT, default=0, help="validate on only the first N batches; 0 = all")
    flag(g, "--overfit_batches", type=AMOUNT, default=0, help="train and validate on the same first N training "
         "batches each epoch, without augmentation: train/loss must fall towards zero (with --scheduler none: a "
         "cosine ends the few steps at lr 0)")
    flag(g, "--fast_dev_run", action=BooleanOptionalAction, default=False,
         help="one training and one validation batch, then stop; nothing is kept")
    flag(g, "--folds", type=AMOUNT, default=0, help="k-fold cross-validation: split --train_list into K folds "
         "(default: 0, off)")
    flag(g, "--fold", type=AMOUNT, default=0, help="with --folds: validate on fold N (0 to K-1), train on the others")


def installed_tracker(name: str) -> str:
    """--logger's check: a tracker whose package is missing is refused, naming its pip command."""
    missing = missing_package(name)
    if missing:
        raise ArgumentTypeError(missing.removeprefix("--logger "))
    return name


def add_result_flags(parser: ArgumentParser, prog: str, names: dict[str, list[str]]) -> None:
    """What eval.py and predict.py share: where the results go, which weights, test-time flips
    (`names`: as in add_common_flags)."""
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
    flag(g, "--tta", default="none", choices=names.get("tta"), help="average the scores of each picture and its "
         "flips: none, hflip, vflip or hvflip (tasks/tta.py)")
    flag(g, "--allow_unfinished", action="store_true", help="without --load_model_path: take the newest run even "
         "if it is still running, was interrupted or failed (refused by default: its best.pth may not be final)")


def template_parser(prog: str, names: dict[str, list[str]]) -> Parser:
    """The template's own flags of train.py, eval.py or predict.py, no component's (`names`: as
    in add_common_flags)."""
    what = {"train.py": "Train a model", "eval.py": "Evaluate a checkpoint", "predict.py": "Predict on pictures"}
    parser = Parser(prog, usage=USAGE[prog], description=f"{what[prog]} (see README.md). The common flags first, "
                    "then the others by group, and last the chosen components' own (the model's, the data set's, "
                    f"...): `python {prog} --model_type unet -h` lists unet's.")
    add_common_flags(parser, prog, names)
    if prog == "train.py":
        add_train_flags(parser, names)
    else:
        parser.set_defaults(save_prefix=prog.removesuffix(".py"))
        add_result_flags(parser, prog, names)
    return parser


def answer_early(prog: str, argv: list[str]) -> None:
    """-h, and a bad value of one of the template's own flags, answered before any component
    is imported: -h shows these flags at once, then the chosen components' own once they are
    read (options.py); a bad value is one message and exit code 2. An unknown flag is left to
    the full parse: it may be a component's (`--width`, `--eps`)."""
    own = template_parser(prog, {})
    if not {"-h", "--help"} & set(argv):
        own.parse_known_args(argv)
        return
    try:
        own.print_help()
        sys.stdout.flush()  # now: what follows waits for the components, and torch
        import options  # the components' flags (and the registries' names)

        full = options.build_parser(prog, **options.chosen_components(prog, argv, {}))
        unchecked = {a.dest for a in own._actions if a.choices is None}
        names = [f"  --{a.dest}: {', '.join(map(str, a.choices))}" for a in full._actions
                 if a.dest in unchecked and a.choices]
        own_groups = {group.title for group in own._action_groups}
        print("names to choose from (the registries):", *names, "", sep="\n")
        print(full.format_groups([group for group in full._action_groups if group.title not in own_groups]), end="")
        sys.stdout.flush()
    except BrokenPipeError:  # `-h | head`: the reader has gone; end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)
