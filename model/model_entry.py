"""The model registry: `--model_type` name -> model class or builder.

To add a model: create the package `model/<name>/` with an nn.Module whose constructor
takes `num_classes: int` and `in_channels: int` (plus any typed keywords of your own, with
defaults), then add one line to `MODELS`. Models never see `args`.
"""

from argparse import Namespace

import torch
import torch.distributed as dist
from torch import nn

from model.base import BaseNet
from model.better import BetterNet
from model.resnet18 import build_resnet18
from model.unet import UNet
from utils.distributed import local_rank
from utils.errors import UserError

MODELS = {
    "base": BaseNet,
    "better": BetterNet,
    "resnet18": build_resnet18,
    "unet": UNet,
}


def select_model(args: Namespace, num_classes: int, in_channels: int) -> nn.Module:
    """Build `--model_type` sized for the data (`num_classes` outputs, `in_channels` inputs)."""
    if args.model_type not in MODELS:
        raise UserError(f"Unknown --model_type {args.model_type!r}; valid names: {', '.join(MODELS)}.")
    return MODELS[args.model_type](num_classes=num_classes, in_channels=in_channels)


def equip_multi_gpu(model: nn.Module, args: Namespace, training: bool = True) -> nn.Module:
    """Wrap the model for several devices: DistributedDataParallel under torchrun (one
    process per GPU, or several CPU processes), DataParallel when several `--gpus` are
    given to one process. torchrun is the faster and recommended way. Evaluation under
    torchrun (`training=False`) needs no wrapper: no gradients to share."""
    if dist.is_initialized() and training:
        device_ids = [local_rank()] if torch.cuda.is_available() else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if args.gpus and len(args.gpus) > 1:
        return nn.DataParallel(model, device_ids=args.gpus)
    return model
