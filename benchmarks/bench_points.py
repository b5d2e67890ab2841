"""Cost of the labelled point cloud (~/points) next to the segmentation it comes from.

    python benchmarks/bench_points.py                      # ViT-B-16, short side 448, 640x480, stride 1
    python benchmarks/bench_points.py --stride 2 --depth-scale 0.5

Per frame, interleaved in one run (so the ratio holds on a noisy machine): ``segment()``
with confidences, then back-projection (lseg_ros.geometry.labelled_points: depth resampled
to the mask, every valid pixel) and packing into a PointCloud2 (semantic_cloud_msg). The
depth is a 640x480 16UC1 image (a floor plane and a box, 5 % holes). Also timed: the
objects of the mask with their 3D values (lseg_ros.objects.find_objects; random weights
give a fragmented mask, so this is near the worst case). Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np

from bench_args import add_model_arguments
from lseg_ros.config import SegmenterConfig
from lseg_ros.geometry import Intrinsics, depth_to_metres, labelled_points
from lseg_ros.objects import find_objects
from lseg_ros.segmenter import Segmenter

LABELS = ["floor", "wall", "door", "chair", "table", "person", "window", "ceiling", "plant", "cabinet"]


def synthetic_depth(height: int, width: int, scale: float, rng) -> np.ndarray:
    """16UC1 millimetres: a floor 1.2 m below the camera, a wall at 4 m, a box at 2 m, holes."""
    fy = 600.0 * scale
    v = np.arange(height)[:, None].repeat(width, 1).astype(np.float64)
    cy = height / 2
    with np.errstate(divide="ignore"):
        floor = np.where(v > cy, 1.2 * fy / np.maximum(v - cy, 1e-6), np.inf)
    depth = np.minimum(floor, 4.0)
    depth[height // 3: 2 * height // 3, width // 3: width // 2] = 2.0
    depth_mm = np.round(depth * 1000).astype(np.uint16)
    depth_mm[rng.random((height, width)) < 0.05] = 0
    return depth_mm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--depth-scale", type=float, default=1.0, help="depth image size / color image size")
    args = parser.parse_args()

    from std_msgs.msg import Header

    from lseg_ros.ros.conversions import semantic_cloud_msg

    config = SegmenterConfig(backend=args.backend, model=args.model, pretrained=args.pretrained, device=args.device,
                             precision=args.precision, short_side=args.short_side, labels=LABELS)
    segmenter = Segmenter(config)
    rng = np.random.default_rng(0)
    depth_h, depth_w = round(args.height * args.depth_scale), round(args.width * args.depth_scale)
    k = Intrinsics(600.0 * args.depth_scale, 600.0 * args.depth_scale, depth_w / 2, depth_h / 2, depth_w, depth_h)
    segment_s, points_s, pack_s, counts, objects_s, object_counts = [], [], [], [], [], []
    for index in range(args.warmup + args.frames):
        frame = rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
        depth = synthetic_depth(depth_h, depth_w, args.depth_scale, rng)
        start = time.perf_counter()
        result = segmenter.segment(frame, return_confidences=True)
        middle = time.perf_counter()
        best = result.confidences.max(axis=0)
        points = labelled_points(depth_to_metres(depth, "16UC1"), result.mask, k, rgb=frame, confidence=best,
                                 stride=args.stride, max_depth=10.0)
        packed_at = time.perf_counter()
        semantic_cloud_msg(points, Header())
        end = time.perf_counter()
        objects = find_objects(result.mask, len(LABELS), best, depth_to_metres(depth, "16UC1"), k, min_pixels=50,
                               max_depth=10.0)
        objects_end = time.perf_counter()
        if index >= args.warmup:
            objects_s.append(objects_end - end)
            object_counts.append(len(objects))
            segment_s.append(middle - start)
            points_s.append(packed_at - middle)
            pack_s.append(end - packed_at)
            counts.append(len(points))
    segment_ms = 1000 * statistics.median(segment_s)
    cloud_ms = 1000 * statistics.median([a + b for a, b in zip(points_s, pack_s)])
    print(json.dumps({
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "device": str(segmenter.device), "model": segmenter.description,
        "frame": f"{args.width}x{args.height}", "mask": "x".join(map(str, result.mask.shape[::-1])),
        "depth": f"{depth_w}x{depth_h} 16UC1", "stride": args.stride, "frames": args.frames,
        "points_median": int(statistics.median(counts)),
        "segment_ms_median": round(segment_ms, 2),
        "back_projection_ms_median": round(1000 * statistics.median(points_s), 2),
        "pointcloud2_packing_ms_median": round(1000 * statistics.median(pack_s), 2),
        "cloud_ms_median": round(cloud_ms, 2),
        "cloud_over_segment": round(cloud_ms / segment_ms, 4),
        "objects_median": int(statistics.median(object_counts)),
        "objects_ms_median": round(1000 * statistics.median(objects_s), 2),
        "objects_over_segment": round(statistics.median(objects_s) * 1000 / segment_ms, 4),
    }, indent=1))


if __name__ == "__main__":
    main()
