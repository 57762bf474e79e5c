"""Train a model: `python train.py [flags]` (flags: options.py, or `python train.py -h`).

Read `Trainer` top to bottom: __init__ builds everything and checks it (bad input ends
there, before the run directory exists), `train` runs the epochs and `train_per_epoch` the
batch loop: `train_step` (the forward pass and the loss), `loss.backward()` and
`optimizer_step`, in plain sight. `validate` runs `evaluate`, the one evaluation loop, which
eval.py runs too; both go through `forward`, the one forward pass. What a checkpoint holds
and how a run resumes: `checkpoint_state` / `resume`; which checkpoints are kept, and early
stopping: utils/checkpoints.py.
"""

import functools
import logging
import math
import sys
import time
from argparse import Namespace
from collections.abc import Callable

from template_flags import answer_early

if __name__ == "__main__":  # -h and a bad flag value answer now, not after the imports below load torch
    answer_early("train.py", sys.argv[1:])

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from data.data_entry import (
    augment_of,
    check_same_data,
    describe_data,
    select_eval_loader,
    select_train_loader,
    training_labels,
    training_sets,
)
from model.model_entry import (
    averaged_model,
    check_model_fits,
    freeze_backbone,
    load_start_weights,
    model_kwargs,
    parameter_groups,
    prepare_model,
    rewrap,
    select_model,
)
from options import identifying_flags, parse_train_args
from tasks import Meter, Task, select_loss, select_task
from utils.checkpoints import Checkpoints, load_training_state, training_state
from utils.distributed import (
    any_rank,
    gradient_sync,
    is_main_process,
    start_process,
    sync_buffers_from_main,
    world_size,
)
from utils.errors import UserError
from utils.logger import Logger, ProgressBar, check_finite, setup_logging
from utils.model_summary import describe_summary, model_summary
from utils.optim import build_optimizer, build_schedule
from utils.profiling import StepProfiler
from utils.run_dir import Resume, RunDir
from utils.torch_utils import AMP_DTYPES, finite_weights, make_deterministic, select_device, set_seed
from utils.trackers import Trackers

log = logging.getLogger(__name__)
PER_CLASS_CURVES = 20  # validation curves per class (accuracy, F1, IoU, ...) up to this many classes


