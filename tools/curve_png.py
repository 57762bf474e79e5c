"""A line chart as a PNG, drawn with Pillow (which torchvision brings): matplotlib is not a
dependency of the template, and one chart with a log-scale x axis needs little of it."""

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 900, 560
LEFT, RIGHT, TOP, BOTTOM = 80, 30, 70, 70  # margins around the plot area (the legend is in the top one)


def font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # a scalable font where Pillow has FreeType
    except (TypeError, OSError):  # Pillow before 10.1, or without FreeType: the small bitmap font
        return ImageFont.load_default()


def log_chart(path: Path, x: list[float], series: list[tuple[list[float], str, str]], title: str, x_label: str,
              y_label: str, marker: tuple[float, str] | None = None,
              y_range: tuple[float, float] | None = None) -> None:
    """Write a chart of `series` ((y values, colour, legend text) each) against `x` (> 0, log
    scale) to `path`; `marker`: (x, text) of a vertical line; `y_range`: the y axis (points
    outside are drawn at its edge); default: every finite y value."""
    values = [y for ys, _, _ in series for y in ys if math.isfinite(y)]
    low, high = y_range or (min(values), max(values))
    if high <= low:
        low, high = low - 0.5, high + 0.5
    x_low, x_high = math.log10(min(x)), math.log10(max(x))
    if x_high <= x_low:
        x_low, x_high = x_low - 0.5, x_high + 0.5
    width, height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def point(xv: float, yv: float) -> tuple[float, float]:
        yv = min(max(yv, low), high)
        return (LEFT + (math.log10(xv) - x_low) / (x_high - x_low) * width,
                TOP + (high - yv) / (high - low) * height)

    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    small, large = font(13), font(16)
    draw.rectangle([LEFT, TOP, LEFT + width, TOP + height], outline="black")
    for decade in range(math.ceil(x_low), math.floor(x_high) + 1):  # x ticks at each power of ten
        px = point(10.0 ** decade, low)[0]
        draw.line([px, TOP, px, TOP + height], fill=(225, 225, 225))
        draw.text((px, TOP + height + 6), f"1e{decade}", fill="black", font=small, anchor="mt")
    for k in range(6):  # y ticks
        yv = low + (high - low) * k / 5
        py = point(10.0 ** x_low, yv)[1]
        draw.line([LEFT, py, LEFT + width, py], fill=(235, 235, 235))
        draw.text((LEFT - 6, py), f"{yv:.3g}", fill="black", font=small, anchor="rm")
    for ys, colour, _ in series:  # a line through each run of finite values (NaN: a gap)
        runs: list[list[tuple[float, float]]] = [[]]
        for xv, yv in zip(x, ys):
            if math.isfinite(yv):
                runs[-1].append(point(xv, yv))
            else:
                runs.append([])
        for run in runs:
            if len(run) > 1:
                draw.line(run, fill=colour, width=2)
    if marker is not None:  # its text beside the line, on the side with room
        px = point(marker[0], low)[0]
        draw.line([px, TOP, px, TOP + height], fill="red", width=2)
        right_half = px > LEFT + width * 0.7
        draw.text((px - 4 if right_half else px + 4, TOP + 4), marker[1], fill="red", font=small,
                  anchor="ra" if right_half else "la")
    lx = LEFT
    for _, colour, text in series:  # the legend, in a row above the plot
        draw.line([lx, 48, lx + 25, 48], fill=colour, width=3)
        draw.text((lx + 30, 48), text, fill="black", font=small, anchor="lm")
        lx += 45 + draw.textlength(text, font=small)
    draw.text((WIDTH / 2, 18), title, fill="black", font=large, anchor="mt")
    draw.text((LEFT + width / 2, HEIGHT - 22), x_label, fill="black", font=small, anchor="mt")
    draw.text((14, TOP + height / 2), y_label, fill="black", font=small, anchor="lm")
    image.save(path)
