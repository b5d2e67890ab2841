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


def _text_width(font, text: str) -> float:
    """Width in pixels of ``text`` in ``font`` (the default bitmap font has getlength from Pillow 9.2)."""
    return font.getlength(text) if hasattr(font, "getlength") else font.getsize(text)[0]

def add_legend(image: np.ndarray, labels: Sequence[str], colors: Sequence[Color]) -> np.ndarray:
    """Append a legend column (color swatch + label name per row) to the right of ``image``;
    a label with synonyms ('person; man; woman') shows its first name and how many more."""
    labels = [_legend_text(label) for label in labels]
    font = ImageFont.load_default()
    row_height = 16
    width = 24 + max((int(_text_width(font, label)) for label in labels), default=0) + 8
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


def topdown_view(xyz: np.ndarray, labels: np.ndarray, colors: Sequence[Color], objects=(), range_m: float = 6.0,
                 size: int = 320) -> np.ndarray:
    """A bird's-eye picture [size, size, 3] of labelled points in a camera's optical frame:
    x (right) across, z (forward) up from the camera at the bottom centre, y (height) dropped;
    ``range_m`` metres across and ahead, a grid line every metre. Points take their label's
    color (unknown values grey). ``objects``: (name, label index, x, z) drawn as a ringed dot
    with the name."""
    canvas = np.full((size, size, 3), 255, dtype=np.uint8)
    scale = size / range_m  # pixels per metre
    for metre in range(1, int(range_m) + 1):
        canvas[max(0, size - 1 - int(metre * scale)), :] = 225
        for sign in (-1, 1):
            column = int(size / 2 + sign * metre * scale)
            if 0 <= column < size:
                canvas[:, column] = 225
    table = np.full((max(int(labels.max(initial=0)) + 1, len(colors)), 3), 150, dtype=np.uint8)
    table[:len(colors)] = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    finite = np.isfinite(xyz).all(axis=1)
    xyz, labels = xyz[finite], labels[finite]
    order = np.argsort(-xyz[:, 1], kind="stable")  # lowest first (y points down): seen from above,
    xyz, labels = xyz[order], labels[order]        # what stands higher covers the floor under it
    columns = np.floor(size / 2 + xyz[:, 0] * scale).astype(np.int64)
    rows = np.floor(size - 1 - xyz[:, 2] * scale).astype(np.int64)
    inside = (columns >= 0) & (columns < size) & (rows >= 0) & (rows < size)
    canvas[rows[inside], columns[inside]] = table[labels[inside]]
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    draw.polygon([(size / 2, size - 12), (size / 2 - 6, size - 1), (size / 2 + 6, size - 1)], fill=(0, 0, 0))
    font = ImageFont.load_default()
    for name, index, x, z in objects:
        if not (np.isfinite(x) and np.isfinite(z)):
            continue
        u, v = size / 2 + x * scale, size - 1 - z * scale
        fill = tuple(int(c) for c in table[index]) if index < len(table) else (150, 150, 150)
        draw.ellipse([u - 5, v - 5, u + 5, v + 5], fill=fill, outline=(0, 0, 0), width=2)
        draw.text((u + 7, v - 6), _legend_text(name), fill=(0, 0, 0), font=font)
    draw.text((4, 4), f"top view, {range_m:g} m across, 1 m grid", fill=(90, 90, 90), font=font)
    return np.asarray(image)
