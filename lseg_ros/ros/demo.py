"""The whole pipeline offline in one command: camera simulator -> lseg_node -> overlay recorder.

    python -m lseg_ros.ros.demo --frames 30 --out lseg_demo_out

Uses the small LSeg model shipped with the package (trained here on generated scenes) on
generated scenes, prints per-frame latency and the masks' accuracy against the scenes'
ground truth, and exits after a bounded number of frames or seconds.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, PointCloud2

from ..config import SegmenterConfig, flatten
from ..demo_model import demo_model_config
from .camera_sim import CameraSim
from ..data.scenes import SCENE_CLASSES
from ..msg import ObjectArray
from .conversions import cloud_msg_to_records, image_msg_to_array
from .node import LsegNode
from .params import parameter_overrides
from .recorder import OverlayRecorder


def _parameters(values: dict) -> list:
    return [Parameter(name, value=value) for name, value in values.items()]


def choose_model(args) -> SegmenterConfig:
    config = demo_model_config(device=args.device)
    if config is not None and args.pretrained is None:
        print(f"[demo] model: the small LSeg model shipped with lseg_ros ({config.pretrained}),\n"
              "       trained here on generated scenes; it knows only the scene classes.")
        return config
    config = SegmenterConfig(backend="dense_clip", model="lseg-test-tiny-ViT", pretrained=args.pretrained or "random",
                             device=args.device, short_side=224, labels=list(SCENE_CLASSES))
    if config.pretrained == "random":
        print("[demo] WARNING: no trained model is shipped in this checkout; using RANDOM weights.\n"
              "       The masks are meaningless; the pipeline, timing and messages are real.")
    return config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=30, help="stop after this many processed frames")
    parser.add_argument("--timeout", type=float, default=120.0, help="stop after this many seconds")
    parser.add_argument("--rate", type=float, default=5.0, help="camera frames per second")
    parser.add_argument("--out", default="lseg_demo_out", help="folder for the overlays")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--pretrained", default=None, help="override the demo model's weights")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.frames < 1 or args.timeout <= 0:
        parser.error(f"--rate ({args.rate}), --frames ({args.frames}) and --timeout ({args.timeout}) must be > 0")

    config = choose_model(args)
    rclpy.init()
    camera = CameraSim(parameter_overrides=_parameters({"rate": args.rate, "source": "scenes",
                                                        "width": 320, "height": 240}))
    try:
        segmentation = LsegNode(parameter_overrides=parameter_overrides(flatten(config)))
    except Exception as error:
        print(f"[demo] cannot start lseg_node: {error}", file=sys.stderr)
        camera.destroy_node()
        rclpy.try_shutdown()
        return 1
    recorder = OverlayRecorder(parameter_overrides=_parameters({"output_dir": args.out, "max_frames": args.frames}),
                               cli_args=["--ros-args", "-r", "overlay:=/lseg_node/overlay",
                                         "-r", "points:=/lseg_node/points", "-r", "objects:=/lseg_node/objects"])
    accuracies, floor_errors, point_counts, object_counts = [], [], [], []

    def on_mask(msg: Image) -> None:
        truth = camera.ground_truth.get(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
        if truth is not None:
            accuracies.append(float((image_msg_to_array(msg) == truth).mean()))

    def on_points(msg: PointCloud2) -> None:
        """How far the points labelled floor lie from the scene's true floor plane."""
        geometry = camera.geometry.get(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
        records = cloud_msg_to_records(msg)
        point_counts.append(len(records))
        floor = records[records["label"] == SCENE_CLASSES.index("floor")] if "floor" in labels else records[:0]
        if geometry is not None and len(floor):
            xyz = np.stack([floor["x"], floor["y"], floor["z"]], axis=1).astype(np.float64)
            floor_errors.append(np.abs(xyz @ geometry.floor_normal - geometry.floor_offset))

    labels = list(config.labels)
    recorder.create_subscription(Image, "/lseg_node/mask", on_mask, 10)
    recorder.create_subscription(PointCloud2, "/lseg_node/points", on_points, 2)
    recorder.create_subscription(ObjectArray, "/lseg_node/objects", lambda msg: object_counts.append(len(msg.objects)),
                                 10)
    executor = MultiThreadedExecutor(num_threads=3)
    for node in (camera, segmentation, recorder):
        executor.add_node(node)
    print(f"[demo] {segmentation.segmenter.description} on {segmentation.segmenter.device}; "
          f"labels {config.labels}; writing overlays to {args.out}/", flush=True)
    start = time.monotonic()
    try:
        while not recorder.done and time.monotonic() - start < args.timeout:
            executor.spin_once(timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        counters = segmentation.counters
        latencies = np.array(recorder.latencies_s) * 1000
        elapsed = time.monotonic() - start
        executor.shutdown()
        for node in (camera, segmentation, recorder):
            node.destroy_node()
        rclpy.try_shutdown()
    if len(latencies) == 0:
        print("[demo] no overlay received", file=sys.stderr)
        return 1
    print(f"[demo] {len(latencies)} frames in {elapsed:.1f} s; latency median {np.median(latencies):.1f} ms, "
          f"p90 {np.percentile(latencies, 90):.1f} ms; frames in {counters.frames_in}, processed "
          f"{counters.processed}, dropped {counters.dropped}")
    if accuracies:
        print(f"[demo] pixel accuracy against the scenes' ground truth: {np.mean(accuracies):.3f} "
              f"over {len(accuracies)} frames")
    if point_counts:
        print(f"[demo] 3D: {np.mean(point_counts):.0f} labelled points and {np.mean(object_counts or [0]):.1f} "
              f"objects per frame; top views in {args.out}/topdown_*.png")
    if floor_errors:
        errors = np.concatenate(floor_errors)
        print(f"[demo] 3D: of the points labelled 'floor', {100 * np.mean(errors < 0.05):.1f} % lie within 5 cm of "
              f"the scene's true floor plane (median {1000 * np.median(errors):.1f} mm; the rest are pixels of the "
              f"wall or objects labelled floor)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
