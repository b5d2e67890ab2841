"""Decoded Pillow images -> ``HxWx3 uint8`` RGB, in one place for the CLI and the node.

16-bit images (PNG "I;16", or "I" as Pillow opens some of them) keep their top 8 bits
(``value >> 8``: 65535 -> 255), the same rule as raw mono16/16UC1 frames. Pillow's own
``convert("RGB")`` clips them instead, which turns an ordinary 16-bit PNG white.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

#: Pillow modes holding more than 8 bits per pixel, read as 16-bit gray
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def sixteen_to_eight_bits(values: np.ndarray) -> np.ndarray:
    """16-bit intensities (any integer dtype; clipped to 0..65535) -> uint8 top bits."""
    if values.dtype == np.uint16:
        return (values >> 8).astype(np.uint8)
    return (np.clip(values, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)


def pil_to_rgb(image: Image.Image) -> np.ndarray:
    """A decoded Pillow image as a writable ``HxWx3 uint8`` RGB array; ValueError for
    floating-point images, whose range is unknown."""
    if image.mode in SIXTEEN_BIT_MODES:
        gray = sixteen_to_eight_bits(np.asarray(image))  # [H, W]
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "F":
        raise ValueError(f"floating-point image (Pillow mode {image.mode!r}) has no defined 0..255 "
                         "range; accepted: 8-bit or 16-bit gray, RGB, RGBA, palette images")
    return np.array(image.convert("RGB"))


def resize_nearest(values: np.ndarray, size: tuple) -> np.ndarray:
    """Nearest-neighbour resize of ``values`` [H, W, ...] (a label mask, a depth image, an RGB
    image) to size (height, width), pixel centres aligned: output pixel i samples input pixel
    floor((i + 0.5) * H / height). Keeps the dtype and never invents values (works for any
    ignore_index, and never blends depths across an object edge)."""
    height, width = values.shape[:2]
    new_h, new_w = size
    rows = np.minimum((np.arange(new_h) + 0.5) * height / new_h, height - 1).astype(np.int64)
    cols = np.minimum((np.arange(new_w) + 0.5) * width / new_w, width - 1).astype(np.int64)
    return values[rows[:, None], cols[None, :]]
