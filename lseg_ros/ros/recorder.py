"""``overlay_recorder``: writes the node's overlays to a folder and reports per-frame latency.

Subscribes to ``overlay`` (remap to ``/lseg_node/overlay``). Latency is the time from the
source image's stamp to the overlay's arrival (both on this machine's clock).
With ``topdown`` (default) it also subscribes to ``points`` and ``objects`` (remap to
``/lseg_node/points``, ``/lseg_node/objects``) and writes, for each frame that has both, a
bird's-eye picture of the labelled point cloud with the objects (``topdown_NNNNN.png``).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import numpy as np
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import Image

from .runner import run_node
from .conversions import image_msg_to_array


def topdown_picture(cloud, objects, view_range: float) -> np.ndarray:
    """The bird's-eye RGB picture [H, W, 3] of a labelled PointCloud2 with an ObjectArray's objects
    (x across, z ahead, ``view_range`` metres)."""
    from ..viz import label_colors, topdown_view
    from .conversions import cloud_msg_to_records

    records = cloud_msg_to_records(cloud)
    xyz = np.stack([records["x"], records["y"], records["z"]], axis=1)  # [N, 3]
    count = max([int(records["label"].max(initial=0)) + 1] + [o.label_index + 1 for o in objects.objects])
    marks = [(o.label, o.label_index, o.centroid.x, o.centroid.z) for o in objects.objects]
    return topdown_view(xyz, records["label"], label_colors(min(count, 256)), marks, view_range)


class OverlayRecorder(Node):
    def __init__(self, node_name: str = "overlay_recorder", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.declare_parameter("output_dir", "lseg_demo_out")
        self.declare_parameter("max_frames", 0)
        self.declare_parameter("print_latency", True)
        self.output_dir = Path(self.get_parameter("output_dir").value)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.max_frames = int(self.get_parameter("max_frames").value)
        self.print_latency = bool(self.get_parameter("print_latency").value)
        self.declare_parameter("topdown", True)
        self.declare_parameter("topdown_range", 6.0)
        self.latencies_s: List[float] = []
        self.topdown_written = 0
        self.done = False
        self.create_subscription(Image, "overlay", self.on_overlay, 10)
        self._pending = {}  # stamp -> {"points": msg, "objects": msg} until both arrived
        if self.get_parameter("topdown").value:
            from sensor_msgs.msg import PointCloud2

            from ..msg import ObjectArray

            self.create_subscription(PointCloud2, "points", lambda msg: self._on_3d("points", msg), 2)
            self.create_subscription(ObjectArray, "objects", lambda msg: self._on_3d("objects", msg), 10)
        self.get_logger().info(self.startup_line())

    def startup_line(self) -> str:
        """What this recorder records: the topics it hears and where it writes."""
        topics = [sub.topic_name for sub in self.subscriptions]
        frames = f"{self.max_frames} overlays" if self.max_frames else "until stopped"
        return (f"overlay_recorder recording {', '.join(topics)} into {self.output_dir.resolve()} "
                f"({frames}; latency printed: {'yes' if self.print_latency else 'no'})")

    def _on_3d(self, key: str, msg) -> None:
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        entry = self._pending.setdefault(stamp, {})
        entry[key] = msg
        if len(entry) == 2:
            del self._pending[stamp]
            self._write_topdown(entry["points"], entry["objects"])
        while len(self._pending) > 20:  # a frame whose other half never came
            self._pending.pop(next(iter(self._pending)))

    def _write_topdown(self, cloud, objects) -> None:
        from PIL import Image as PilImage

        picture = topdown_picture(cloud, objects, float(self.get_parameter("topdown_range").value))
        PilImage.fromarray(picture).save(self.output_dir / f"topdown_{self.topdown_written:05d}.png")
        self.topdown_written += 1

    def on_overlay(self, msg: Image) -> None:
        if self.done:
            return
        from PIL import Image as PilImage

        latency_s = (self.get_clock().now() - Time.from_msg(msg.header.stamp)).nanoseconds * 1e-9
        index = len(self.latencies_s)
        self.latencies_s.append(latency_s)
        PilImage.fromarray(image_msg_to_array(msg)).save(self.output_dir / f"overlay_{index:05d}.png")
        if self.print_latency:
            print(f"frame {index:4d}  stamp {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}  "
                  f"latency {1000 * latency_s:7.1f} ms", flush=True)
        if self.max_frames and len(self.latencies_s) >= self.max_frames:
            self.done = True


def main(args=None) -> int:
    return run_node(OverlayRecorder, "overlay_recorder", args)


if __name__ == "__main__":
    sys.exit(main())
