"""torchvision's ResNet-18 behind the same typed signature as the other models.

To start from ImageNet weights, download them yourself and pass the file with
`--load_model_path` (and `--load_not_strict` when num_classes differs from 1000).
"""

from torch import nn
from torchvision.models import resnet18


def build_resnet18(num_classes: int, in_channels: int = 3) -> nn.Module:
    """ResNet-18 with `num_classes` outputs; the first convolution accepts `in_channels`."""
    model = resnet18(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model
