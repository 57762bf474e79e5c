"""Pictures of an epoch's counts: the confusion matrix with class names, and one bar per class.

Drawn with Pillow, which torchvision already brings (no plotting library to install), and
returned as (3, H, W) tensors in [0, 1]: what TensorBoard's add_image and torchvision's
save_image take. Text uses Pillow's default font, so nothing is looked up on the machine.
"""

import math

import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.transforms.functional import to_tensor

WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (110, 110, 110)
BAR = (60, 110, 190)
# More classes than this are not drawn (1000 ImageNet classes would make an 8000-pixel matrix
# every epoch); confusion.csv still holds every count.
MAX_CLASSES_DRAWN = 64


def font(size: int = 12) -> ImageFont.ImageFont:
    """Pillow's default font at `size` pixels (older Pillow: its one fixed-size bitmap font)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1, or built without FreeType
        return ImageFont.load_default()


def text_width(text: str, face: ImageFont.ImageFont) -> int:
    left, _, right, _ = face.getbbox(text)
    return int(right - left)


def short_count(count: float) -> str:
    """A count in at most 4 characters: 987, 12k, 3.4M (segmentation counts pixels)."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= limit:
            value = count / limit
            return f"{value:.1f}{suffix}" if value < 9.95 else f"{value:.0f}{suffix}"
    return f"{count:.0f}"


def blue(share: float) -> tuple[int, int, int]:
    """White (0) to dark blue (1): the colour of a cell holding `share` of its row."""
    share = 0.0 if math.isnan(share) else min(max(share, 0.0), 1.0)
    return int(255 - 225 * share), int(255 - 185 * share), int(255 - 75 * share)


def confusion_picture(confusion: torch.Tensor, class_names: list[str], title: str = "") -> torch.Tensor:
    """The confusion matrix (rows: true class, columns: predicted), each cell coloured by its
    share of the row (so a class's recall is its diagonal cell) with its count written in it
    while the cells are large enough, class names on both axes."""
    counts = confusion.detach().double().cpu()
    n = len(class_names)
    cell = max(8, min(44, 1100 // max(n, 1)))
    face = font(max(7, min(12, cell - 4)))
    names = [name if len(name) <= 16 else name[:15] + "…" for name in class_names]
    margin = max(text_width(name, face) for name in names) + 10
    top = 22 + margin  # the title, then the predicted classes' names, written upwards
    title = title or "rows: true class, columns: predicted; colour: share of the row"
    size = (max(margin + n * cell + 10, text_width(title, font(12)) + 10), top + n * cell + 10)
    image = Image.new("RGB", size, WHITE)
    draw = ImageDraw.Draw(image)
    draw.text((4, 4), title, fill=BLACK, font=font(12))
    shares = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    for row in range(n):
        y = top + row * cell
        draw.text((margin - 6 - text_width(names[row], face), y + cell // 2), names[row], fill=BLACK, font=face,
                  anchor="lm")
        for column in range(n):
            x = margin + column * cell
            share = float(shares[row, column])
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=blue(share), outline=(220, 220, 220))
            if cell >= 26 and counts[row, column] > 0:
                draw.text((x + cell // 2, y + cell // 2), short_count(float(counts[row, column])),
                          fill=WHITE if share > 0.5 else BLACK, font=face, anchor="mm")
    for column in range(n):  # each predicted class's name, written upwards above its column
        label = Image.new("RGB", (margin, cell), WHITE)
        ImageDraw.Draw(label).text((margin - 6, cell // 2), names[column], fill=BLACK, font=face, anchor="rm")
        image.paste(label.rotate(90, expand=True), (margin + column * cell, 22))
    return to_tensor(image)


def bars_picture(values: dict[str, float], title: str) -> torch.Tensor:
    """One horizontal bar per class for a value in [0, 1] (accuracy, IoU), the value written
    beside it; `n/a` for a class the set does not hold (NaN)."""
    face = font(12)
    names = [name if len(name) <= 24 else name[:23] + "…" for name in values]
    margin, length, row = max(text_width(name, face) for name in names) + 12, 300, 18
    image = Image.new("RGB", (margin + length + 60, 28 + row * len(values) + 6), WHITE)
    draw = ImageDraw.Draw(image)
    draw.text((4, 4), title, fill=BLACK, font=face)
    for index, (name, value) in enumerate(zip(names, values.values())):
        y = 28 + index * row
        draw.text((margin - 6, y + row // 2), name, fill=BLACK, font=face, anchor="rm")
        draw.rectangle((margin, y + 2, margin + length, y + row - 3), outline=(210, 210, 210))
        if math.isnan(value):
            draw.text((margin + 4, y + row // 2), "n/a", fill=GREY, font=face, anchor="lm")
            continue
        draw.rectangle((margin, y + 2, margin + round(length * min(max(value, 0.0), 1.0)), y + row - 3), fill=BAR)
        draw.text((margin + length + 6, y + row // 2), f"{value:.3f}", fill=BLACK, font=face, anchor="lm")
    return to_tensor(image)
