"""Turning a batch into pictures: a grid for TensorBoard, one PNG per sample for --save_viz.

Each picture gets a coloured frame: green when the prediction is right, red when wrong.
"""

from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from data.augment import MEAN, STD

GREEN = torch.tensor([0.0, 0.8, 0.0])
RED = torch.tensor([0.9, 0.0, 0.0])


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """Undo the Normalize of data/augment.py: back to RGB values in [0, 1] (grey -> 3 channels)."""
    mean = torch.tensor(MEAN, device=images.device).view(-1, 1, 1)
    std = torch.tensor(STD, device=images.device).view(-1, 1, 1)
    images = (images.float() * std + mean).clamp(0, 1)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def framed(images: torch.Tensor, correct: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Denormalised pictures (N, 3, H+2w, W+2w) inside a green (right) or red (wrong) frame."""
    images = denormalize(images.detach().cpu())
    colors = torch.where(correct.cpu().view(-1, 1), GREEN, RED)  # (N, 3)
    out = colors.view(-1, 3, 1, 1).expand(-1, -1, images.shape[2] + 2 * width, images.shape[3] + 2 * width)
    out = out.clone()
    out[:, :, width:-width, width:-width] = images
    return out


def classification_grid(images: torch.Tensor, label: torch.Tensor, pred: torch.Tensor,
                        max_images: int = 32) -> torch.Tensor:
    """One (3, H, W) grid of the first `max_images` samples, framed by right/wrong."""
    n = min(max_images, len(images))
    return make_grid(framed(images[:n], pred[:n].argmax(1) == label[:n]), nrow=8, padding=2)


def save_classification_pngs(images: torch.Tensor, label: torch.Tensor, pred: torch.Tensor,
                             class_names: list[str], folder: Path, first_index: int) -> None:
    """One PNG per sample, `<index>_true-<name>_pred-<name>.png`, enlarged when small."""
    folder.mkdir(parents=True, exist_ok=True)
    predicted = pred.argmax(1)
    pictures = framed(images, predicted == label)
    scale = max(1, 128 // max(pictures.shape[2:]))
    pictures = torch.nn.functional.interpolate(pictures, scale_factor=scale, mode="nearest")
    for offset, picture in enumerate(pictures):
        true_name = class_names[int(label[offset])]
        pred_name = class_names[int(predicted[offset])]
        save_image(picture, folder / f"{first_index + offset:06d}_true-{true_name}_pred-{pred_name}.png")
