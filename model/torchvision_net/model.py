"""TorchvisionNet: a torchvision classification architecture by name, its head sized for the
data, optionally starting from pretrained weights, offline.

`--pretrained` names the weights: one of the architecture's own (`DEFAULT`, `IMAGENET1K_V1`,
..., see torchvision.models.get_model_weights), read from the torch hub cache
(`$TORCH_HOME/hub/checkpoints/`, where torchvision's own download puts them), or the path
of a state_dict file. Nothing is downloaded: a missing file is one message saying where to
put it and where to get it. Only a new run loads them (`load_pretrained`); a resumed run, and
eval.py, read the checkpoint's weights, so the file may be gone by then. The weights' own
preprocessing (mean, std, input size) is the run's default (`preprocessing`).
"""

from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models import get_model, get_model_weights, list_models

from utils.errors import UserError


class TorchvisionNet(nn.Module):
    """`torchvision.models.<arch>` with `num_classes` outputs; `self.net` is that model.

    Args:
        arch: the architecture, a torchvision classification model's name (resnet50, efficientnet_b0, vit_b_16, ...)
        pretrained: weights to start from: a name of the architecture's (DEFAULT, IMAGENET1K_V1, ...) in the torch
            hub cache, or a state_dict file (default: none, a random start)
    """

    def __init__(self, num_classes: int, in_channels: int = 3, arch: str = "resnet18",
                 pretrained: str | None = None) -> None:
        super().__init__()
        if arch not in architectures():
            raise ValueError(f"--arch {arch!r} is not a torchvision classification model; some that are: "
                             f"{', '.join(architectures()[:12])}, ... (torchvision.models.list_models)")
        self.arch, self.pretrained, self.in_channels = arch, pretrained, in_channels
        self.net = get_model(arch, weights=None, num_classes=num_classes)
        if in_channels != 3:
            first = first_conv(self.net)
            setattr_path(self.net, first, conv_for_channels(getattr_path(self.net, first), in_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def load_pretrained(self) -> str:
        """Load `pretrained` into the backbone (a new run only); the head, sized for the data,
        keeps its random start, and a first convolution for other than 3 channels gets the
        mean of the pretrained filters. Returns what was loaded, to log."""
        state = read_weights(self.arch, self.pretrained)
        own = self.net.state_dict()
        first = first_conv(self.net) + ".weight"
        if self.in_channels != 3 and first in state:
            state[first] = state[first].mean(dim=1, keepdim=True).expand(-1, self.in_channels, -1, -1).clone()
        fitting = {name: value for name, value in state.items() if name in own and own[name].shape == value.shape}
        left = sorted(set(own) - set(fitting))
        if len(fitting) < len(own) / 2:
            raise UserError(f"--pretrained {self.pretrained}: only {len(fitting)} of {arch_name(self)}'s "
                            f"{len(own)} tensors fit; is it a state_dict of --arch {self.arch}?")
        self.net.load_state_dict(fitting, strict=False)
        return (f"--pretrained {self.pretrained}: {len(fitting)} of {len(own)} tensors loaded; a new start for "
                f"{', '.join(left) or 'none'}")

    @staticmethod
    def preprocessing(arch: str = "resnet18", pretrained: str | None = None) -> dict | None:
        """The mean, std and input side the weights were trained with (None without weights
        to start from): the run's --mean, --std and --image_size unless given."""
        if pretrained is None or arch not in architectures():
            return None
        weights = get_model_weights(arch)
        chosen = weights_named(arch, pretrained) or weights.DEFAULT  # a file: the architecture's own statistics
        transform = chosen.transforms()
        return {"mean": tuple(transform.mean), "std": tuple(transform.std), "image_size": transform.crop_size[0]}


def architectures() -> list[str]:
    return list_models(module=torchvision.models)


def arch_name(model: TorchvisionNet) -> str:
    return f"--arch {model.arch}"


def weights_named(arch: str, name: str) -> torchvision.models.WeightsEnum | None:
    """The architecture's weights called `name` (DEFAULT, IMAGENET1K_V1, ...), or None."""
    weights = get_model_weights(arch)
    if name == "DEFAULT":
        return weights.DEFAULT
    return weights.__members__.get(name)


def read_weights(arch: str, pretrained: str) -> dict[str, torch.Tensor]:
    """The state_dict `pretrained` names, from a file or the hub cache; never downloaded."""
    weights = weights_named(arch, pretrained)
    if weights is None:
        path = Path(pretrained)
        if not path.is_file():
            names = ", ".join(["DEFAULT", *get_model_weights(arch).__members__])
            raise UserError(f"--pretrained {pretrained} is neither a weights name of --arch {arch} ({names}) nor a "
                            "file; give one of those names, or the path of a state_dict file.")
    else:
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        if not path.is_file():
            raise UserError(f"--pretrained {pretrained}: the weights {weights} are not on this machine. Put the "
                            f"file at {path} (download it elsewhere from {weights.url}; $TORCH_HOME moves the "
                            "cache), or give --pretrained the path of a state_dict file.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file it cannot read
        raise UserError(f"--pretrained {pretrained}: {path} is not a loadable state_dict "
                        f"({str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}).") \
            from None
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(torch.is_tensor(value) for value in state.values()):
        raise UserError(f"--pretrained {pretrained}: {path} holds no state_dict (a dict of tensors).")
    return {name.removeprefix("module.").removeprefix("net."): value for name, value in state.items()}


def first_conv(model: nn.Module) -> str:
    """The dotted name of the model's first Conv2d (the one the pictures go into)."""
    return next(name for name, module in model.named_modules() if isinstance(module, nn.Conv2d))


def conv_for_channels(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                     conv.groups, conv.bias is not None)


def getattr_path(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path)


def setattr_path(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)
