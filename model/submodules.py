"""Building blocks shared by the models: small, plain nn.Modules to compose."""

import torch
from torch import Tensor, nn


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3 x 3 convolution, batch norm, ReLU: the unit most small CNNs are made of.

    The convolution has no bias because the batch norm right after it has one.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """Two 3 x 3 convolutions with a shortcut (the ResNet "basic block").

    When the shape changes (stride or channels), the shortcut is a 1 x 1 convolution so the
    two branches can be added.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(in_channels, out_channels, stride)
        self.conv2 = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two conv-bn-relu units: one U-Net stage."""
    return nn.Sequential(conv_bn_relu(in_channels, out_channels), conv_bn_relu(out_channels, out_channels))


class UpBlock(nn.Module):
    """Upsample to the skip connection's size, concatenate it, then a double conv.

    `up="bilinear"`: fixed bilinear interpolation, the channels kept; `up="transposed"`: a
    learned 2 x 2 transposed convolution that also halves the channels, so the double conv
    after it has fewer inputs (less compute). Either way the output takes the skip's exact
    size (not a fixed factor of 2), so any input size is accepted."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, up: str = "bilinear") -> None:
        super().__init__()
        if up not in ("bilinear", "transposed"):
            raise ValueError(f"up must be 'bilinear' or 'transposed', not {up!r}")
        self.up = up
        if up == "transposed":
            self.upsample = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            in_channels //= 2
        self.conv = double_conv(in_channels + skip_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        if self.up == "transposed":
            x = self.upsample(x, output_size=skip.shape[2:])  # an odd skip size gets the extra row
        else:
            x = nn.functional.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))
