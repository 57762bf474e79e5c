"""Turning a batch into pictures: a grid for TensorBoard, one PNG per sample for --save_viz,
eval.py's gallery of mistakes.

Every function takes `pictures`: RGB values in [0, 1], (N, 3, H, W), as tasks.py makes them
from normalised inputs. Classification pictures get a coloured frame (green right, red
wrong) and `true / predicted` written under each; segmentation shows input | prediction |
truth under column titles, with a legend naming each colour's class.
"""

from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torchvision.transforms.functional import to_pil_image, to_tensor
from torchvision.utils import make_grid, save_image

from utils.charts import BLACK, WHITE, font, text_width

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


def captioned(pictures: torch.Tensor, captions: list[str], colors: list[tuple[int, int, int]]) -> torch.Tensor:
    """Each picture with its caption written in a white strip under it (Pillow's default font;
    cut with `…` when wider than the picture)."""
    face = font(11)
    width = pictures.shape[3]
    out = []
    for picture, caption, color in zip(pictures, captions, colors):
        strip = Image.new("RGB", (width, 16), WHITE)
        while len(caption) > 4 and text_width(caption, face) > width - 4:
            caption = caption[:-2] + "…"
        ImageDraw.Draw(strip).text((width // 2, 8), caption, fill=color, font=face, anchor="mm")
        out.append(torch.cat([picture.cpu(), to_tensor(strip)], dim=1))
    return torch.stack(out)


def classification_tiles(pictures: torch.Tensor, label: torch.Tensor, pred: torch.Tensor,
                         class_names: list[str]) -> torch.Tensor:
    """Framed (green right, red wrong), enlarged when small, and captioned
    `true / predicted` (with the predicted class's probability): readable at a glance,
    also on a green picture."""
    probability, predicted = pred.float().softmax(dim=1).max(dim=1)
    correct = predicted == label
    tiles = enlarged(framed(pictures, correct), side=max(pictures.shape[2:]))
    captions = [f"{class_names[int(t)]} / {class_names[int(p)]} {s:.2f}"
                for t, p, s in zip(label.tolist(), predicted.tolist(), probability.tolist())]
    colors = [(0, 120, 0) if right else (200, 0, 0) for right in correct.tolist()]
    return captioned(tiles, captions, colors)


def classification_grid(pictures: torch.Tensor, label: torch.Tensor, pred: torch.Tensor,
                        class_names: list[str] | None = None, max_images: int = 32) -> torch.Tensor:
    """One (3, H, W) grid of the first `max_images` samples, captioned `true / predicted`."""
    n = min(max_images, len(pictures))
    names = class_names or [str(i) for i in range(pred.shape[1])]
    return make_grid(classification_tiles(pictures[:n], label[:n], pred[:n], names), nrow=8, padding=2,
                     pad_value=1.0)


def enlarged(pictures: torch.Tensor, side: int) -> torch.Tensor:
    """Pictures whose `side` is below 128 pixels, scaled up by a whole factor (nearest
    neighbour, so pixels stay sharp and masks keep their colours) to be seen at all."""
    scale = max(1, 128 // side)
    return torch.nn.functional.interpolate(pictures, scale_factor=scale, mode="nearest")


def save_classification_pngs(pictures: torch.Tensor, label: torch.Tensor, pred: torch.Tensor,
                             class_names: list[str], folder: Path, indices: list[int]) -> None:
    """One PNG per sample, `<index>_true-<name>_pred-<name>.png`, enlarged when small and
    captioned `true / predicted`."""
    folder.mkdir(parents=True, exist_ok=True)
    predicted = pred.argmax(1)
    pictures = classification_tiles(pictures, label, pred, class_names)
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


def titled_with_legend(grid: torch.Tensor, titles: list[str], classes: list[int],
                       class_names: list[str]) -> torch.Tensor:
    """`grid` (3, H, W) under one title per column (its equal parts) and above a legend: a
    swatch of each of `classes`' palette colours with the class's name."""
    face = font(12)
    width = grid.shape[2]
    entries = [(PALETTE[c], class_names[c] if c < len(class_names) else str(c)) for c in classes]
    lines, line, x = [], [], 4
    for color, name in entries:  # the legend's entries, wrapped onto as many lines as they need
        step = 18 + text_width(name, face) + 14
        if line and x + step > width:
            lines, line, x = [*lines, line], [], 4
        line.append((x, color, name))
        x += step
    lines = [*lines, line] if line else lines
    canvas = Image.new("RGB", (width, 20 + grid.shape[1] + 18 * len(lines) + 4), WHITE)
    canvas.paste(to_pil_image(grid.clamp(0, 1)), (0, 20))
    draw = ImageDraw.Draw(canvas)
    for index, title in enumerate(titles):
        draw.text(((2 * index + 1) * width // (2 * len(titles)), 10), title, fill=BLACK, font=face, anchor="mm")
    for row, entries_of_line in enumerate(lines):
        y = 20 + grid.shape[1] + 2 + 18 * row
        for x, color, name in entries_of_line:
            draw.rectangle((x, y + 2, x + 13, y + 15), fill=tuple((color * 255).round().int().tolist()),
                           outline=(150, 150, 150))
            draw.text((x + 18, y + 9), name, fill=BLACK, font=face, anchor="lm")
    return to_tensor(canvas)


SEGMENTATION_TITLES = ["input", "prediction", "truth"]


def segmentation_grid(pictures: torch.Tensor, label: torch.Tensor, pred: torch.Tensor,
                      class_names: list[str] | None = None, max_images: int = 8,
                      captions: list[str] | None = None) -> torch.Tensor:
    """One (3, H, W) grid: a row per sample of input | prediction | truth (enlarged when
    small), under column titles, above a legend of the classes shown; `captions` (one per
    row) are written under the rows."""
    n = min(max_images, len(pictures))
    pred_class = pred[:n].argmax(1)
    rows = enlarged(segmentation_rows(pictures[:n], label[:n], pred_class), max(pictures.shape[2:]))
    if captions is not None:
        rows = captioned(rows, captions[:n], [BLACK] * n)
    grid = make_grid(rows, nrow=1, padding=2, pad_value=1.0)
    shown = torch.cat([pred_class.flatten(), label[:n].flatten().cpu()]).unique().tolist()
    names = class_names or [str(i) for i in range(pred.shape[1])]
    return titled_with_legend(grid, SEGMENTATION_TITLES, [c for c in shown if 0 <= c < 256], names)


def save_segmentation_pngs(pictures: torch.Tensor, label: torch.Tensor, pred: torch.Tensor,
                           folder: Path, indices: list[int], class_names: list[str] | None = None) -> None:
    """Per sample `<index>.png` (input | prediction | truth, enlarged when small, titled, with
    a legend) and `<index>_overlay.png` (the prediction over the picture)."""
    folder.mkdir(parents=True, exist_ok=True)
    pred_class = pred.argmax(1)
    overlays = enlarged(overlay(pictures, pred_class), max(pictures.shape[2:]))
    for offset in range(len(pictures)):
        name = f"{indices[offset]:06d}"
        save_image(segmentation_grid(pictures[offset:offset + 1], label[offset:offset + 1],
                                     pred[offset:offset + 1], class_names), folder / f"{name}.png")
        save_image(overlays[offset], folder / f"{name}_overlay.png")


def save_palette_mask(mask: torch.Tensor, path: Path) -> None:
    """A class-id mask (H, W) as a palette PNG (mode P): each pixel stores its class id, and
    the file opens in any viewer as a picture in the fixed colours above. Ids above 255 do
    not fit a PNG palette and are refused by the caller."""
    image = Image.fromarray(mask.detach().cpu().to(torch.uint8).numpy())  # mode L
    image.putpalette((PALETTE * 255).round().to(torch.uint8).flatten().tolist())  # L becomes P
    image.save(path)
