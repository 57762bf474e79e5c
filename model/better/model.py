"""BetterNet: a small ResNet built from the blocks in model/submodules.py."""

from torch import Tensor, nn

from model.submodules import ResidualBlock, conv_bn_relu


class BetterNet(nn.Module):
    """Stem, three residual stages (each halving the resolution after the first), classifier."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        self.stem = conv_bn_relu(in_channels, width)
        self.stages = nn.Sequential(
            ResidualBlock(width, width),
            ResidualBlock(width, width * 2, stride=2),
            ResidualBlock(width * 2, width * 4, stride=2),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width * 4, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.stages(self.stem(x))).flatten(1))
