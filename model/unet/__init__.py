"""A small U-Net for semantic segmentation: one score per class for every pixel."""

from model.unet.model import UNet

__all__ = ["UNet"]
