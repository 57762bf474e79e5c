"""UNet: a small encoder-decoder with skip connections, built from model/submodules.py."""

from typing import Literal

from torch import Tensor, nn

from model.submodules import UpBlock, double_conv


class UNet(nn.Module):
    """Two downsampling stages, a bottleneck, two upsampling stages with skips, a 1 x 1 head.

    Output: (N, num_classes, H, W), the input's size: per-pixel class scores. `up` (--up):
    how the decoder upsamples, bilinear (the original; checkpoints without `up` are these) or
    transposed convolutions (learned; fewer channels after them, so less compute: see
    docs/performance.md, "Segmentation")."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 16,
                 up: Literal["bilinear", "transposed"] = "bilinear") -> None:
        super().__init__()
        self.down1 = double_conv(in_channels, width)
        self.down2 = double_conv(width, width * 2)
        self.bottleneck = double_conv(width * 2, width * 4)
        self.pool = nn.MaxPool2d(2)
        self.up2 = UpBlock(width * 4, width * 2, width * 2, up)
        self.up1 = UpBlock(width * 2, width, width, up)
        self.head = nn.Conv2d(width, num_classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        skip1 = self.down1(x)
        skip2 = self.down2(self.pool(skip1))
        x = self.bottleneck(self.pool(skip2))
        return self.head(self.up1(self.up2(x, skip2), skip1))
