"""Image validation, sizing and normalization: the one place an RGB array becomes a model input."""
from __future__ import annotations

import threading
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Validate one image and return it as HxWx3 uint8.

    Accepted: HxWx3 uint8 RGB; HxW or HxWx1 uint8 grayscale (replicated to RGB);
    HxWx4 uint8 RGBA (alpha dropped). Anything else raises ValueError naming it.
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"image dtype must be uint8 (RGB 0..255), got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"image shape must be HxWx3 (RGB), HxW/HxWx1 (gray) or HxWx4 (RGBA), "
                         f"got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image has zero size: {image.shape}")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.shape[2] == 4:
        return image[:, :, :3]
    return image


def split_batch(images) -> Tuple[list, bool]:
    """(list of HxWx3 uint8 images, whether the input was a batch)."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return [as_rgb_uint8(image) for image in images], True
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("empty image batch")
        return [as_rgb_uint8(image) for image in images], True
    return [as_rgb_uint8(images)], False


def model_input_size(height: int, width: int, short_side: int, max_long_side: int,
                     multiple: int) -> Tuple[int, int]:
    """(h, w) with the short side ~short_side, the long side capped, both multiples of ``multiple``."""
    scale = short_side / min(height, width)
    scale = min(scale, max_long_side / max(height, width))

    def snap(value: float) -> int:
        return max(multiple, int(round(value / multiple)) * multiple)

    return snap(height * scale), snap(width * scale)


def mmseg_input_size(height: int, width: int, short_side: int, max_long_side: int) -> Tuple[int, int]:
    """(h, w) as mmseg's ``Resize(scale=(max_long_side, short_side), keep_ratio=True)`` (mmcv
    ``rescale_size``): one factor min(max_long_side / long, short_side / short), each side
    ``int(side * factor + 0.5)``; not rounded to a patch multiple."""
    factor = min(max_long_side / max(height, width), short_side / min(height, width))
    return max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))


class PinnedStaging:
    """A reusable page-locked (pinned) host buffer for uint8 frames: the host-to-device copy
    of a frame is then one asynchronous DMA of its bytes (a pageable array is first copied
    by the driver into its own pinned buffer, synchronously). The buffer is rewritten only
    once the previous copy out of it has finished (a CUDA event); thread-safe."""

    def __init__(self) -> None:
        self._buffer: Optional[torch.Tensor] = None
        self._copied = None  # torch.cuda.Event of the last copy out of the buffer
        self._lock = threading.Lock()

    def upload(self, images: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
        """[B, H, W, 3] uint8 on ``device`` (CUDA) from same-size HxWx3 uint8 images."""
        shape = (len(images),) + tuple(images[0].shape)
        with self._lock:
            if self._copied is not None:
                self._copied.synchronize()
            if self._buffer is None or tuple(self._buffer.shape) != shape:
                self._buffer = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
            host = self._buffer.numpy()
            for index, image in enumerate(images):
                host[index] = image
            batch = self._buffer.to(device, non_blocking=True)
            self._copied = torch.cuda.Event()
            self._copied.record(torch.cuda.current_stream(device))
        return batch


def to_model_input(images: Sequence[np.ndarray], size: Tuple[int, int], mean: Sequence[float],
                   std: Sequence[float], device: torch.device, dtype: torch.dtype, antialias: bool = True,
                   eight_bit: bool = False, staging: Optional[PinnedStaging] = None,
                   memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """uint8 HxWx3 images (same size) -> normalized [B, 3, h, w] on ``device`` in ``dtype``.

    The uint8 frames are copied to the device as they are (through ``staging``'s pinned
    buffer on CUDA when given); conversion, resizing and normalization run on the device.
    Bilinear resampling, antialiased by default; ``antialias=False, eight_bit=True`` is what
    mmcv's ``imresize`` (OpenCV, bilinear, uint8 in and out) gives the papers' pipelines, up
    to OpenCV's 11-bit fixed-point weights (a grey level here and there)."""
    if staging is not None and device.type == "cuda":
        batch = staging.upload(images, device)  # [B, H, W, 3] uint8
    else:
        batch = torch.from_numpy(np.stack(images)).to(device)  # [B, H, W, 3] uint8
    batch = batch.permute(0, 3, 1, 2).float().div_(255.0)  # [B, 3, H, W]
    if tuple(batch.shape[-2:]) != tuple(size):
        batch = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=antialias)
        if eight_bit:
            batch = batch.mul_(255.0).round_().clamp_(0.0, 255.0).div_(255.0)
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return ((batch - mean_t) / std_t).to(dtype).contiguous(memory_format=memory_format)


def window_starts(length: int, window: int, stride: int) -> List[int]:
    """Window offsets along one side: every ``stride`` pixels, the last one flush with the
    border (the references' ``h_grids``/``w_grids`` rule); [0] when the side fits one window."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts
