"""The optimizer and the learning-rate schedule, from plain values (train.py passes the flags).

The schedule is stepped once per optimizer step, not per epoch, so warmup and cosine are
smooth curves (TensorBoard's `train_step/lr`). Built only from torch's own schedulers:
LinearLR for the warmup, then CosineAnnealingLR or StepLR, joined by SequentialLR.
"""

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR, StepLR

from utils.errors import UserError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "step", "cosine")


def build_optimizer(params, name: str, lr: float, momentum: float, beta: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    """SGD (momentum) or Adam / AdamW (betas = momentum, beta)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    optimizer = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return optimizer(params, lr=lr, betas=(momentum, beta), weight_decay=weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, name: str, epochs: int, steps_per_epoch: int,
                    warmup_epochs: float, min_lr: float, step_epochs: int, gamma: float) -> LRScheduler | None:
    """`warmup_epochs` of linear ramp up to --lr, then `name` over the remaining steps: cosine
    down to `min_lr`, step (times `gamma` every `step_epochs` epochs) or constant."""
    total_steps, warmup_steps = epochs * steps_per_epoch, round(warmup_epochs * steps_per_epoch)
    if warmup_steps >= total_steps and warmup_steps:
        raise UserError(f"The warmup ({warmup_steps} steps) is as long as the whole run ({total_steps} steps); "
                        "use a shorter --warmup_epochs or more --epochs.")
    main = None
    if name == "cosine":
        main = CosineAnnealingLR(optimizer, T_max=total_steps - warmup_steps, eta_min=min_lr)
    elif name == "step":
        main = StepLR(optimizer, step_size=step_epochs * steps_per_epoch, gamma=gamma)
    if not warmup_steps:
        return main
    # Starts at lr / (warmup_steps + 1) and reaches lr at the end of the warmup.
    warmup = LinearLR(optimizer, start_factor=1 / (warmup_steps + 1), total_iters=warmup_steps)
    if main is None:
        return warmup
    return SequentialLR(optimizer, [warmup, main], milestones=[warmup_steps])


def schedule_depends_on_length(scheduler: str, lr_step_size: int | None) -> bool:
    """Whether the schedule is planned over --epochs (so a changed --epochs would change it):
    cosine always; step when its step size is derived from --epochs."""
    return scheduler == "cosine" or (scheduler == "step" and lr_step_size is None)
