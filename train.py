"""Train a model: `python train.py [flags]` (flags: options.py, or `python train.py -h`).

Read `Trainer` top to bottom: __init__ builds everything and checks it (bad input ends
there, before the run directory exists), `train` runs the epochs, `train_per_epoch` holds
the batch loop with the forward pass, `loss.backward()` and `optimizer.step()` in plain
sight, and `val_per_epoch` validates with eval.py's `Evaluator`, whose `step` is the one
forward pass. What a checkpoint holds and how a run resumes: `checkpoint_state` / `resume`;
which checkpoints are kept, and early stopping: utils/checkpoints.py.
"""

import logging
import math
import shlex
import shutil
import signal
import sys
import tempfile
import time
from argparse import Namespace

import torch
from torch.utils.data import Dataset

from data.augment import batch_mix, check_augment
from data.data_entry import (
    augment_of,
    check_same_data,
    describe_data,
    select_eval_loader,
    select_train_loader,
    training_sets,
)
from eval import Evaluator
from metrics import ConfusionMeter, predicted_class
from model.model_entry import check_model_fits, equip_multi_gpu, model_kwargs, select_model
from options import Resume, parse_train_args
from tasks import select_task
from utils.checkpoints import CheckpointKeeper, CheckpointWriter
from utils.distributed import (
    any_rank,
    cleanup_distributed,
    gradient_sync,
    init_distributed,
    is_main_process,
    sync_buffers_from_main,
    world_size,
)
from utils.ema import EmaModel
from utils.errors import UserError
from utils.host_memory import keep_freed_memory
from utils.logger import Logger, Recorder, setup_logging
from utils.optim import build_optimizer, build_scheduler
from utils.progress import ProgressBar
from utils.run_dir import RunDir, experiment_dir, launcher, run_dir_name
from utils.stop_signals import StopRequested, StopSignals
from utils.torch_utils import (
    load_weights,
    make_deterministic,
    select_device,
    set_seed,
    speed_up,
    unwrap_model,
)
from utils.training_state import TrainingState

