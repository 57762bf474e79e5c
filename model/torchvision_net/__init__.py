"""Any torchvision classification architecture, optionally starting from pretrained weights
found offline (--model_type torchvision --arch resnet50 --pretrained DEFAULT)."""

from model.torchvision_net.model import TorchvisionNet

__all__ = ["TorchvisionNet"]