class Trainer:
    """One training run: data, model, optimizer, and the loop that ties them together."""

    def __init__(self, args: Namespace, resume: Resume | None = None) -> None:
        self.args = args
        set_seed(args.seed)
        if args.deterministic:
            make_deterministic()
        self.device = select_device(args.gpus)
        torch.backends.cudnn.benchmark = not args.deterministic  # cuDNN picks the fastest kernels
        train_set, val_set = training_sets(args)
        self.data = describe_data(args, train_set, val_set)  # to tell, on resuming, that the data is the same
        self.train_loader = select_train_loader(args, train_set)
        self.val_loader = select_eval_loader(args, val_set, args.limit_val_batches)
        # The task (tasks/) knows the labels: their checks, metrics, pictures, and the default loss.
        self.task: Task = select_task(train_set.task, train_set.class_names, args.ignore_index)
        # One loss for training, validation and eval.py (--class_weights auto: from the training labels).
        self.loss_fn, self.loss_kwargs = select_loss(vars(args), self.task, training_labels(train_set))
        self.loss_fn.to(self.device)
        vars(args).update(self.loss_kwargs)  # args.json records the loss trained with (--loss: the task's default)
        self.mix = self.task.batch_augment(augment_of(args), args.loss)  # --mixup / --cutmix, or None
        model = self.build_model(train_set.in_channels, val_set[0]["image"], new_run=resume is None)
        self.plain_model = model  # the model itself, inside any wrapper
        self.model = prepare_model(model, args, self.device)  # on the device; DDP under torchrun
        self.frozen = False  # --freeze_epochs: the backbone's parameters are not trained
        self.ema = averaged_model(model, args.ema_decay)  # --ema_decay: averaged weights, validated as val_ema/
        self.build_optimization()
        monitor = args.monitor or f"val/{self.task.main_metric}"
        self.checkpoints = Checkpoints(monitor, args.monitor_mode or self.monitor_mode(monitor), args.save_freq,
                                       args.save_top_k, args.patience, args.min_delta)
        self.profiler = StepProfiler(args.profile, self.device)  # --profile N: torch.profiler over N steps
        # Progress: epochs completed, batches done in the next one (after a mid-epoch save).
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.saved_at_step = 0  # global step of the last mid-epoch save (--save_every_steps)
        self.partial_epoch: dict | None = None  # the epoch's sums so far, from a mid-epoch checkpoint
        self.history: list[dict[str, float]] | None = None  # metrics.csv rows of a resumed run
        if resume is not None:
            self.resume(resume)
        log.info(f"{args.model_type}: {describe_summary(self.summary)}; on {self.device} x {world_size()} "
                 f"process(es); {len(train_set)} training and {len(val_set)} validation samples")

    def build_model(self, in_channels: int, sample: Tensor, new_run: bool) -> nn.Module:
        """--model_type sized for the data, starting from --load_model_path's or --pretrained
        weights (a new run only), and tried on a real sample: a model that cannot take the data
        fails here, before anything is written."""
        self.model_kwargs = model_kwargs(self.args, len(self.task.class_names), in_channels)
        model = select_model(self.args, self.model_kwargs).to(self.device)
        if new_run:
            load_start_weights(model, self.args)
        check_model_fits(model, sample, self.task.check_output, self.args.model_type)
        self.summary = model_summary(model, sample)  # parameters and FLOPs: the log and run_info.json say them
        return model

    def build_optimization(self) -> None:
        """--optimizer, its schedule over every optimizer step (--warmup_epochs, then
        --scheduler) and, for --amp fp16, the loss scaler that keeps gradients from underflowing."""
        args = self.args
        # One group, or (--backbone_lr_scale, --layer_decay) the head and the backbone's units apart.
        groups = parameter_groups(self.plain_model, args.lr, args.backbone_lr_scale, args.layer_decay)
        self.optimizer = build_optimizer(args.optimizer, groups, args.lr, args.weight_decay, vars(args))
        steps_per_epoch = math.ceil(len(self.train_loader) / args.accum_steps)
        self.scheduler = build_schedule(args.scheduler, self.optimizer, args.epochs, steps_per_epoch,
                                        args.warmup_epochs, vars(args))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=args.amp == "fp16")

    def monitor_mode(self, monitor: str) -> str:
        """Whether a larger (max) or a smaller (min) --monitor is better: smaller for a loss
        and for the task's `lower_is_better` metrics."""
        name = monitor.split("/", 1)[-1]
        return "min" if "loss" in name or name in self.task.lower_is_better else "max"

    def train(self, run: RunDir) -> None:
        """Run the remaining epochs into `run`: train, validate, write curves and checkpoints.
        Ctrl-C, SIGTERM or SIGUSR1 saves and stops after the current step."""
        self.run = run
        trackers = Trackers(self.args.logger, run.path, vars(self.args),  # MLflow, W&B: rank 0, kept runs only
                            enabled=run.writer and not run.temporary)
        self.logger = Logger(run.path, self.history, self.global_step, enabled=run.writer,
                             tensorboard="tensorboard" in self.args.logger, trackers=trackers)
        self.checkpoints.open(run.path, enabled=run.writer)  # a resumed run's best.pth, top-k: as last.pth says
        if self.checkpoints.resumed_from is not None:
            record_progress = self.progress()  # what last.pth, now with all its names, holds
            record_progress()
        if self.epoch >= self.args.epochs or self.checkpoints.stop_early:
            log.info(f"The run had done its epochs (up to epoch {self.epoch}) when it was stopped; it is finished now.")
        self.profiler.open(run.path / "profile", enabled=run.writer)
        # Only the flags that tell runs apart (all of them buried the swept one).
        self.logger.start_hparams(identifying_flags(self.args) | {"monitor": self.checkpoints.monitor},
                                  run.trial_id(self.args.checkpoints_dir))
        with trackers, run.catching_stop_signals():  # the tracker runs end finished, interrupted or failed
            try:
                for epoch in range(self.epoch + 1, self.args.epochs + 1):
                    if self.checkpoints.stop_early:  # checked first: a resumed run may have stopped early already
                        break
                    self.run_epoch(epoch)
                    if any_rank(run.stop.check()) and epoch < self.args.epochs:  # the last epoch just finishes
                        run.stop_now()
            finally:
                self.checkpoints.wait()  # every checkpoint is on disk before the run ends, however it ends
            best = {f"best/{self.checkpoints.monitor}": self.checkpoints.best}
            trackers.log({name: value for name, value in best.items() if value is not None}, self.global_step)
        self.profiler.close()
        self.logger.end_hparams()
        self.logger.close()

    def run_epoch(self, epoch: int) -> None:
        """Train and validate one epoch; write its curves, metrics.csv row and checkpoints."""
        start = time.perf_counter()
        values = self.train_per_epoch(epoch) | self.validate()
        self.epoch, self.step_in_epoch = epoch, 0
        improved = self.checkpoints.judge(epoch, values)  # the best so far, compared below
        self.logger.record_scalar("time/epoch_seconds", time.perf_counter() - start)
        for name, value in self.comparison(values).items():
            self.logger.record_scalar(name, value)
        per_step = [name for name in values if name.startswith("train/lr")]  # TensorBoard has train_step/lr
        self.logger.save_curves(epoch, values, self.global_step, csv_only=per_step)
        self.save_checkpoints(improved)
        shown = {name: value for name, value in values.items() if name.count("/") == 1}  # per class: the curves only
        log.info(f"epoch {epoch}/{self.args.epochs}: " + "  ".join(f"{k} {v:.4g}" for k, v in shown.items()))

    def comparison(self, values: dict[str, float]) -> dict[str, float]:
        """What TensorBoard's HPARAMS tab compares runs by, under names every task shares (its
        columns are the first five metric names, sorted; the logger adds `compare/epoch`):
        the best and the latest --monitor value, and val/loss."""
        compared = {"compare/best": self.checkpoints.best, "compare/last": values[self.checkpoints.monitor],
                    "compare/val_loss": values.get("val/loss")}  # absent only where an edited loop stops measuring it
        return {name: value for name, value in compared.items() if value is not None}

    def learning_rates(self) -> dict[str, float]:
        """The rate the next optimizer step trains with (`lr`: --lr's group), and each group's
        when there are several (--backbone_lr_scale, --layer_decay: the head's, each unit's)."""
        groups = self.optimizer.param_groups
        rates = {"lr": groups[-1]["lr"]}
        if len(groups) > 1:
            rates |= {f"lr/{group['name']}": group["lr"] for group in groups}
        return rates

    def train_per_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training set; returns the epoch's exact `train/...` values."""
        self.model.train()
        self.freeze(epoch <= self.args.freeze_epochs)
        meter = Meter(self.partial_epoch)  # the epoch's sums: loss, confusion matrix, ...
        first = self.step_in_epoch  # > 0 only when resuming mid-epoch
        self.train_loader.sampler.set_epoch(epoch, skip=first * self.args.batch_size)
        steps = first + len(self.train_loader)
        bar = ProgressBar(self.train_loader, desc=f"train {epoch}")
        rates = self.learning_rates()  # (set again before each step)
        batches = self.profiler.over(bar, self.global_step) if self.profiler.active else bar  # --profile N
        for i, batch in enumerate(batches, start=first):
            self.task.check_labels(batch["label"], batch["path"])
            if self.mix is not None:  # mixed images; soft targets for the loss, the labels for metrics
                batch["image"], batch["target"] = self.mix(batch["image"], batch["label"])
            rates = self.learning_rates()  # what this step trains with (the schedule moves after it)
            update = (i + 1) % self.args.accum_steps == 0 or i + 1 == steps  # step after N batches
            with gradient_sync(self.model, update):  # DDP averages gradients only when stepping
                out = self.train_step(batch)
                self.scaler.scale(out["loss"] / self.args.accum_steps).backward()
            if update:
                self.optimizer_step()
            self.global_step += 1

            measure(meter, self.task, out)
            if i % self.args.print_freq == 0:  # only then is a value read from the GPU (which waits for it)
                check_finite(out["loss"].item(), epoch, i, self.kept())
                bar.show(loss=meter.local_mean("loss"))
            if i % self.args.log_freq == 0:
                self.logger.record_step({"train_step/loss": out["loss"].detach()} | prefixed("train_step/", rates),
                                        self.global_step)
            if i == 0:
                self.logger.save_imgs({"train/predictions": self.task.pictures(out["image"], out["label"],
                                                                               out["pred"])}, self.global_step)
            if update and i + 1 < steps:  # the epoch's end saves (and stops) after validation
                self.save_mid_epoch_if_due(epoch, i + 1, meter)
        self.partial_epoch = None
        values = prefixed("train/", rates | epoch_results(meter, self.task))  # the rates the last step trained with
        check_finite(values["train/loss"], epoch, steps - 1, self.kept())
        self.check_weights(epoch, steps - 1)  # the epoch's last update may have broken them: not saved, then
        self.logger.record_scalar("time/data_efficiency", bar.efficiency)
        return values

    def freeze(self, frozen: bool) -> None:
        """--freeze_epochs: the backbone frozen (BatchNorm in eval mode) or trained again; under
        torchrun the model is wrapped anew, so DDP shares the gradients of what now trains."""
        if frozen:
            freeze_backbone(self.plain_model, True)  # again each epoch: model.train() woke its BatchNorm
        if frozen != self.frozen:
            if not frozen:
                freeze_backbone(self.plain_model, False)
            self.frozen = frozen
            self.model = rewrap(self.model, self.args.gpus)
            log.info(f"Backbone {'frozen' if frozen else 'trained again'} from epoch {self.epoch + 1}")

    def train_step(self, batch: dict) -> dict:
        """The forward pass and the loss that `backward()` minimises. A training-only term (an
        auxiliary loss, a penalty) is added to `out["loss"]` here; give it its own entry too
        (`out["aux_loss"] = aux`: every 0-d tensor of `out` becomes a curve, train/aux_loss),
        so the curves say what train/loss holds beyond what val/loss measures."""
        return forward(self.model, batch, self.loss_fn, self.args.amp, self.args.channels_last)

    def optimizer_step(self) -> None:
        """Clip (--clip_grad), step, zero the gradients; then the schedule and the average."""
        if self.args.clip_grad:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.args.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def validate(self) -> dict[str, float]:
        """The validation set through `evaluate` (eval.py's loop too): `val/...` values, and
        `val_ema/...` for the averaged weights with --ema_decay."""
        sync_buffers_from_main(self.model)  # under torchrun: every process validates rank 0's weights
        pictures = {}

        def keep_pictures(i: int, out: dict) -> None:
            if i == 0:
                pictures["val/predictions"] = self.task.pictures(out["image"], out["label"], out["pred"])

        def keep_count_pictures(counts: dict[str, Tensor]) -> None:
            count_pictures = getattr(self.task, "count_pictures", None)  # optional: tasks/task.py, TaskPictures
            if count_pictures is not None and self.logger.enabled:  # drawn on rank 0 alone
                pictures.update(prefixed("val/", count_pictures(counts)))

        args, per_class = self.args, len(self.task.class_names) <= PER_CLASS_CURVES
        values = prefixed("val/", evaluate(self.model, self.val_loader, self.task, self.loss_fn, args.amp,
                                           args.channels_last, f"val {self.epoch + 1}", on_batch=keep_pictures,
                                           per_class=per_class, on_counts=keep_count_pictures))
        self.logger.save_imgs(pictures, self.global_step)
        if self.ema is not None:
            sync_buffers_from_main(self.ema)
            values |= prefixed("val_ema/", evaluate(self.ema.module, self.val_loader, self.task, self.loss_fn,
                                                    args.amp, args.channels_last, f"val ema {self.epoch + 1}"))
        return values

    def save_checkpoints(self, improved: bool) -> None:
        """last.pth every epoch, best.pth when --monitor improves, epoch_<N>.pth and the top-k
        (utils/checkpoints.py decides); then, once they are on disk, status.json says how far
        the run is (written by the checkpoint writer's thread)."""
        # Every process: the state gathers their random generators.
        self.checkpoints.save_epoch(self.checkpoint_state(), self.epoch, improved, on_saved=self.progress())

    def progress(self) -> Callable[[], None]:
        """What status.json says of the run's progress now (epoch, step, best), to be written
        once the checkpoint that holds it is on disk."""
        return functools.partial(self.run.progress, self.epoch, self.global_step,
                                 best={self.checkpoints.monitor: self.checkpoints.best},
                                 best_epoch=self.checkpoints.best_epoch)

    def save_mid_epoch_if_due(self, epoch: int, steps_done: int, meter: Meter) -> None:
        """After an optimizer step: save last.pth every --save_every_steps batches, and when
        a stop was asked for (on any process: all stop at this same step), then stop."""
        stop = any_rank(self.run.stop.check())  # a signal, or TRAIN_STOP_FILE
        every = self.args.save_every_steps
        if not stop and not (every and self.global_step - self.saved_at_step >= every):
            return
        self.saved_at_step = self.global_step
        check_finite(meter.local_mean("loss"), epoch, steps_done - 1, self.kept())  # never save diverged weights
        self.check_weights(epoch, steps_done - 1)
        state = self.checkpoint_state() | {"step_in_epoch": steps_done, "partial_epoch": meter.state_dict()}
        self.checkpoints.save_last(state)
        log.info(f"Saved last.pth at epoch {epoch}, step {steps_done}")
        if stop:
            self.checkpoints.wait()
            self.run.stop_now()

    def check_weights(self, epoch: int, step: int) -> None:
        """Before a save: weights that a step made non-finite (nan, inf) are never saved."""
        if not any_rank(not finite_weights(self.model)):
            return
        raise UserError(f"The weights became non-finite (nan or inf) at epoch {epoch}, step {step}, by its "
                        f"update; they were not saved. Try a lower --lr or --clip_grad; {self.kept()}")

    def kept(self) -> str:
        """What a run that diverged keeps, for its message."""
        saved = self.checkpoints.last_saved
        return (f"last.pth, from {saved}, is the last checkpoint saved (its weights are finite)." if saved
                else "no checkpoint was saved before that.")

    def checkpoint_state(self) -> dict:
        """Everything needed to evaluate or to continue exactly: the training's parts (weights,
        optimizer, schedule, scaler, average, random generators), progress, metrics and what
        the run was made from. Plain dicts, tensors and numbers: `torch.load(path)` reads it."""
        return training_state(self.model, self.optimizer, self.scheduler, self.scaler, self.ema) | {
            "epoch": self.epoch,  # epochs completed
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "metrics": self.logger.rows[-1] if self.logger.rows else {},
            "history": self.logger.rows,  # metrics.csv, so a resumed run rewrites it exactly
            "checkpoints": self.checkpoints.state_dict(),  # best so far, top-k, early-stopping counter
            "model_kwargs": self.model_kwargs,
            "loss_kwargs": self.loss_kwargs,
            "class_names": self.task.class_names,
            "task": self.task.name,
            "data": self.data,  # what the lists held: a resumed run must see the same
            "run_id": self.run.run_id,  # which run this checkpoint belongs to
            "args": vars(self.args),
        }

    def resume(self, resume: Resume) -> None:
        """Continue a run from its last.pth (`checkpoint_state()`), exactly where it was."""
        checkpoint = resume.checkpoint
        check_same_data(checkpoint["data"], self.data, resume.path)
        self.epoch, self.global_step = checkpoint["epoch"], checkpoint["global_step"]
        self.step_in_epoch, self.saved_at_step = checkpoint["step_in_epoch"], checkpoint["global_step"]
        self.partial_epoch = checkpoint.get("partial_epoch")  # the sums of every process: Meter gives them to rank 0
        self.checkpoints.resume(checkpoint)  # best so far, top-k; the names to repair once the folder opens
        self.history = checkpoint["history"]
        # Last: it also restores the random generators, which building the model and data drew from.
        load_training_state(checkpoint, resume.path, self.model, self.optimizer, self.scheduler, self.scaler,
                            self.ema)
        log.info(f"Resumed at epoch {self.epoch + 1}, step {self.step_in_epoch} (global step {self.global_step})")


