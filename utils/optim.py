"""The optimizers (`--optimizer`) and learning-rate schedules (`--scheduler`), by name.

Each entry is a builder whose typed keyword parameters are its flags, as a model's are
(`python train.py --optimizer sgd -h` lists SGD's); train.py hands over what it knows itself
(the parameters, --lr, --weight_decay; the step counts). To add one: a function here and one
dict line.

The schedule is stepped once per optimizer step, not per epoch, so warmup and cosine are
smooth curves (TensorBoard's `train_step/lr`). Built only from torch's own schedulers:
LinearLR for the warmup (--warmup_epochs, for every schedule), then CosineAnnealingLR or
StepLR, joined by SequentialLR.
"""

from collections.abc import Iterable

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR, StepLR

from utils.errors import UserError
from utils.signature_flags import builder_kwargs, described_values


def sgd(params: Iterable, lr: float, weight_decay: float, momentum: float = 0.9,
        nesterov: bool = False) -> torch.optim.Optimizer:
    """SGD with momentum.

    Args:
        momentum: the share of the previous update kept in each step
        nesterov: Nesterov's momentum
    """
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), not {momentum}")
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


def adam(params: Iterable, lr: float, weight_decay: float, momentum: float = 0.9, beta: float = 0.999,
         eps: float = 1e-8) -> torch.optim.Optimizer:
    """Adam; weight decay added to the gradient (L2).

    Args:
        momentum: beta1, the decay of the running mean of the gradients
        beta: beta2, the decay of the running mean of their squares
        eps: added to the denominator, for numerical stability
    """
    check_betas(momentum, beta)
    return torch.optim.Adam(params, lr=lr, betas=(momentum, beta), eps=eps, weight_decay=weight_decay)


def adamw(params: Iterable, lr: float, weight_decay: float, momentum: float = 0.9, beta: float = 0.999,
          eps: float = 1e-8) -> torch.optim.Optimizer:
    """AdamW: Adam with weight decay applied to the weights directly (decoupled).

    Args:
        momentum: beta1, the decay of the running mean of the gradients
        beta: beta2, the decay of the running mean of their squares
        eps: added to the denominator, for numerical stability
    """
    check_betas(momentum, beta)
    return torch.optim.AdamW(params, lr=lr, betas=(momentum, beta), eps=eps, weight_decay=weight_decay)


def check_betas(momentum: float, beta: float) -> None:
    for name, value in (("momentum", momentum), ("beta", beta)):
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), not {value}")


OPTIMIZERS = {
    "sgd": sgd,
    "adam": adam,
    "adamw": adamw,
}
OPTIMIZER_SUPPLIED = ("params", "lr", "weight_decay")  # from train.py; the rest are flags


def cosine(optimizer: torch.optim.Optimizer, steps: int, steps_per_epoch: int, epochs: int,
           min_lr: float = 0.0) -> LRScheduler:
    """Cosine from --lr down to `min_lr` at the last step.

    Args:
        min_lr: the learning rate the cosine ends at
    """
    if not 0 <= min_lr < optimizer.param_groups[0]["lr"]:
        raise ValueError(f"min_lr must be 0 or more and below --lr {optimizer.param_groups[0]['lr']}, not {min_lr}")
    return CosineAnnealingLR(optimizer, T_max=steps, eta_min=min_lr)


def step(optimizer: torch.optim.Optimizer, steps: int, steps_per_epoch: int, epochs: int,
         lr_step_size: int | None = None, lr_gamma: float = 0.1) -> LRScheduler:
    """The learning rate times `lr_gamma` every `lr_step_size` epochs.

    Args:
        lr_step_size: epochs between decays (default: a third of --epochs)
        lr_gamma: the factor applied at each decay
    """
    if lr_step_size is not None and lr_step_size < 1:
        raise ValueError(f"lr_step_size must be 1 or more, not {lr_step_size}")
    if not lr_gamma > 0:
        raise ValueError(f"lr_gamma must be positive, not {lr_gamma}")
    epochs_per_step = lr_step_size or max(1, epochs // 3)
    return StepLR(optimizer, step_size=epochs_per_step * steps_per_epoch, gamma=lr_gamma)


def constant(optimizer: torch.optim.Optimizer, steps: int, steps_per_epoch: int, epochs: int) -> None:
    """--lr throughout (after the warmup, if any)."""
    return None


SCHEDULERS = {
    "cosine": cosine,
    "step": step,
    "none": constant,
}
SCHEDULER_SUPPLIED = ("optimizer", "steps", "steps_per_epoch", "epochs")  # from train.py


def build_optimizer(name: str, params: Iterable, lr: float, weight_decay: float,
                    flags: dict[str, object]) -> torch.optim.Optimizer:
    """`--optimizer name` over `params`, with its own flags' values (e.g. --momentum)."""
    builder = OPTIMIZERS[name]
    kwargs = builder_kwargs(builder, flags, OPTIMIZER_SUPPLIED)
    try:
        return builder(params, lr=lr, weight_decay=weight_decay, **kwargs)
    except ValueError as error:
        raise UserError(f"--optimizer {name} cannot be built with {described_values(builder, kwargs)}: {error}") \
            from None


def build_schedule(name: str, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int,
                   warmup_epochs: float, flags: dict[str, object]) -> LRScheduler | None:
    """`warmup_epochs` of linear ramp up to --lr, then `--scheduler name` over the remaining
    optimizer steps: one schedule for the whole run. The ramp starts at lr / (warmup steps + 1)
    and reaches lr at its end."""
    steps, warmup_steps = epochs * steps_per_epoch, round(warmup_epochs * steps_per_epoch)
    if warmup_steps and warmup_steps >= steps:
        raise UserError(f"The warmup ({warmup_steps} steps) is as long as the whole run ({steps} steps); "
                        "use a shorter --warmup_epochs or more --epochs.")
    builder = SCHEDULERS[name]
    kwargs = builder_kwargs(builder, flags, SCHEDULER_SUPPLIED)
    try:
        main = builder(optimizer, steps=steps - warmup_steps, steps_per_epoch=steps_per_epoch, epochs=epochs,
                       **kwargs)
    except ValueError as error:
        raise UserError(f"--scheduler {name} cannot be built with {described_values(builder, kwargs)}: {error}") \
            from None
    if not warmup_steps:
        return main
    warmup = LinearLR(optimizer, start_factor=1 / (warmup_steps + 1), total_iters=warmup_steps)
    if main is None:
        return warmup
    return SequentialLR(optimizer, [warmup, main], milestones=[warmup_steps])


def check_optimizer_flags(flags: dict[str, object]) -> None:
    """--optimizer and --scheduler built once on a stand-in weight, with all of the run's flags
    (their values, --lr, --weight_decay, --epochs): a value their builders refuse is a
    UserError now, before any data is read."""
    optimizer = build_optimizer(flags["optimizer"], [torch.zeros(1, requires_grad=True)], flags["lr"],
                                flags["weight_decay"], flags)
    build_schedule(flags["scheduler"], optimizer, flags["epochs"], 1_000_000, 0.0, flags)


def planned_over_epochs(scheduler: str, kwargs: dict[str, object]) -> bool:
    """Whether the schedule depends on --epochs (so a changed --epochs would change it):
    cosine always; step when its step size is derived from --epochs."""
    return scheduler == "cosine" or (scheduler == "step" and kwargs.get("lr_step_size") is None)
