"""Mask (+ depth) -> objects: "where is the door?" (ROS-free; the node wraps them in ObjectArray).

An object is one connected region (8-connected by default) of one label in the mask, with
at least ``min_pixels`` pixels. For each: its pixel count, 2D bounding box on the mask's
grid, mean confidence of its pixels, and, when a depth image is given, its 3D centroid
and extent in the camera's optical frame (x right, y down, z forward; metres).

Depth inside a region is not all the object's: a registered depth image bleeds the
background into an object's outline (and the mask's own edges are coarse). Points whose
depth lies farther than ``depth_band`` metres from the region's median depth are left
out of the 3D values; the centroid is the mean of the rest and the extent their
per-axis span (max - min). When no depth lies within ``depth_band`` of the median (the
region's depths split into groups farther apart than 2 x ``depth_band``, e.g. half the
region on a chair at 1 m and half on the wall at 3 m), the band is centred instead on the
region's largest depth group: the valid depth with the most depths within ``depth_band``
of it, the nearest such depth on a tie.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from .geometry import Intrinsics, _on_grid

#: connectivity of a region: 8 (pixels touching at a corner are connected) or 4
CONNECTIVITIES = (4, 8)


@dataclass
class DetectedObject:
    """One connected region of one label. ``bbox`` = (x_min, y_min, width, height) in mask
    pixels (sensor_msgs/RegionOfInterest's x_offset, y_offset, width, height); ``centroid``
    and ``extent`` (x, y, z metres) are NaN without depth (or without a valid depth pixel);
    ``depth_pixels`` counts the pixels the 3D values were computed from."""

    label_index: int
    pixel_count: int
    bbox: tuple
    confidence: float
    centroid: np.ndarray
    extent: np.ndarray
    depth_pixels: int = 0


def find_objects(mask: np.ndarray, label_count: int, confidence: Optional[np.ndarray] = None,
                 depth_m: Optional[np.ndarray] = None, intrinsics: Optional[Intrinsics] = None,
                 min_pixels: int = 1, connectivity: int = 8, depth_band: float = 0.5,
                 min_depth: float = 0.0, max_depth: float = float("inf")) -> List[DetectedObject]:
    """Objects of labels ``0 .. label_count - 1`` in ``mask`` [H, W] (other values, such as
    unknown_value, are not objects), largest first. ``confidence`` [h, w] (the best label's
    probability, any size: resampled to the mask) gives each object's mean confidence (NaN
    without it). ``depth_m`` (metres, NaN = no return; any size, resampled) with the color
    camera's ``intrinsics`` gives the 3D values; depths outside [min_depth, max_depth] are
    ignored."""
    from scipy import ndimage

    if mask.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {mask.shape}")
    if min_pixels < 1:
        raise ValueError(f"min_pixels must be >= 1, got {min_pixels}")
    if connectivity not in CONNECTIVITIES:
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    if not depth_band > 0:
        raise ValueError(f"depth_band must be > 0 metres, got {depth_band}")
    if (depth_m is None) != (intrinsics is None):
        raise ValueError("depth_m and intrinsics go together: give both or neither")
    height, width = mask.shape
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    best = _on_grid(confidence, height, width).astype(np.float32) if confidence is not None else None
    points = None
    if depth_m is not None:
        k = intrinsics.scaled(width, height)
        z = _on_grid(depth_m, height, width).astype(np.float32)
        z = np.where((z >= min_depth) & (z <= max_depth), z, np.nan)  # NaN compares False: stays NaN
        u = (np.arange(width, dtype=np.float32) - np.float32(k.cx)) / np.float32(k.fx)
        v = (np.arange(height, dtype=np.float32) - np.float32(k.cy)) / np.float32(k.fy)
        points = (u[None, :] * z, v[:, None] * z, z)  # each [H, W]
    objects = []
    for label in np.unique(mask):
        if label >= label_count:
            continue
        components, count = ndimage.label(mask == label, structure=structure)
        if count == 0:
            continue
        sizes = np.bincount(components.ravel(), minlength=count + 1)
        boxes = ndimage.find_objects(components)
        for index in np.nonzero(sizes[1:] >= min_pixels)[0]:
            rows, cols = boxes[index]
            region = components[rows, cols] == index + 1
            conf = float(best[rows, cols][region].mean()) if best is not None else float("nan")
            centroid, extent, used = _position(points, rows, cols, region, depth_band)
            objects.append(DetectedObject(int(label), int(sizes[index + 1]),
                                          (cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start),
                                          conf, centroid, extent, used))
    objects.sort(key=lambda obj: (-obj.pixel_count, obj.label_index, obj.bbox[1], obj.bbox[0]))
    return objects


def _position(points, rows, cols, region, depth_band: float):
    """(centroid, extent, pixels used) of a region's points, NaN when it has no usable depth."""
    nan = np.full(3, np.nan, dtype=np.float32)
    if points is None:
        return nan, nan.copy(), 0
    x, y, z = (values[rows, cols][region] for values in points)
    valid = np.isfinite(z)
    if not valid.any():
        return nan, nan.copy(), 0
    centre = np.median(z[valid])
    if not (np.abs(z[valid] - centre) <= depth_band).any():  # the median falls between depth groups
        centre = _largest_group_centre(z[valid], depth_band)
    keep = valid & (np.abs(z - centre) <= depth_band)
    xyz = np.stack([x[keep], y[keep], z[keep]], axis=1)  # [n, 3]
    return xyz.mean(axis=0).astype(np.float32), (xyz.max(axis=0) - xyz.min(axis=0)).astype(np.float32), int(len(xyz))


def _largest_group_centre(depths: np.ndarray, depth_band: float) -> float:
    """The depth [n] with the most depths within ``depth_band`` of it (the smallest on a tie)."""
    ordered = np.sort(depths)
    counts = (np.searchsorted(ordered, ordered + depth_band, side="right")
              - np.searchsorted(ordered, ordered - depth_band, side="left"))
    return float(ordered[int(np.argmax(counts))])  # argmax: the first (nearest) of equal counts
