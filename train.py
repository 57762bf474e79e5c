"""Train a model: `python train.py [flags]` (flags: options.py or `python train.py -h`).

Read `Trainer` top to bottom: __init__ builds everything, `train` runs the epochs, and the
per-batch work sits in `train_per_epoch` (forward, backward, optimizer step, in plain
sight). To change what a batch does, edit `step`; what is measured, `compute_metrics`;
what is drawn, `gen_imgs_to_write`.
"""

import logging
import math
import shlex
import signal
import sys
import time
from argparse import Namespace
from pathlib import Path

import torch

from data.data_entry import select_eval_loader, select_train_loader
from metrics import ConfusionMeter
from model.model_entry import equip_multi_gpu, select_model
from options import prepare_train_args
from tasks import select_task
from utils.distributed import (
    any_rank,
    cleanup_distributed,
    gather_to_main,
    gradient_sync,
    is_main_process,
    rank,
    sync_buffers_from_main,
    world_size,
)
from utils.errors import UserError
from utils.logger import Logger, Recorder
from utils.progress import ProgressBar
from utils.run_dir import launcher
from utils.run_status import RunStatus
from utils.stop_signals import StopRequested, StopSignals
from utils.torch_utils import (
    AMP_DTYPES,
    load_state_into,
    load_weights,
    make_deterministic,
    memory_format,
    model_state,
    read_checkpoint,
    rng_state,
    select_device,
    set_rng_state,
    set_seed,
    speed_up,
    unwrap_model,
)

log = logging.getLogger(__name__)


