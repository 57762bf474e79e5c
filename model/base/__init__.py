"""The default model: a small CNN that trains in seconds on a CPU."""

from model.base.model import BaseNet

__all__ = ["BaseNet"]
