"""Colors, overlays, legends and heatmaps for masks and confidence maps (numpy + Pillow)."""
from __future__ import annotations

import colorsys
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Color = Tuple[int, int, int]

# Anchors of a perceptually ordered dark-blue -> yellow ramp (viridis-like).
_HEAT_ANCHORS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]],
                         dtype=np.float32)


def label_colors(count: int) -> List[Color]:
    """``count`` well-separated RGB colors; color i belongs to mask value i (stable per index)."""
    colors = []
    for index in range(count):
        hue = (index * 0.618033988749895) % 1.0
        saturation = 0.65 + 0.35 * ((index // 7) % 2)
        value = 0.95 - 0.25 * ((index // 3) % 2)
        red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
        colors.append((int(red * 255), int(green * 255), int(blue * 255)))
    return colors


def colorize_mask(mask: np.ndarray, colors: Sequence[Color], unknown_color: Color = (0, 0, 0)) -> np.ndarray:
    """[H, W] label indices -> [H, W, 3] uint8; values without a color get ``unknown_color``."""
    table = np.zeros((max(int(mask.max(initial=0)) + 1, len(colors)), 3), dtype=np.uint8)
    table[:] = unknown_color
    table[:len(colors)] = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    return table[mask]


def overlay(image: np.ndarray, mask: np.ndarray, colors: Sequence[Color], alpha: float = 0.5) -> np.ndarray:
    """Blend label colors over an RGB image; unknown pixels keep the image."""
    colored = colorize_mask(mask, colors).astype(np.float32)
    known = (mask < len(colors))[..., None]
    blended = image.astype(np.float32) * (1 - alpha) + colored * alpha
    return np.where(known, blended, image).astype(np.uint8)


def add_legend(image: np.ndarray, labels: Sequence[str], colors: Sequence[Color]) -> np.ndarray:
    """Append a legend column (color swatch + label name per row) to the right of ``image``;
    a label with synonyms ('person; man; woman') shows its first name and how many more."""
    labels = [_legend_text(label) for label in labels]
    font = ImageFont.load_default()
    row_height = 16
    width = 24 + max((int(font.getlength(label)) for label in labels), default=0) + 8
    height = max(image.shape[0], row_height * len(labels) + 8)
    canvas = Image.new("RGB", (image.shape[1] + width, height), (255, 255, 255))
    canvas.paste(Image.fromarray(image), (0, 0))
    draw = ImageDraw.Draw(canvas)
    x0 = image.shape[1] + 4
    for row, (label, color) in enumerate(zip(labels, colors)):
        y = 4 + row * row_height
        draw.rectangle([x0, y, x0 + 12, y + 12], fill=tuple(color), outline=(0, 0, 0))
        draw.text((x0 + 18, y), label, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def heatmap(confidence: np.ndarray) -> np.ndarray:
    """[H, W] values in [0, 1] -> [H, W, 3] uint8 on a dark-blue to yellow ramp."""
    position = np.clip(confidence, 0.0, 1.0) * (len(_HEAT_ANCHORS) - 1)
    low = np.floor(position).astype(np.int64).clip(0, len(_HEAT_ANCHORS) - 2)
    fraction = (position - low)[..., None]
    colors = _HEAT_ANCHORS[low] * (1 - fraction) + _HEAT_ANCHORS[low + 1] * fraction
    return colors.astype(np.uint8)


def _legend_text(label: str) -> str:
    names = [name.strip() for name in label.split(";") if name.strip()]
    return label if len(names) <= 1 else f"{names[0]} (+{len(names) - 1})"
