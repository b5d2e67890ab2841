"""Training augmentation and evaluation conversion for segmentation samples.

Both transforms take ``(image uint8 [H, W, 3], mask int [H, W], rng)`` and return
``(image float32 tensor [3, h, w] in [0, 1], mask int64 tensor [h, w])``. Mean/std
normalization is the model's job, not the data pipeline's.

Augmentation is deterministic: every random draw comes from the numpy Generator passed
in. ``TrainTransform.rng_for(index, epoch)`` gives the generator for one sample of one
epoch (the datasets in :mod:`lseg_ros.data.datasets` use it), so results do not depend on
DataLoader worker scheduling.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from ..images import resize_nearest


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [3, H, W] in [0, 1]."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3], got shape {tuple(image.shape)}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (0..255), got dtype {image.dtype}")
    # np.array copies: inputs may be read-only views (PIL buffers, flips, crops)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div_(255.0).contiguous()


def to_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [H, W, 3] -> float [3, H, W] in [0, 1]; mask -> int64 [H, W]."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3], got shape {tuple(image.shape)}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {tuple(mask.shape)} must equal the image's "
                         f"{tuple(image.shape[:2])}")
    return image_to_tensor(image), torch.from_numpy(np.array(mask, dtype=np.int64))


class EvalTransform:
    """Only converts to tensors; ``rng`` is accepted and ignored."""

    def __call__(self, image: np.ndarray, mask: np.ndarray,
                 rng: Optional[np.random.Generator] = None):
        return to_tensors(image, mask)

    def __repr__(self) -> str:
        return "EvalTransform()"


def _pair(size: Union[int, Sequence[int]], what: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ValueError(f"{what} must be a positive int or (height, width), got {size!r}")
    return pair  # type: ignore[return-value]


class TrainTransform:
    """Random scale -> colour jitter -> pad -> random crop -> horizontal flip.

    crop_size: int or (height, width); None keeps the scaled size. Images smaller than
        the crop are padded with 0, masks with ``ignore_index``.
    scale_range: (low, high) factors drawn uniformly; (1, 1) disables scaling.
    flip: flip image and mask together with probability 0.5.
    jitter: brightness/contrast/saturation strength s (factors drawn from [1-s, 1+s]),
        or a (brightness, contrast, saturation) triple; 0 disables.
    seed: base seed of ``rng_for`` and of the fallback generator used when no rng is
        passed to ``__call__``.
    """

    def __init__(self, crop_size: Union[int, Sequence[int], None] = 224,
                 scale_range: Sequence[float] = (0.5, 2.0), flip: bool = True,
                 jitter: Union[float, Sequence[float]] = 0.3, seed: int = 0,
                 ignore_index: int = 255):
        self.crop_size = None if crop_size is None else _pair(crop_size, "crop_size")
        low, high = (float(v) for v in scale_range)
        if not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range!r}")
        self.scale_range = (low, high)
        self.flip = bool(flip)
        strengths = (jitter,) * 3 if isinstance(jitter, (int, float)) else tuple(jitter)
        if len(strengths) != 3 or not all(0 <= s < 1 for s in strengths):
            raise ValueError("jitter must be a strength in [0, 1) or three of them "
                             f"(brightness, contrast, saturation), got {jitter!r}")
        self.jitter = tuple(float(s) for s in strengths)
        self.seed = int(seed)
        self.ignore_index = int(ignore_index)
        self._fallback_rng = np.random.default_rng(self.seed)

    def rng_for(self, index: int, epoch: int = 0) -> np.random.Generator:
        """The generator for sample ``index`` in ``epoch``: same inputs, same draws."""
        return np.random.default_rng([self.seed, int(epoch), int(index)])

    def __call__(self, image: np.ndarray, mask: np.ndarray,
                 rng: Optional[np.random.Generator] = None):
        rng = self._fallback_rng if rng is None else rng
        image, mask = np.asarray(image), np.asarray(mask)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} must equal the image's {image.shape[:2]}")
        image, mask = self._random_scale(image, mask, rng)
        image = self._color_jitter(image, rng)
        if self.crop_size is not None:
            image, mask = self._pad_to_crop(image, mask)
            image, mask = self._random_crop(image, mask, rng)
        if self.flip and rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        return to_tensors(image, mask)

    def _random_scale(self, image, mask, rng):
        low, high = self.scale_range
        if low == high == 1.0:
            return image, mask
        factor = rng.uniform(low, high)
        height, width = mask.shape
        new_h, new_w = max(1, round(height * factor)), max(1, round(width * factor))
        image = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
        return image, resize_nearest(mask, (new_h, new_w))

    def _color_jitter(self, image, rng):
        if not any(self.jitter):
            return image
        brightness, contrast, saturation = (rng.uniform(1 - s, 1 + s) for s in self.jitter)
        pixels = image.astype(np.float32)  # [H, W, 3], 0..255
        pixels *= brightness
        gray = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # [H, W]
        pixels = (pixels - gray.mean()) * contrast + gray.mean()
        gray = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        pixels = (pixels - gray[..., None]) * saturation + gray[..., None]
        return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)

    def _pad_to_crop(self, image, mask):
        crop_h, crop_w = self.crop_size
        height, width = mask.shape
        pad_h, pad_w = max(0, crop_h - height), max(0, crop_w - width)
        if pad_h == 0 and pad_w == 0:
            return image, mask
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=0)
        mask = np.pad(mask, ((0, pad_h), (0, pad_w)), constant_values=self.ignore_index)
        return image, mask

    def _random_crop(self, image, mask, rng):
        crop_h, crop_w = self.crop_size
        height, width = mask.shape
        top = int(rng.integers(0, height - crop_h + 1))
        left = int(rng.integers(0, width - crop_w + 1))
        return (image[top:top + crop_h, left:left + crop_w],
                mask[top:top + crop_h, left:left + crop_w])

    def __repr__(self) -> str:
        return (f"TrainTransform(crop_size={self.crop_size}, scale_range={self.scale_range}, "
                f"flip={self.flip}, jitter={self.jitter}, seed={self.seed})")