class Trainer:
    """One training run: data, model, optimizer, and the loop that ties them together."""

    def __init__(self, args: Namespace) -> None:
        self.args = args
        set_seed(args.seed)
        if args.deterministic:
            make_deterministic()
        self.device = select_device(args.gpus)
        torch.backends.cudnn.benchmark = not args.deterministic  # cuDNN picks the fastest kernels
        self.train_loader = select_train_loader(args)
        self.val_loader = select_eval_loader(args)
        data = self.train_loader.dataset
        self.class_names, self.task_name = data.class_names, data.task
        # The task (tasks.py) supplies the loss, label checks, metrics and pictures.
        self.task = select_task(data.task, data.num_classes, data.class_names, args.ignore_index)
        self.model_kwargs = {"num_classes": data.num_classes, "in_channels": data.in_channels}
        model = select_model(args, **self.model_kwargs)
        if args.load_model_path:
            load_weights(model, args.load_model_path, strict=not args.load_not_strict)
        model = speed_up(model.to(self.device), args.channels_last, args.compile)
        self.model = equip_multi_gpu(model, args)
        self.loss_fn = self.task.loss(args.loss)
        self.optimizer = build_optimizer(self.model, args)
        self.scheduler = build_scheduler(self.optimizer, args)
        # Mixed precision: autocast in `step`; fp16 also scales the loss so gradients do not underflow.
        self.amp_dtype = AMP_DTYPES[args.amp]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=args.amp == "fp16")
        # best.pth follows --monitor, by default the task's main validation metric.
        self.monitor = args.monitor or f"val/{self.task.main_metric}"
        self.monitor_mode = args.monitor_mode or ("min" if "loss" in self.monitor else "max")
        # Progress: epochs completed, batches done in the next one (after a mid-epoch save).
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.saved_at_step = 0  # global step of the last mid-epoch save (--save_every_steps)
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.partial_epoch: dict = {}  # the epoch's sums so far, from a mid-epoch checkpoint
        history = self.resume(read_checkpoint(args.resume)) if args.resume else None
        self.logger = Logger(Path(args.run_dir), history, self.global_step, enabled=is_main_process())
        self.status = RunStatus(args.run_dir, enabled=is_main_process())
        self.stop = StopSignals()
        log.info(f"{args.model_type} ({count_parameters(model):,} parameters) on {self.device} "
                 f"x {world_size()} process(es); {len(data)} training and "
                 f"{len(self.val_loader.dataset)} validation samples")

    def train(self) -> None:
        """Run the remaining epochs: train, validate, write curves and checkpoints. Ctrl-C or
        SIGTERM saves and stops after the current step (see utils/stop_signals.py)."""
        with self.stop:
            for epoch in range(self.epoch + 1, self.args.epochs + 1):
                start = time.perf_counter()
                values = {"train/lr": self.optimizer.param_groups[0]["lr"]}
                values.update(self.train_per_epoch(epoch))
                values.update(self.val_per_epoch(epoch))
                if self.scheduler is not None:
                    self.scheduler.step()
                self.epoch, self.step_in_epoch = epoch, 0
                for name, value in values.items():
                    self.logger.record_scalar(name, value)
                self.logger.record_scalar("time/epoch_seconds", time.perf_counter() - start)
                self.logger.save_curves(epoch)
                self.save_checkpoints(values)
                log.info(f"epoch {epoch}/{self.args.epochs}: " + "  ".join(f"{k} {v:.4g}" for k, v in values.items()))
                if any_rank(self.stop.requested) and epoch < self.args.epochs:  # the last epoch just finishes
                    raise StopRequested(self.stop.signal_number or signal.SIGTERM)
        self.logger.save_hparams(vars(self.args), {f"best/{self.monitor}": self.best_metric})
        log.info(f"Best {self.monitor} {self.best_metric:.4g} at epoch {self.best_epoch}; "
                 f"checkpoints in {self.args.run_dir}")
        self.logger.close()

    def train_per_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training set; returns the epoch's exact `train/...` values."""
        self.model.train()
        recorder = Recorder(self.partial_epoch.get("recorder"))  # batch means: loss, ...
        meter = self.task.meter(self.partial_epoch.get("confusion"))  # counts: accuracy, IoU
        first = self.step_in_epoch  # > 0 only when resuming mid-epoch
        self.train_loader.sampler.set_epoch(epoch, skip=first * self.args.batch_size)
        steps = first + len(self.train_loader)
        bar = ProgressBar(self.train_loader, desc=f"train {epoch}", prefetch=self.args.num_workers > 0)
        for i, batch in enumerate(bar, start=first):
            self.task.check_labels(batch["label"], batch["path"])
            update = (i + 1) % self.args.accum_steps == 0 or i + 1 == steps  # step after N batches
            with gradient_sync(self.model, update):  # DDP averages gradients only when stepping
                out = self.step(batch)
                self.scaler.scale(out["loss"] / self.args.accum_steps).backward()
            if update:
                if self.args.clip_grad:
                    self.scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.args.clip_grad)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
            self.global_step += 1

            metrics = self.compute_metrics(out, is_train=True)
            recorder.record(metrics, n=len(out["label"]))
            meter.update(out["pred"].detach().argmax(1), out["label"])
            self.report_step(bar, metrics, epoch, i)
            if i == 0:
                self.logger.save_imgs(self.gen_imgs_to_write(out, is_train=True), epoch)
            if update and i + 1 < steps:  # the epoch's end saves (and stops) after validation
                self.save_mid_epoch_if_due(epoch, i + 1, recorder, meter)
        self.partial_epoch = {}
        summary = recorder.summary("train/") | prefixed("train/", self.task.results(meter.counts(), per_class=False))
        check_finite(summary["train/loss"], epoch, steps - 1)
        self.logger.record_scalar("time/data_efficiency", bar.efficiency)
        return summary

    def report_step(self, bar: ProgressBar, metrics: dict[str, torch.Tensor], epoch: int, i: int) -> None:
        """The loss on the bar every --print_freq steps, per-step curves every --log_freq.
        Only then is a value read from the GPU (which waits for it)."""
        if i % self.args.print_freq == 0:
            loss = metrics["loss"].item()
            check_finite(loss, epoch, i)
            bar.show(loss=loss)
        if i % self.args.log_freq == 0:
            lr = self.optimizer.param_groups[0]["lr"]
            self.logger.record_step({"train_step/loss": metrics["loss"], "train_step/lr": lr}, self.global_step)

    @torch.no_grad()
    def val_per_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the validation set, no gradients; returns exact `val/...` values."""
        self.model.eval()
        sync_buffers_from_main(self.model)  # under torchrun: every process validates rank 0's weights
        recorder, meter = Recorder(), self.task.meter()
        for i, batch in enumerate(ProgressBar(self.val_loader, f"val {epoch}", prefetch=self.args.num_workers > 0)):
            self.task.check_labels(batch["label"], batch["path"])
            out = self.step(batch)
            recorder.record(self.compute_metrics(out, is_train=False), n=len(out["label"]))
            meter.update(out["pred"].argmax(1), out["label"])
            if i == 0:
                self.logger.save_imgs(self.gen_imgs_to_write(out, is_train=False), epoch)
        return recorder.summary("val/") | prefixed("val/", self.task.results(meter.counts(), per_class=False))

    def step(self, batch: dict) -> dict:
        """Forward one batch and compute its loss; returns what metrics and pictures need."""
        image = batch["image"].to(self.device, non_blocking=True, memory_format=memory_format(self.args.channels_last))
        label = batch["label"].to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            pred = self.model(image)
            self.task.check_output(pred, self.args.model_type)  # a clear error for a model of the wrong kind
            loss = self.loss_fn(pred, label)
        return {"image": image, "label": label, "pred": pred, "loss": loss}

    def compute_metrics(self, out: dict, is_train: bool) -> dict[str, torch.Tensor]:
        """Batch means (0-d tensors, no sync) that the Recorder turns into exact epoch values.
        Accuracy and IoU are counted separately, in the task's confusion matrix."""
        return {"loss": out["loss"].detach(), **self.task.batch_metrics(out["pred"].detach(), out["label"])}

    def gen_imgs_to_write(self, out: dict, is_train: bool) -> dict[str, torch.Tensor]:
        """Pictures of the first batch for TensorBoard (classification: framed right / wrong;
        segmentation: input | prediction | ground truth)."""
        prefix = "train" if is_train else "val"
        return {f"{prefix}/predictions": self.task.pictures(out["image"], out["label"], out["pred"])}

    def save_checkpoints(self, values: dict[str, float]) -> None:
        """last.pth every epoch, best.pth when --monitor improves, epoch_<N>.pth every --save_freq."""
        if self.monitor not in values:
            raise UserError(f"--monitor {self.monitor} is not a recorded value; recorded: "
                            f"{', '.join(sorted(values))}.")
        current = values[self.monitor]
        improved = self.best_metric is None or (
            current > self.best_metric if self.monitor_mode == "max" else current < self.best_metric)
        if improved:
            self.best_metric, self.best_epoch = current, self.epoch
        self.status.progress(self.epoch, self.global_step, best={self.monitor: self.best_metric},
                             best_epoch=self.best_epoch)
        state = self.checkpoint_state()  # on every process: it gathers their random states
        self.logger.save_checkpoint(state, "last.pth")  # the Logger writes on rank 0 only
        if improved:
            self.logger.save_checkpoint(state, "best.pth")
        if self.epoch % self.args.save_freq == 0:
            self.logger.save_checkpoint(state, f"epoch_{self.epoch}.pth")

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
        partial = {"recorder": recorder.state_dict(), "confusion": meter.counts()}
        state.update(step_in_epoch=steps_done, partial_epoch=partial)
        self.logger.save_checkpoint(state, "last.pth")
        log.info(f"Saved last.pth at epoch {epoch}, step {steps_done}")
        if stop:
            raise StopRequested(self.stop.signal_number or signal.SIGTERM)

    def checkpoint_state(self) -> dict:
        """Everything needed to evaluate or to continue exactly: plain dicts, tensors and
        numbers only, so `torch.load(path)` (weights_only=True) reads it."""
        return {
            "model": unwrap_model(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,  # epochs completed
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "metrics": self.logger.rows[-1] if self.logger.rows else {},
            "history": self.logger.rows,  # metrics.csv, so a resumed run rewrites it exactly
            "monitor": self.monitor,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "rng": gather_to_main([rng_state()]),  # one per process, in rank order
            "world_size": world_size(),  # resuming needs the same number of processes
            "model_kwargs": self.model_kwargs,
            "class_names": self.class_names,
            "task": self.task_name,
            "args": vars(self.args),
        }

    def resume(self, checkpoint: dict) -> list[dict[str, float]]:
        """Restore a run from `checkpoint_state()`; returns the metrics.csv rows so far."""
        load_state_into(self.model, model_state(checkpoint), strict=True, source=self.args.resume)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
            if getattr(self.scheduler, "T_max", self.args.epochs) != self.args.epochs:
                log.warning(f"--epochs is now {self.args.epochs}, but the resumed cosine schedule runs over "
                            f"{self.scheduler.T_max} epochs; past them the learning rate rises again.")
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.epoch, self.global_step = checkpoint["epoch"], checkpoint["global_step"]
        self.saved_at_step = self.global_step
        self.step_in_epoch = checkpoint["step_in_epoch"]
        # The epoch's sums so far cover all processes: rank 0 alone continues from them.
        self.partial_epoch = checkpoint.get("partial_epoch") or {} if is_main_process() else {}
        self.best_metric, self.best_epoch = checkpoint["best_metric"], checkpoint["best_epoch"]
        set_rng_state(checkpoint["rng"][rank()])  # last: building the model above drew random numbers
        log.info(f"Resumed at epoch {self.epoch + 1}, step {self.step_in_epoch} (global step {self.global_step})")
        return checkpoint["history"]


def build_optimizer(model: torch.nn.Module, args: Namespace) -> torch.optim.Optimizer:
    """--optimizer with --lr, --momentum (SGD momentum / Adam beta1), --beta, --weight_decay."""
    params = model.parameters()
    if args.optimizer == "sgd":
        return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    optimizer = torch.optim.AdamW if args.optimizer == "adamw" else torch.optim.Adam
    return optimizer(params, lr=args.lr, betas=(args.momentum, args.beta), weight_decay=args.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, args: Namespace) -> torch.optim.lr_scheduler.LRScheduler | None:
    """--scheduler: none, step (every --lr_step_size epochs times --lr_gamma) or cosine to zero."""
    if args.scheduler == "step":
        step_size = args.lr_step_size or max(1, args.epochs // 3)
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=args.lr_gamma)
    if args.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    return None


def prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {prefix + name: value for name, value in values.items()}


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_finite(loss: float, epoch: int, step: int) -> None:
    """Stop at the first NaN/inf loss instead of training on garbage; last.pth stays as it was."""
    if not math.isfinite(loss):
        raise UserError(f"The loss became {loss} at epoch {epoch}, step {step}. Try a lower --lr; "
                        "the last good checkpoint (last.pth) is kept.")


def main(argv: list[str] | None = None) -> int:
    """Entry point. Exit codes: 0 done, 2 bad input (one message), 128 + signal number when
    stopped by Ctrl-C / SIGTERM (saved; the resume command is printed)."""
    args = prepare_train_args(argv)  # bad flags end here, with exit code 2
    status = RunStatus(args.run_dir, enabled=is_main_process())
    trainer = None
    try:
        trainer = Trainer(args)
        trainer.train()
    except StopRequested as stop:
        return stopped(args, status, stop.signal_number)
    except UserError as error:
        status.failed(error)
        if args.debug:
            raise
        log.error(f"error: {error}")
        return 2
    except BaseException as error:
        if trainer is not None and trainer.stop.requested:  # e.g. SIGTERM also killed the data workers
            return stopped(args, status, trainer.stop.signal_number)
        status.failed(error)  # a bug, or a second Ctrl-C: recorded, then shown in full
        raise
    finally:
        cleanup_distributed()
    status.finished()
    return 0


def stopped(args: Namespace, status: RunStatus, signal_number: int) -> int:
    """Record and report a stop by signal; the exit code is 128 + the signal number."""
    name = signal.Signals(signal_number).name
    command = shlex.join([*launcher(), "train.py", "--resume", args.run_dir])
    status.interrupted(f"stopped by {name}", command)
    log.error(f"Stopped by {name}; resume from the last saved checkpoint with:\n  {command}")
    return 128 + signal_number


if __name__ == "__main__":
    sys.exit(main())
