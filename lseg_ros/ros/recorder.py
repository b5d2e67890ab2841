"""``overlay_recorder``: writes the node's overlays to a folder and reports per-frame latency.

Subscribes to ``overlay`` (remap to ``/lseg_node/overlay``). Latency is the time from the
source image's stamp to the overlay's arrival (both on this machine's clock).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List

from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import Image

from .runner import run_node
from .conversions import image_msg_to_array


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
        self.latencies_s: List[float] = []
        self.done = False
        self.create_subscription(Image, "overlay", self.on_overlay, 10)

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
