"""Turning a batch into pictures: a grid for TensorBoard, one PNG per sample for --save_viz.

Every function takes `pictures`: RGB values in [0, 1], (N, 3, H, W), as tasks.py makes them
from normalised inputs. Classification pictures get a coloured frame: green when the
prediction is right, red when wrong; segmentation shows input | prediction | truth.
"""

from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid, save_image

GREEN = torch.tensor([0.0, 0.8, 0.0])
RED = torch.tensor([0.9, 0.0, 0.0])


def framed(pictures: torch.Tensor, correct: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Pictures (N, 3, H+2w, W+2w) inside a green (right) or red (wrong) frame."""
    images = pictures.detach().cpu()
    colors = torch.where(correct.cpu().view(-1, 1), GREEN, RED)  # (N, 3)
    out = colors.view(-1, 3, 1, 1).expand(-1, -1, images.shape[2] + 2 * width, images.shape[3] + 2 * width)
    out = out.clone()
    out[:, :, width:-width, width:-width] = images
    return out


def classification_grid(pictures: torch.Tensor, label: torch.Tensor, pred: torch.Tensor,
                        max_images: int = 32) -> torch.Tensor:
    """One (3, H, W) grid of the first `max_images` samples, framed by right/wrong."""
    n = min(max_images, len(pictures))
    return make_grid(framed(pictures[:n], pred[:n].argmax(1) == label[:n]), nrow=8, padding=2)


def enlarged(pictures: torch.Tensor, side: int) -> torch.Tensor:
    """Pictures whose `side` is below 128 pixels, scaled up by a whole factor (nearest
    neighbour, so pixels stay sharp and masks keep their colours) to be seen at all."""
    scale = max(1, 128 // side)
    return torch.nn.functional.interpolate(pictures, scale_factor=scale, mode="nearest")


def save_classification_pngs(pictures: torch.Tensor, label: torch.Tensor, pred: torch.Tensor,
                             class_names: list[str], folder: Path, indices: list[int]) -> None:
    """One PNG per sample, `<index>_true-<name>_pred-<name>.png`, enlarged when small."""
    folder.mkdir(parents=True, exist_ok=True)
    predicted = pred.argmax(1)
    pictures = framed(pictures, predicted == label)
    pictures = enlarged(pictures, side=max(pictures.shape[2:]))
    for offset, picture in enumerate(pictures):
        true_name = class_names[int(label[offset])]
        pred_name = class_names[int(predicted[offset])]
        save_image(picture, folder / f"{indices[offset]:06d}_true-{true_name}_pred-{pred_name}.png")


def palette() -> torch.Tensor:
    """256 fixed colours (256, 3) in [0, 1], Pascal VOC's: class 0 black, then distinct hues.

    Fixed, so a class has the same colour in every picture of every run; 255 (the usual
    ignore label) is white."""
    colors = torch.zeros(256, 3)
    for index in range(256):
        value, rgb = index, [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << (7 - bit)
            value >>= 3
        colors[index] = torch.tensor(rgb) / 255
    colors[255] = 1.0
    return colors


PALETTE = palette()


def colorize(masks: torch.Tensor) -> torch.Tensor:
    """Class-id masks (N, H, W) as RGB pictures (N, 3, H, W) in the fixed palette."""
    return PALETTE[masks.detach().cpu().long().clamp(0, 255)].permute(0, 3, 1, 2)


def overlay(pictures: torch.Tensor, masks: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """The coloured mask laid over the picture, background left clear."""
    pictures = pictures.detach().cpu()
    colors = colorize(masks)
    shown = (masks.detach().cpu() > 0).unsqueeze(1) * alpha
    return pictures * (1 - shown) + colors * shown


def segmentation_rows(pictures: torch.Tensor, label: torch.Tensor, pred_class: torch.Tensor) -> torch.Tensor:
    """Per sample one picture (3, H, 3W): input | prediction | ground truth."""
    return torch.cat([pictures.detach().cpu(), colorize(pred_class), colorize(label)], dim=3)


def segmentation_grid(pictures: torch.Tensor, label: torch.Tensor, pred: torch.Tensor,
                      max_images: int = 8) -> torch.Tensor:
    """One (3, H, W) grid for TensorBoard: a row per sample of input | prediction | truth."""
    n = min(max_images, len(pictures))
    return make_grid(segmentation_rows(pictures[:n], label[:n], pred[:n].argmax(1)), nrow=1, padding=2)


def save_segmentation_pngs(pictures: torch.Tensor, label: torch.Tensor, pred: torch.Tensor,
                           folder: Path, indices: list[int]) -> None:
    """Per sample `<index>.png` (input | prediction | truth, enlarged when small) and
    `<index>_overlay.png` (the prediction over the picture)."""
    folder.mkdir(parents=True, exist_ok=True)
    pred_class = pred.argmax(1)
    side = max(pictures.shape[2:])
    rows = enlarged(segmentation_rows(pictures, label, pred_class), side)
    overlays = enlarged(overlay(pictures, pred_class), side)
    for offset in range(len(pictures)):
        name = f"{indices[offset]:06d}"
        save_image(rows[offset], folder / f"{name}.png")
        save_image(overlays[offset], folder / f"{name}_overlay.png")


def save_palette_mask(mask: torch.Tensor, path: Path) -> None:
    """A class-id mask (H, W) as a palette PNG (mode P): each pixel stores its class id, and
    the file opens in any viewer as a picture in the fixed colours above. Ids above 255 do
    not fit a PNG palette and are refused by the caller."""
    image = Image.fromarray(mask.detach().cpu().to(torch.uint8).numpy())  # mode L
    image.putpalette((PALETTE * 255).round().to(torch.uint8).flatten().tolist())  # L becomes P
    image.save(path)
