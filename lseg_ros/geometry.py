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

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .images import resize_nearest

#: depth encodings accepted, and the factor to metres
DEPTH_SCALES = {"16UC1": 0.001, "mono16": 0.001, "32FC1": 1.0}
#: largest camera width or height accepted (camera_info): 16-bit sizes, far above any camera
MAX_CAMERA_SIDE = 65535
#: focal lengths (pixels) accepted, relative to the image side along the same axis: from
#: side / 100 (a 178.9 degree field of view, past any pinhole lens) to 1000 * side (0.06 degrees)
FOCAL_RANGE = (0.01, 1000.0)
#: principal point accepted, relative to the image side: [-1, 2] * side (cropped images keep
#: their original cx, cy, which then lie off-centre; not farther than a full image away)
PRINCIPAL_RANGE = (-1.0, 2.0)


def check_intrinsics(k: Sequence[float], width: int, height: int) -> None:
    """ValueError naming the first value of a camera_info (row-major 3x3 ``k``, size) that
    cannot be a pinhole camera's: a size outside 1..MAX_CAMERA_SIDE, a K that is not 9
    finite values with last row (0, 0, 1), focal lengths outside FOCAL_RANGE times the
    image side, a principal point outside PRINCIPAL_RANGE times the image side."""
    for name, side in (("width", width), ("height", height)):
        if not 1 <= side <= MAX_CAMERA_SIDE:
            raise ValueError(f"{name} {side} out of range; accepted: 1..{MAX_CAMERA_SIDE} pixels")
    k = [float(value) for value in k]
    if len(k) != 9:
        raise ValueError(f"K has {len(k)} values; accepted: 9 (row-major 3x3)")
    if not np.isfinite(k).all():
        raise ValueError(f"K {k} has a non-finite value; accepted: finite values")
    if k[6:] != [0.0, 0.0, 1.0]:
        raise ValueError(f"K's last row {k[6:]}; accepted: [0, 0, 1] (a pinhole camera matrix)")
    for name, value, side, (low, high) in (("fx", k[0], width, FOCAL_RANGE), ("fy", k[4], height, FOCAL_RANGE),
                                           ("cx", k[2], width, PRINCIPAL_RANGE),
                                           ("cy", k[5], height, PRINCIPAL_RANGE)):
        if not low * side <= value <= high * side:
            raise ValueError(f"{name} {value:g} out of range for a {width}x{height} camera; accepted: "
                             f"[{low * side:g}, {high * side:g}] pixels ({low:g} to {high:g} times the image side)")


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
        """From a row-major 3x3 K (``CameraInfo.k``); ValueError names an unusable one
        (:func:`check_intrinsics`)."""
        check_intrinsics(k, width, height)
        k = [float(value) for value in k]
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


def points_stride(shape: tuple, stride: int, max_points: int) -> int:
    """The smallest pixel stride >= ``stride`` whose grid on a ``shape`` (height, width) mask
    has at most ``max_points`` pixels (so at most that many points)."""
    if stride < 1 or max_points < 1:
        raise ValueError(f"need stride >= 1 and max_points >= 1, got {stride}, {max_points}")
    height, width = shape
    stride = max(stride, math.ceil(math.sqrt(height * width / max_points)))  # a lower bound
    while -(-height // stride) * -(-width // stride) > max_points:
        stride += 1
    return stride


def _sampled(values: np.ndarray, height: int, width: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``values`` resized to ``height x width`` by nearest neighbour (images.resize_nearest's
    rule), read only at the grid pixels (rows, cols): memory in the points, not the pixels."""
    src_h, src_w = values.shape[:2]
    if (src_h, src_w) != (height, width):
        rows = np.minimum((rows + 0.5) * src_h / height, src_h - 1).astype(np.int64)
        cols = np.minimum((cols + 0.5) * src_w / width, src_w - 1).astype(np.int64)
    return values[rows, cols]


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
    grid_rows = np.arange(0, height, stride)  # the grid's pixel rows and columns on the mask
    grid_cols = np.arange(0, width, stride)
    z = _sampled(depth_m, height, width, grid_rows[:, None], grid_cols[None, :])  # [h / stride, w / stride]
    labels = mask[::stride, ::stride]
    keep = (z >= min_depth) & (z <= max_depth)  # NaN compares False: no return is dropped
    if unknown_value is not None:
        keep &= labels != unknown_value
    rows, cols = np.nonzero(keep)
    z = z[rows, cols]
    v, u = grid_rows[rows], grid_cols[cols]  # the points' pixels on the mask
    xyz = np.empty((len(z), 3), dtype=np.float32)
    xyz[:, 0] = (u.astype(np.float32) - np.float32(k.cx)) * z / np.float32(k.fx)
    xyz[:, 1] = (v.astype(np.float32) - np.float32(k.cy)) * z / np.float32(k.fy)
    xyz[:, 2] = z
    if rgb is not None:
        colors = _sampled(rgb, height, width, v, u)
    else:
        colors = np.zeros((len(z), 3), dtype=np.uint8)
    if confidence is not None:
        conf = _sampled(confidence, height, width, v, u).astype(np.float32)
    else:
        conf = np.full(len(z), np.nan, dtype=np.float32)
    return LabelledPoints(xyz, np.ascontiguousarray(colors, dtype=np.uint8),
                          labels[rows, cols].astype(np.uint16), conf)
