"""A small ResNet: more accurate than BaseNet, a few times slower."""

from model.better.model import BetterNet

__all__ = ["BetterNet"]