log = logging.getLogger(__name__)


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
        val_loader = select_eval_loader(args, val_set, args.limit_val_batches)
        # The task (tasks.py) supplies the loss, label checks, metrics and pictures.
        self.task = select_task(train_set.task, train_set.num_classes, train_set.class_names, args.ignore_index)
        check_augment(augment_of(args), train_set.task)
        model = self.build_model(train_set, val_set[0]["image"])
        self.model = equip_multi_gpu(speed_up(model, args.channels_last, args.compile), args.gpus)
        # --ema_decay: a running average of the weights (its decay ramps up), validated beside them (val_ema/...).
        self.ema = EmaModel(model, args.ema_decay) if args.ema_decay else None
        self.mix = batch_mix(augment_of(args), train_set.num_classes)  # --mixup / --cutmix
        self.build_optimization()
        self.state = TrainingState(self.model, self.optimizer, self.scheduler, self.scaler, self.ema)
        loss_fn = self.task.loss(args.loss, args.label_smoothing)
        self.evaluator = Evaluator(self.model, val_loader, self.task, loss_fn, self.device, args.amp,
                                   args.channels_last)
        self.ema_evaluator = Evaluator(self.ema.module, val_loader, self.task, loss_fn, self.device, args.amp,
                                       args.channels_last) if self.ema else None
        monitor = args.monitor or f"val/{self.task.main_metric}"
        self.checkpoints = CheckpointKeeper(monitor, args.monitor_mode or ("min" if "loss" in monitor else "max"),
                                            args.save_freq, args.save_top_k, args.patience, args.min_delta)
        # Progress: epochs completed, batches done in the next one (after a mid-epoch save).
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.saved_at_step = 0  # global step of the last mid-epoch save (--save_every_steps)
        self.partial_epoch: dict = {}  # the epoch's sums so far, from a mid-epoch checkpoint
        self.history: list[dict[str, float]] | None = None  # metrics.csv rows of a resumed run
        self.stop = StopSignals()
        if resume is not None:
            self.resume(resume)
        log.info(f"{args.model_type} ({sum(p.numel() for p in model.parameters()):,} parameters) on {self.device} "
                 f"x {world_size()} process(es); {len(train_set)} training and {len(val_set)} validation samples")

    def build_model(self, data: Dataset, sample: torch.Tensor) -> torch.nn.Module:
        """--model_type sized for the data, with --load_model_path's weights, and tried on a real
        sample: a model that cannot take the data fails here, before anything is written."""
        self.model_kwargs = model_kwargs(self.args, data.num_classes, data.in_channels)
        model = select_model(self.args, self.model_kwargs).to(self.device)
        if self.args.load_model_path:
            load_weights(model, self.args.load_model_path, strict=not self.args.load_not_strict)
        check_model_fits(model, sample, self.task.check_output, self.args.model_type)
        return model

    def build_optimization(self) -> None:
        """The optimizer, its schedule over every optimizer step (--warmup_epochs, then
        --scheduler) and, for --amp fp16, the loss scaler that keeps gradients from underflowing."""
        args = self.args
        self.optimizer = build_optimizer(self.model.parameters(), args.optimizer, args.lr, args.momentum, args.beta,
                                         args.weight_decay)
        steps_per_epoch = math.ceil(len(self.train_loader) / args.accum_steps)
        step_epochs = args.lr_step_size or max(1, args.epochs // 3)
        self.scheduler = build_scheduler(self.optimizer, args.scheduler, args.epochs, steps_per_epoch,
                                         args.warmup_epochs, args.min_lr, step_epochs, args.lr_gamma)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=args.amp == "fp16")

    def train(self, run: RunDir) -> None:
        """Run the remaining epochs into `run`: train, validate, write curves and checkpoints.
        Ctrl-C, SIGTERM or SIGUSR1 saves and stops after the current step."""
        self.run = run
        self.logger = Logger(run.path, self.history, self.global_step, enabled=run.writer)
        self.writer = CheckpointWriter(run.path, enabled=run.writer)
        self.checkpoints.remove_stale_top_files(self.writer)
        with self.stop:
            try:
                for epoch in range(self.epoch + 1, self.args.epochs + 1):
                    self.run_epoch(epoch)
                    if self.checkpoints.stop_early:
                        break
                    if any_rank(self.stop.requested) and epoch < self.args.epochs:  # the last epoch just finishes
                        raise StopRequested(self.stop.signal_number or signal.SIGTERM)
            finally:
                self.writer.wait()  # every checkpoint is on disk before the run ends, however it ends
        self.logger.save_hparams(vars(self.args), {f"best/{self.checkpoints.monitor}": self.checkpoints.best},
                                 self.global_step)
        self.logger.close()

    def run_epoch(self, epoch: int) -> None:
        """Train and validate one epoch; write its curves, metrics.csv row and checkpoints."""
        start = time.perf_counter()
        values = self.train_per_epoch(epoch) | self.val_per_epoch(epoch)
        self.epoch, self.step_in_epoch = epoch, 0
        self.logger.record_scalar("time/epoch_seconds", time.perf_counter() - start)
        self.logger.save_curves(epoch, values, self.global_step)
        self.save_checkpoints(values)
        log.info(f"epoch {epoch}/{self.args.epochs}: " + "  ".join(f"{k} {v:.4g}" for k, v in values.items()))

    def train_per_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training set; returns the epoch's exact `train/...` values."""
        self.model.train()
        recorder = Recorder(self.partial_epoch.get("recorder"))  # batch means: loss, ...
        meter = self.task.meter(self.partial_epoch.get("confusion"))  # counts: accuracy, IoU
        first = self.step_in_epoch  # > 0 only when resuming mid-epoch
        self.train_loader.sampler.set_epoch(epoch, skip=first * self.args.batch_size)
        steps = first + len(self.train_loader)
        bar = ProgressBar(self.train_loader, desc=f"train {epoch}")
        for i, batch in enumerate(bar, start=first):
            self.task.check_labels(batch["label"], batch["path"])
            if self.mix is not None:  # mixed images; soft targets for the loss, the labels for metrics
                batch["image"], batch["target"] = self.mix(batch["image"], batch["label"])
            lr = self.optimizer.param_groups[0]["lr"]  # what this step trains with (the schedule moves after it)
            update = (i + 1) % self.args.accum_steps == 0 or i + 1 == steps  # step after N batches
            with gradient_sync(self.model, update):  # DDP averages gradients only when stepping
                out = self.evaluator.step(batch)  # the forward pass and its loss
                self.scaler.scale(out["loss"] / self.args.accum_steps).backward()
            if update:
                self.optimizer_step()
            self.global_step += 1

            metrics = self.evaluator.compute_metrics(out)
            recorder.record(metrics, n=len(out["label"]))
            meter.update(predicted_class(out["pred"].detach()), out["label"])
            self.report_step(bar, metrics, recorder, epoch, i, lr)
            if i == 0:
                self.logger.save_imgs(self.evaluator.gen_imgs_to_write(out, "train"), self.global_step)
            if update and i + 1 < steps:  # the epoch's end saves (and stops) after validation
                self.save_mid_epoch_if_due(epoch, i + 1, recorder, meter)
        self.partial_epoch = {}
        summary = {"train/lr": self.optimizer.param_groups[0]["lr"]}  # where the schedule ended the epoch
        summary |= recorder.summary("train/") | prefixed("train/", self.task.results(meter.counts(), per_class=False))
        check_finite(summary["train/loss"], epoch, steps - 1)
        self.logger.record_scalar("time/data_efficiency", bar.efficiency)
        return summary

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
            self.ema.update_parameters(unwrap_model(self.model))

    def report_step(self, bar: ProgressBar, metrics: dict[str, torch.Tensor], recorder: Recorder, epoch: int,
                    i: int, lr: float) -> None:
        """The epoch's running loss on the bar every --print_freq steps, per-step curves every
        --log_freq. Only then is a value read from the GPU (which waits for it)."""
        if i % self.args.print_freq == 0:
            check_finite(metrics["loss"].item(), epoch, i)
            bar.show(loss=recorder.local_mean("loss"))
        if i % self.args.log_freq == 0:
            self.logger.record_step({"train_step/loss": metrics["loss"], "train_step/lr": lr}, self.global_step)

    def val_per_epoch(self, epoch: int) -> dict[str, float]:
        """The validation set through the Evaluator (eval.py's loop): `val/...` values, and
        `val_ema/...` for the averaged weights with --ema_decay."""
        sync_buffers_from_main(self.model)  # under torchrun: every process validates rank 0's weights
        pictures = {}

        def keep_pictures(i: int, out: dict) -> None:
            if i == 0:
                pictures.update(self.evaluator.gen_imgs_to_write(out, "val"))

        values = prefixed("val/", self.evaluator.eval(f"val {epoch}", on_batch=keep_pictures))
        self.logger.save_imgs(pictures, self.global_step)
        if self.ema_evaluator is not None:
            sync_buffers_from_main(self.ema)
            values |= prefixed("val_ema/", self.ema_evaluator.eval(f"val ema {epoch}"))
        return values

    def save_checkpoints(self, values: dict[str, float]) -> None:
        """last.pth every epoch, best.pth when --monitor improves, epoch_<N>.pth and the top-k
        (utils/checkpoints.py decides); status.json says how far the run is."""
        improved = self.checkpoints.judge(self.epoch, values)
        keeper = self.checkpoints
        self.run.status.progress(self.epoch, self.global_step, best={keeper.monitor: keeper.best},
                                 best_epoch=keeper.best_epoch)
        names, stale = keeper.files_for(self.epoch, improved)
        self.writer.submit(self.checkpoint_state(), names, stale)  # on every process: it gathers random states

    def save_mid_epoch_if_due(self, epoch: int, steps_done: int, recorder: Recorder, meter: ConfusionMeter) -> None:
        """After an optimizer step: save last.pth every --save_every_steps batches, and when
        a stop was asked for (on any process: all stop at this same step), then stop."""
        stop = any_rank(self.stop.requested)
        every = self.args.save_every_steps
        if not stop and not (every and self.global_step - self.saved_at_step >= every):
            return
        self.saved_at_step = self.global_step
        check_finite(recorder.summary()["loss"], epoch, steps_done - 1)  # never save diverged weights
        state = self.checkpoint_state()
        state.update(step_in_epoch=steps_done, partial_epoch={"recorder": recorder.state_dict(),
                                                              "confusion": meter.counts()})
        self.writer.submit(state, ["last.pth"])
        log.info(f"Saved last.pth at epoch {epoch}, step {steps_done}")
        if stop:
            self.writer.wait()
            raise StopRequested(self.stop.signal_number or signal.SIGTERM)

    def checkpoint_state(self) -> dict:
        """Everything needed to evaluate or to continue exactly (utils/training_state.py), with
        the run's progress, metrics and what it was made from."""
        return self.state.state_dict() | {
            "epoch": self.epoch,  # epochs completed
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "metrics": self.logger.rows[-1] if self.logger.rows else {},
            "history": self.logger.rows,  # metrics.csv, so a resumed run rewrites it exactly
            "checkpoints": self.checkpoints.state_dict(),  # best so far, top-k, early-stopping counter
            "world_size": world_size(),  # resuming needs the same number of processes
            "model_kwargs": self.model_kwargs,
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
        # The epoch's sums so far cover all processes: rank 0 alone continues from them.
        self.partial_epoch = checkpoint.get("partial_epoch") or {} if is_main_process() else {}
        self.checkpoints.load_state_dict(checkpoint["checkpoints"])
        self.history = checkpoint["history"]
        self.state.load_state_dict(checkpoint, resume.path)  # last: it also restores the random generators
        log.info(f"Resumed at epoch {self.epoch + 1}, step {self.step_in_epoch} (global step {self.global_step})")


def prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {prefix + name: value for name, value in values.items()}


def check_finite(loss: float, epoch: int, step: int) -> None:
    """Stop at the first NaN/inf loss instead of training on garbage; last.pth stays as it was."""
    if not math.isfinite(loss):
        raise UserError(f"The loss became {loss} at epoch {epoch}, step {step}. Try a lower --lr; "
                        "the last good checkpoint (last.pth) is kept.")


def run_folder(args: Namespace, resume: Resume | None) -> RunDir:
    """The run's folder: the resumed one, a new one in --checkpoints_dir (or its --exp folder),
    or, for --fast_dev_run, a temporary one that main() removes."""
    if resume is not None:
        return RunDir.existing(resume.path.parent)
    parent = tempfile.mkdtemp(prefix="fast_dev_run-") if args.fast_dev_run else experiment_dir(args.checkpoints_dir,
                                                                                               args.exp)
    return RunDir.new(parent, run_dir_name(args.model_type, args.save_prefix))


def main(argv: list[str] | None = None) -> int:
    """Entry point. Exit codes: 0 done, 2 bad input (one message), 128 + signal number when
    stopped by Ctrl-C / SIGTERM / SIGUSR1 (saved; the resume command is printed)."""
    argv = sys.argv[1:] if argv is None else argv
    args, resume = parse_train_args(argv)  # bad flags end here, with exit code 2
    keep_freed_memory()  # CPU steps reuse freed memory instead of faulting it in again
    init_distributed()  # under torchrun: join the other processes (no-op otherwise)
    setup_logging(is_main_process())  # on the screen now; into log.txt once the folder exists
    run = run_folder(args, resume)
    trainer = None
    try:
        trainer = Trainer(args, resume)  # bad data or model end here, before the folder exists
        run.open(args, "train.py", argv, resumed=resume.record() if resume else None)
        log.info(f"Run directory: {run.path}")
        trainer.train(run)
        finished(run, trainer)
    except StopRequested as stop:
        return stopped(run, stop.signal_number)
    except UserError as error:
        run.status.failed(error)
        if args.debug:
            raise
        log.error(f"error: {error}")
        return 2
    except BaseException as error:
        if trainer is not None and trainer.stop.requested:  # e.g. SIGTERM also killed the data workers
            return stopped(run, trainer.stop.signal_number)
        run.status.failed(error)  # a bug, or a second Ctrl-C: recorded, then shown in full
        raise
    finally:
        run.close()  # the lock, and log.txt
        cleanup_distributed()
        if args.fast_dev_run:  # nothing is kept, whatever happened
            shutil.rmtree(run.path.parent, ignore_errors=True)
    return 0


def finished(run: RunDir, trainer: Trainer) -> None:
    """Mark the run finished, saying when it stopped early (--patience)."""
    keeper = trainer.checkpoints
    if trainer.args.fast_dev_run:
        log.info("fast_dev_run: one training and one validation batch ran; nothing is kept.")
    elif keeper.stop_early:
        log.info(f"Stopped early after epoch {trainer.epoch}: {keeper.monitor} did not improve for "
                 f"{keeper.patience} epochs (best {keeper.best:.4g} at epoch {keeper.best_epoch}).")
        run.status.finished(stopped_early={"epoch": trainer.epoch, "best_epoch": keeper.best_epoch})
    else:
        run.status.finished()
    log.info(f"Best {keeper.monitor} {keeper.best:.4g} at epoch {keeper.best_epoch}; checkpoints in {run.path}")


def stopped(run: RunDir, signal_number: int) -> int:
    """Record and report a stop by signal; the exit code is 128 + the signal number."""
    name = signal.Signals(signal_number).name
    command = shlex.join([*launcher(), "train.py", "--resume", str(run.path)])
    run.status.interrupted(f"stopped by {name}", command)
    log.error(f"Stopped by {name}; resume from the last saved checkpoint with:\n  {command}")
    return 128 + signal_number


if __name__ == "__main__":
    sys.exit(main())
