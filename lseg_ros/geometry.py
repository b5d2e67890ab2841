"""Depth + mask -> labelled 3D points (ROS-free; the node wraps the result in PointCloud2).

Conventions, as ROS cameras use them:
* depth is registered to the color image (RealSense ``aligned_depth_to_color``, ZED
  ``depth_registered``), any size: it is resampled to the mask's grid by nearest neighbour
  (no averaging across object edges, which would invent points between them);
* 16-bit depth (``16UC1``/``mono16``) is millimetres, ``32FC1`` metres; 0, NaN and inf
  mean "no return";
* intrinsics are the color camera's K (plain pinhole; distortion is ignored: use a
  rectified image or accept the lens's error), scaled to the mask's size the way
  ``image_proc`` resize scales K (fx, cx by the width ratio, fy, cy by the height ratio);
* points are in the optical frame of the image: x right, y down, z forward, metres.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .images import resize_nearest

#: depth encodings accepted, and the factor to metres
DEPTH_SCALES = {"16UC1": 0.001, "mono16": 0.001, "32FC1": 1.0}


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of an image of ``width x height`` pixels."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_k(cls, k: Sequence[float], width: int, height: int) -> "Intrinsics":
        """From a row-major 3x3 K (``CameraInfo.k``); ValueError names an unusable one."""
        k = [float(value) for value in k]
        if len(k) != 9:
            raise ValueError(f"K must have 9 values, got {len(k)}")
        if width <= 0 or height <= 0:
            raise ValueError(f"camera size {width}x{height} must be > 0")
        if not (np.isfinite(k).all() and k[0] > 0 and k[4] > 0):
            raise ValueError(f"K {k} needs finite values and positive focal lengths fx, fy")
        return cls(k[0], k[4], k[2], k[5], int(width), int(height))

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """For the image resized to ``width x height`` (image_proc's rule, as ~/camera_info)."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, int(width), int(height))


def depth_to_metres(depth: np.ndarray, encoding: str) -> np.ndarray:
    """``HxW`` float32 metres with NaN where there is no return (0, NaN, inf)."""
    if encoding not in DEPTH_SCALES:
        raise ValueError(f"depth encoding {encoding!r} not supported; accepted: {', '.join(DEPTH_SCALES)} "
                         "(16-bit in millimetres, 32FC1 in metres)")
    if depth.ndim != 2:
        raise ValueError(f"depth must be HxW, got shape {depth.shape}")
    metres = depth.astype(np.float32) * np.float32(DEPTH_SCALES[encoding])
    metres[~np.isfinite(metres) | (metres <= 0)] = np.nan
    return metres


def _on_grid(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """``values`` on the mask's ``height x width`` grid (nearest neighbour; as is when it already is)."""
    return values if values.shape[:2] == (height, width) else resize_nearest(values, (height, width))


@dataclass
class LabelledPoints:
    """N points: ``xyz`` [N, 3] float32 metres (optical frame), ``rgb`` [N, 3] uint8,
    ``label`` [N] uint16 (the mask value), ``confidence`` [N] float32."""

    xyz: np.ndarray
    rgb: np.ndarray
    label: np.ndarray
    confidence: np.ndarray

    def __len__(self) -> int:
        return len(self.xyz)


def labelled_points(depth_m: np.ndarray, mask: np.ndarray, intrinsics: Intrinsics,
                    rgb: Optional[np.ndarray] = None, confidence: Optional[np.ndarray] = None, stride: int = 1,
                    min_depth: float = 0.0, max_depth: float = float("inf"),
                    unknown_value: Optional[int] = None) -> LabelledPoints:
    """Back-project every ``stride``-th pixel of the mask's grid that has a depth in
    [min_depth, max_depth]: x = (u - cx) z / fx, y = (v - cy) z / fy, z = depth, with (u, v)
    the pixel's integer coordinates (as depth_image_proc). ``depth_m``, ``rgb`` and
    ``confidence`` are resampled to the mask's size; ``intrinsics`` are scaled to it.
    Pixels whose label is ``unknown_value`` are left out unless it is None."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if not 0 <= min_depth < max_depth:
        raise ValueError(f"need 0 <= min_depth < max_depth, got {min_depth}, {max_depth}")
    height, width = mask.shape
    k = intrinsics.scaled(width, height)
    z = _on_grid(depth_m, height, width)[::stride, ::stride]
    labels = mask[::stride, ::stride]
    keep = (z >= min_depth) & (z <= max_depth)  # NaN compares False: no return is dropped
    if unknown_value is not None:
        keep &= labels != unknown_value
    rows, cols = np.nonzero(keep)
    z = z[rows, cols]
    v = (rows * stride).astype(np.float32)
    u = (cols * stride).astype(np.float32)
    xyz = np.empty((len(z), 3), dtype=np.float32)
    xyz[:, 0] = (u - np.float32(k.cx)) * z / np.float32(k.fx)
    xyz[:, 1] = (v - np.float32(k.cy)) * z / np.float32(k.fy)
    xyz[:, 2] = z
    if rgb is not None:
        colors = _on_grid(rgb, height, width)[::stride, ::stride][rows, cols]
    else:
        colors = np.zeros((len(z), 3), dtype=np.uint8)
    if confidence is not None:
        conf = _on_grid(confidence, height, width)[::stride, ::stride][rows, cols].astype(np.float32)
    else:
        conf = np.full(len(z), np.nan, dtype=np.float32)
    return LabelledPoints(xyz, np.ascontiguousarray(colors, dtype=np.uint8),
                          labels[rows, cols].astype(np.uint16), conf)
