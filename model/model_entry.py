"""The model registry: `--model_type` name -> model class or builder.

To add a model: create the package `model/<name>/` with an nn.Module whose constructor takes
`num_classes: int` and `in_channels: int` (the data supplies them), then add one line to
`MODELS`. Every other typed keyword parameter with a default becomes a flag by itself:
`width: int = 16` is `--width`, listed by `python train.py --model_type <name> -h`, saved in
args.json and the checkpoint, and taken up again by eval.py and --resume. Models never see `args`.
"""

import inspect
import logging
from argparse import Namespace
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

from model.base import BaseNet
from model.better import BetterNet
from model.finetune import freeze_backbone, parameter_groups
from model.resnet18 import build_resnet18
from model.torchvision_net import TorchvisionNet
from model.unet import UNet
from utils.distributed import local_rank
from utils.ema import EmaModel
from utils.errors import UserError
from utils.signature_flags import call_with_flags, flag_parameters
from utils.torch_utils import load_weights, speed_up

MODELS = {
    "base": BaseNet,
    "better": BetterNet,
    "resnet18": build_resnet18,
    "unet": UNet,
    "torchvision": TorchvisionNet,
}
# What the data supplies to every model; its other parameters are flags.
SUPPLIED = ("num_classes", "in_channels")
log = logging.getLogger(__name__)
__all__ = ["MODELS", "freeze_backbone", "parameter_groups"]  # fine-tuning's parts (model/finetune.py), for train.py


def model_kwargs(args: Namespace, num_classes: int, in_channels: int) -> dict[str, object]:
    """Every keyword the model is built with: what the data supplies and its own flags' values.
    Saved in checkpoints, so a checkpoint says exactly which model it holds."""
    own = {p.name: getattr(args, p.name) for p in flag_parameters(MODELS[args.model_type], SUPPLIED)}
    return {"num_classes": num_classes, "in_channels": in_channels, **own}


def preprocessing_defaults(args: Namespace, given: set[str]) -> None:
    """--mean, --std and --image_size from the weights a model starts from (its
    `preprocessing`, e.g. TorchvisionNet's with --pretrained), unless given on the command line."""
    builder = MODELS[args.model_type]
    if not hasattr(builder, "preprocessing"):
        return
    values = builder.preprocessing(**{p.name: getattr(args, p.name) for p in flag_parameters(builder, SUPPLIED)
                                      if p.name in inspect.signature(builder.preprocessing).parameters})
    for name, value in (values or {}).items():
        if name not in given and hasattr(args, name):
            setattr(args, name, list(value) if isinstance(value, tuple) else value)


def select_model(args: Namespace, kwargs: dict[str, object]) -> nn.Module:
    """Build `--model_type` with `kwargs` (see `model_kwargs`); a constructor that rejects its
    values (e.g. a width of 0) is reported naming them."""
    builder = MODELS[args.model_type]
    supplied = {name: kwargs[name] for name in SUPPLIED}
    try:
        return call_with_flags(builder, kwargs, supplied)
    except (ValueError, TypeError, RuntimeError) as error:
        values = ", ".join(f"{name}={value!r}" for name, value in kwargs.items())
        raise UserError(f"--model_type {args.model_type} cannot be built with {values}: {error}") from None


def check_model_fits(model: nn.Module, sample: torch.Tensor, check_output: Callable, model_type: str) -> None:
    """One forward pass of a real sample (twice, as a batch), before anything is written: an
    --image_size too small for the model, or a model of the wrong kind for the task, is then
    a clear error at start-up instead of a failure deep inside torch after the run began."""
    device = next(model.parameters()).device
    model.eval()
    try:
        with torch.no_grad():
            pred = model(sample.unsqueeze(0).expand(2, *sample.shape).to(device))
    except RuntimeError as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"--model_type {model_type} cannot take inputs of shape {tuple(sample.shape)} ({reason}); "
                        "a larger --image_size (or another model) fits.") from None
    check_output(pred, model_type)


def prepare_model(model: nn.Module, args: Namespace, device: torch.device, training: bool = True) -> nn.Module:
    """The model as a run uses it: on its device, --channels_last and --compile applied, and
    wrapped for several devices (`equip_multi_gpu`)."""
    model = speed_up(model.to(device), args.channels_last, args.compile)
    return equip_multi_gpu(model, args.gpus, training)


def load_start_weights(model: nn.Module, args: Namespace) -> None:
    """A new run's first weights: --load_model_path's, or those a model can start from itself
    (`load_pretrained`, e.g. TorchvisionNet's --pretrained); else its random start. A resumed
    run skips this: its checkpoint holds the weights, so these files may be gone by then."""
    if args.load_model_path:
        load_weights(model, args.load_model_path, strict=not args.load_not_strict)
    elif getattr(model, "pretrained", None) and hasattr(model, "load_pretrained"):
        log.info(model.load_pretrained())


def rewrap(model: nn.Module, gpus: list[int] | None) -> nn.Module:
    """The model wrapped anew for DDP, after --freeze_epochs changed which parameters train:
    DistributedDataParallel shares the gradients of those that trained when it was made."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return equip_multi_gpu(model.module, gpus)
    return model


def averaged_model(model: nn.Module, decay: float) -> EmaModel | None:
    """--ema_decay: a running average of the model's weights (its decay ramps up), validated
    beside them as val_ema/...; None when the decay is 0."""
    return EmaModel(model, decay) if decay else None


def equip_multi_gpu(model: nn.Module, gpus: list[int] | None, training: bool = True) -> nn.Module:
    """Wrap the model for several devices: DistributedDataParallel under torchrun (one
    process per GPU, or several CPU processes), DataParallel when several `--gpus` are
    given to one process. torchrun is the faster and recommended way. Evaluation under
    torchrun (`training=False`) needs no wrapper: no gradients to share."""
    if dist.is_initialized() and training:
        device_ids = [local_rank()] if torch.cuda.is_available() else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if gpus and len(gpus) > 1:
        return nn.DataParallel(model, device_ids=gpus)
    return model