def forward(model: nn.Module, batch: dict, loss_fn: nn.Module, amp: str = "none", channels_last: bool = False) -> dict:
    """The one forward pass, of training, validation and eval.py: the batch onto the model's
    device, its scores and their loss, under --amp's autocast. `batch["target"]`, when there
    (--mixup / --cutmix), is what the loss compares with; the metrics use `label`."""
    device = next(model.parameters()).device
    layout = torch.channels_last if channels_last else torch.preserve_format
    image = batch["image"].to(device, non_blocking=True, memory_format=layout)
    label = batch["label"].to(device, non_blocking=True)
    target = batch["target"].to(device, non_blocking=True) if "target" in batch else label
    with torch.autocast(device.type, dtype=AMP_DTYPES[amp], enabled=AMP_DTYPES[amp] is not None):
        pred = model(image)
        loss = loss_fn(pred, target)
    return {"image": image, "label": label, "pred": pred, "loss": loss}


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, task: Task, loss_fn: nn.Module, amp: str = "none",
             channels_last: bool = False, desc: str = "val", on_batch: Callable[[int, dict], None] | None = None,
             per_class: bool = False, on_counts: Callable[[dict[str, Tensor]], None] | None = None
             ) -> dict[str, float]:
    """Every batch of `loader` once, without gradients: the exact set-wide loss and metrics
    (summed over every process under torchrun). `on_batch(i, out)` sees each batch's outputs
    and paths (eval.py writes them; validation keeps pictures); `on_counts` the set's counts
    (the confusion matrix: its pictures)."""
    model.eval()
    meter = Meter()
    for i, batch in enumerate(ProgressBar(loader, desc)):
        task.check_labels(batch["label"], batch["path"])
        out = forward(model, batch, loss_fn, amp, channels_last)
        measure(meter, task, out)
        if on_batch is not None:
            on_batch(i, out | {"path": batch["path"]})
    return epoch_results(meter, task, per_class, on_counts)


