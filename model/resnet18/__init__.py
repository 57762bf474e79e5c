"""torchvision's ResNet-18, randomly initialised (no pretrained weights are downloaded)."""

from model.resnet18.model import build_resnet18

__all__ = ["build_resnet18"]
