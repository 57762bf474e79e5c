"""What a checkpoint holds to continue a run exactly, gathered from the training's parts and
put back into them: the weights (and their average, --ema_decay), the optimizer, the
learning-rate schedule, the loss scaler and every random generator (one set per process).
train.py adds what only it knows (progress, metrics, where the run came from).

Everything is plain dicts, tensors and numbers, so `torch.load(path)` (weights_only=True)
reads it, and the weights are the plain model's (no `module.` / `_orig_mod.` prefixes), so
a checkpoint from torchrun, DataParallel or --compile loads into a plain model.
"""

from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from utils.distributed import gather_to_main, rank
from utils.torch_utils import load_state_into, model_state, rng_state, set_rng_state, unwrap_model


class TrainingState:
    """The parts of a run that change as it trains, saved and restored together."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None, scaler: torch.amp.GradScaler,
                 ema: AveragedModel | None) -> None:
        self.model, self.optimizer, self.scheduler, self.scaler, self.ema = model, optimizer, scheduler, scaler, ema

    def state_dict(self) -> dict:
        """The parts' states; called on every process, since it gathers their random states."""
        return {
            "model": unwrap_model(self.model).state_dict(),
            "ema": {"model": self.ema.module.state_dict(), "n_averaged": int(self.ema.n_averaged)}
            if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "rng": gather_to_main([rng_state()]),  # one per process, in rank order
        }

    def load_state_dict(self, checkpoint: dict, source: str | Path) -> None:
        """Put a checkpoint's states back; the random generators last, since building the
        model and the data drew random numbers after they were seeded."""
        load_state_into(self.model, model_state(checkpoint), strict=True, source=source)
        if self.ema is not None:
            self.ema.module.load_state_dict(checkpoint["ema"]["model"])
            self.ema.n_averaged.fill_(checkpoint["ema"]["n_averaged"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        set_rng_state(checkpoint["rng"][rank()])