def measure(meter: Meter, task: Task, out: dict) -> None:
    """One batch into the epoch's meter: the mean of every 0-d tensor of `out` (the loss, and
    any term a train_step adds), and the task's counts."""
    n = len(out["label"])
    for name, value in out.items():
        if isinstance(value, Tensor) and value.ndim == 0:
            meter.add_mean(name, value, n)
    task.measure(meter, out["pred"].detach(), out["label"])


def epoch_results(meter: Meter, task: Task, per_class: bool = False,
                  on_counts: Callable[[dict[str, Tensor]], None] | None = None) -> dict[str, float]:
    """The epoch's values: its means (loss, ...) and the task's metrics from its counts
    (handed to `on_counts` too)."""
    means, counts = meter.results()
    if on_counts is not None:
        on_counts(counts)
    return means | task.results(counts, per_class)


def prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {prefix + name: value for name, value in values.items()}


def main(argv: list[str] | None = None) -> int:
    """Entry point. Exit codes: 0 done, 2 bad input (one message), 128 + signal number when
    stopped by Ctrl-C / SIGTERM / SIGUSR1 (saved; the resume command is printed)."""
    argv = sys.argv[1:] if argv is None else argv
    args, resume = parse_train_args(argv)  # bad flags end here, with exit code 2
    start_process()  # joins torchrun's processes; freed host memory is kept for reuse
    setup_logging(is_main_process())  # on the screen now; into log.txt once the folder exists
    run = RunDir.for_training(args, resume)

    def train() -> dict:
        trainer = Trainer(args, resume)  # bad data or model end here, before the folder exists
        run.open(args, "train.py", argv, resumed=resume.record() if resume else None,  # logs `Run directory:`
                 info={"model": trainer.summary})
        trainer.train(run)
        return trainer.checkpoints.report(trainer.epoch, kept=not run.temporary)  # the best epoch; stopped early?

    return run.report(train, args.debug)


if __name__ == "__main__":
    sys.exit(main())
