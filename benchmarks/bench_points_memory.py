"""Peak memory of one ~/points cloud (back-projection + PointCloud2) for a large frame.

    python benchmarks/bench_points_memory.py                          # 4096x4096, stride 2, max_points 1e6
    python benchmarks/bench_points_memory.py --max-points 0            # no bound (the code before max_points)

Each measurement runs in a fresh subprocess: the frame's inputs (mask, 16UC1 depth
converted to metres, rgb, the confidence maps' best-label map at ``--confidence-scale``)
are made first, then ``labelled_points`` and ``semantic_cloud_msg`` run as the node runs
them; the growth of the peak resident memory (ru_maxrss) over the inputs is printed with
the point count, as one JSON object.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(args) -> dict:
    import numpy as np
    from std_msgs.msg import Header

    from lseg_ros import geometry
    from lseg_ros.ros.conversions import semantic_cloud_msg

    size = args.size
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 8, (size, size)).astype(np.uint8)
    depth = geometry.depth_to_metres(rng.integers(500, 5000, (size, size)).astype(np.uint16), "16UC1")
    rgb = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    small = round(size * args.confidence_scale)
    confidence = rng.random((small, small), dtype=np.float32)
    k = geometry.Intrinsics(0.8 * size, 0.8 * size, size / 2, size / 2, size, size)
    stride = args.stride
    if args.max_points:
        stride = geometry.points_stride(mask.shape, args.stride, args.max_points)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    points = geometry.labelled_points(depth, mask, k, rgb=rgb, confidence=confidence, stride=stride,
                                      max_depth=10.0)
    msg = semantic_cloud_msg(points, Header())
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"frame": f"{size}x{size}", "points_stride": args.stride, "max_points": args.max_points,
            "stride_used": stride, "points": len(points), "cloud_mb": round(len(msg.data) / 2**20, 1),
            "peak_growth_mb": round((peak - before) / 1024, 1), "seconds": round(seconds, 2)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="square frame side (pixels)")
    parser.add_argument("--stride", type=int, default=2, help="points_stride")
    parser.add_argument("--max-points", type=int, default=1_000_000, help="0: no bound")
    parser.add_argument("--confidence-scale", type=float, default=0.25,
                        help="confidence maps' size / frame size (the memory budget shrinks them)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args)))
        return
    output = subprocess.run([sys.executable, __file__, "--child", *(argv if argv is not None else sys.argv[1:])],
                            check=True, capture_output=True, text=True).stdout
    print(json.dumps(json.loads(output.strip().splitlines()[-1]), indent=1))


if __name__ == "__main__":
    main()
