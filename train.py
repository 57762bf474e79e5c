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
from loss import build_loss
from metrics import accuracy
from model.model_entry import equip_multi_gpu, select_model
from options import prepare_train_args
from utils.errors import UserError
from utils.logger import Logger, Recorder
from utils.progress import ProgressBar
from utils.run_status import RunStatus
from utils.stop_signals import StopRequested, StopSignals
from utils.torch_utils import (
    load_state_into,
    load_weights,
    make_deterministic,
    model_state,
    read_checkpoint,
    rng_state,
    select_device,
    set_rng_state,
    set_seed,
    unwrap_model,
)
from utils.viz import classification_grid

log = logging.getLogger(__name__)


class Trainer:
    """One training run: data, model, optimizer, and the loop that ties them together."""

    def __init__(self, args: Namespace) -> None:
        self.args = args
        set_seed(args.seed)
        if args.deterministic:
            make_deterministic()
        self.device = select_device(args.gpus)
        self.train_loader = select_train_loader(args)
        self.val_loader = select_eval_loader(args)
        data = self.train_loader.dataset
        self.class_names = data.class_names
        self.model_kwargs = {"num_classes": data.num_classes, "in_channels": data.in_channels}
        model = select_model(args, **self.model_kwargs)
        if args.load_model_path:
            load_weights(model, args.load_model_path, strict=not args.load_not_strict)
        self.model = equip_multi_gpu(model.to(self.device), args)
        self.loss_fn = build_loss(args.loss)
        self.optimizer = build_optimizer(self.model, args)
        self.scheduler = build_scheduler(self.optimizer, args)
        # Progress: epochs completed, batches done in the next one (after a mid-epoch save).
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.partial_epoch: dict | None = None  # Recorder sums of a mid-epoch checkpoint
        history = self.resume(read_checkpoint(args.resume)) if args.resume else None
        self.logger = Logger(Path(args.run_dir), history)
        self.stop = StopSignals()
        log.info(f"{args.model_type} ({count_parameters(model):,} parameters) on {self.device}; "
                 f"{len(data)} training and {len(self.val_loader.dataset)} validation samples")

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
                self.stop.check()
        self.logger.save_hparams(vars(self.args), {f"best/{self.args.monitor}": self.best_metric})
        log.info(f"Best {self.args.monitor} {self.best_metric:.4g} at epoch {self.best_epoch}; "
                 f"checkpoints in {self.args.run_dir}")
        self.logger.close()

    def train_per_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training set; returns the epoch's exact `train/...` values."""
        self.model.train()
        recorder = Recorder(self.partial_epoch)  # empty unless resuming mid-epoch
        first = self.step_in_epoch
        self.train_loader.sampler.set_epoch(epoch, skip=first * self.args.batch_size)
        bar = ProgressBar(self.train_loader, desc=f"train {epoch}", prefetch=self.args.num_workers > 0)
        for i, batch in enumerate(bar, start=first):
            out = self.step(batch)
            self.optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            self.optimizer.step()
            self.global_step += 1

            metrics = self.compute_metrics(out, is_train=True)
            recorder.record(metrics, n=len(out["label"]))
            if i % self.args.print_freq == 0:  # .item() waits for the GPU: only when printing
                loss = metrics["loss"].item()
                check_finite(loss, epoch, i)
                bar.show(loss=loss)
            if i == 0:
                self.logger.save_imgs(self.gen_imgs_to_write(out, is_train=True), epoch)
            if self.stop.requested or (self.args.save_every_steps and (i + 1) % self.args.save_every_steps == 0):
                self.save_mid_epoch(epoch, steps_done=i + 1, recorder=recorder)
                self.stop.check()
        self.partial_epoch = None
        summary = recorder.summary("train/")
        check_finite(summary["train/loss"], epoch, len(self.train_loader) - 1)
        self.logger.record_scalar("time/data_efficiency", bar.efficiency)
        return summary

    def val_per_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the validation set, no gradients; returns exact `val/...` values."""
        self.model.eval()
        recorder = Recorder()
        for i, batch in enumerate(ProgressBar(self.val_loader, f"val {epoch}", prefetch=self.args.num_workers > 0)):
            out = self.step(batch)
            recorder.record(self.compute_metrics(out, is_train=False), n=len(out["label"]))
            if i == 0:
                self.logger.save_imgs(self.gen_imgs_to_write(out, is_train=False), epoch)
        return recorder.summary("val/")

    def step(self, batch: dict) -> dict:
        """Forward one batch and compute its loss; returns what metrics and pictures need."""
        image = batch["image"].to(self.device, non_blocking=True)
        label = batch["label"].to(self.device, non_blocking=True)
        pred = self.model(image)
        return {"image": image, "label": label, "pred": pred, "loss": self.loss_fn(pred, label)}

    def compute_metrics(self, out: dict, is_train: bool) -> dict[str, torch.Tensor]:
        """Batch means (0-d tensors, no sync) that the Recorder turns into exact epoch values."""
        return {"loss": out["loss"].detach(), "acc": accuracy(out["pred"].detach(), out["label"])}

    def gen_imgs_to_write(self, out: dict, is_train: bool) -> dict[str, torch.Tensor]:
        """Pictures for TensorBoard: the first batch, framed green (right) or red (wrong)."""
        prefix = "train" if is_train else "val"
        return {f"{prefix}/predictions": classification_grid(out["image"], out["label"], out["pred"])}

    def save_checkpoints(self, values: dict[str, float]) -> None:
        """last.pth every epoch, best.pth when --monitor improves, epoch_<N>.pth every --save_freq."""
        if self.args.monitor not in values:
            raise UserError(f"--monitor {self.args.monitor} is not a recorded value; recorded: "
                            f"{', '.join(sorted(values))}.")
        current = values[self.args.monitor]
        improved = self.best_metric is None or (
            current > self.best_metric if self.args.monitor_mode == "max" else current < self.best_metric)
        if improved:
            self.best_metric, self.best_epoch = current, self.epoch
        state = self.checkpoint_state()
        self.logger.save_checkpoint(state, "last.pth")
        if improved:
            self.logger.save_checkpoint(state, "best.pth")
        if self.epoch % self.args.save_freq == 0:
            self.logger.save_checkpoint(state, f"epoch_{self.epoch}.pth")

    def save_mid_epoch(self, epoch: int, steps_done: int, recorder: Recorder) -> None:
        """last.pth inside an epoch: also the batches done and the epoch's sums so far."""
        check_finite(recorder.summary()["loss"], epoch, steps_done - 1)  # never save diverged weights
        state = self.checkpoint_state()
        state.update(step_in_epoch=steps_done, partial_epoch=recorder.state_dict())
        self.logger.save_checkpoint(state, "last.pth")
        log.info(f"Saved last.pth at epoch {epoch}, step {steps_done}")

    def checkpoint_state(self) -> dict:
        """Everything needed to evaluate or to continue exactly: plain dicts, tensors and
        numbers only, so `torch.load(path)` (weights_only=True) reads it."""
        return {
            "model": unwrap_model(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": self.epoch,  # epochs completed
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "metrics": self.logger.rows[-1] if self.logger.rows else {},
            "history": self.logger.rows,  # metrics.csv, so a resumed run rewrites it exactly
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "rng": rng_state(),
            "model_kwargs": self.model_kwargs,
            "class_names": self.class_names,
            "args": vars(self.args),
        }

    def resume(self, checkpoint: dict) -> list[dict[str, float]]:
        """Restore a run from `checkpoint_state()`; returns the metrics.csv rows so far."""
        load_state_into(self.model, model_state(checkpoint), strict=True, source=self.args.resume)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.epoch, self.global_step = checkpoint["epoch"], checkpoint["global_step"]
        self.step_in_epoch = checkpoint["step_in_epoch"]
        self.partial_epoch = checkpoint.get("partial_epoch")
        self.best_metric, self.best_epoch = checkpoint["best_metric"], checkpoint["best_epoch"]
        set_rng_state(checkpoint["rng"])  # last: building the model above drew random numbers
        log.info(f"Resumed at epoch {self.epoch + 1}, step {self.step_in_epoch} (global step {self.global_step})")
        return checkpoint["history"]


def build_optimizer(model: torch.nn.Module, args: Namespace) -> torch.optim.Optimizer:
    """--optimizer with --lr, --momentum (SGD momentum / Adam beta1), --beta, --weight_decay."""
    params = model.parameters()
    if args.optimizer == "sgd":
        return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    optimizer = torch.optim.AdamW if args.optimizer == "adamw" else torch.optim.Adam
    return optimizer(params, lr=args.lr, betas=(args.momentum, args.beta), weight_decay=args.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, args: Namespace):
    """--scheduler: none, step (every --lr_step_size epochs times --lr_gamma) or cosine to zero."""
    if args.scheduler == "step":
        step_size = args.lr_step_size or max(1, args.epochs // 3)
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=args.lr_gamma)
    if args.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    return None


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
    status = RunStatus(args.run_dir)
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
    status.finished()
    return 0


def stopped(args: Namespace, status: RunStatus, signal_number: int) -> int:
    """Record and report a stop by signal; the exit code is 128 + the signal number."""
    name = signal.Signals(signal_number).name
    command = shlex.join(["python", "train.py", "--resume", args.run_dir])
    status.interrupted(f"stopped by {name}", command)
    log.error(f"Stopped by {name}; resume from the last saved checkpoint with:\n  {command}")
    return 128 + signal_number


if __name__ == "__main__":
    sys.exit(main())
