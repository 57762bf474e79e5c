"""BaseNet: three conv-bn-relu stages and a linear classifier."""

from torch import Tensor, nn

from model.submodules import conv_bn_relu


class BaseNet(nn.Module):
    """A small CNN classifier for small pictures (e.g. 32 x 32).

    Global average pooling before the classifier makes it accept any input size.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_relu(in_channels, width),
            nn.MaxPool2d(2),
            conv_bn_relu(width, width * 2),
            nn.MaxPool2d(2),
            conv_bn_relu(width * 2, width * 4),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(width * 4, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))
