"""Overload soak of lseg_node as a separate process: frames faster than the model, label
switches, bad frames and bad queries, for a fixed time; the node's resident memory is sampled.

    python benchmarks/soak_node.py --seconds 600 --rate 60      # benchmarks/README.md's figure
    python benchmarks/soak_node.py --seconds 30                 # a quick check
    python benchmarks/soak_node.py --seconds 60 --depth 1280x720 --all-outputs   # with 3D outputs

The node runs the shipped demo model (lseg_tiny trained on scenes) on 640x480 frames. Every
``--switch-every`` seconds the probe alternates between two label sets; every 50th frame is
malformed (short data), every 10th label message is invalid (empty). With ``--depth WxH``
the probe also publishes, reliably as camera drivers do, a 16UC1 depth image of that size
with each frame's stamp and the color camera_info; ``--all-outputs`` subscribes to every
output of the node (mapping ones included, with obstacle_labels set). Prints one JSON
object: frames published, masks received, the node's processed/dropped/rejected counters
(from /diagnostics), label_info messages, and the node's RSS at start and end (psutil).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header, String

from lseg_ros.data.scenes import generate_scene
from lseg_ros.demo_model import DEMO_WEIGHTS
from lseg_ros.ros.camera_sim import pinhole_camera_info
from lseg_ros.ros.conversions import rgb_to_image_msg


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=60.0, help="frames per second published")
    parser.add_argument("--switch-every", type=float, default=5.0, help="seconds between label switches")
    parser.add_argument("--domain-id", type=int, default=1 + os.getpid() % 100)
    parser.add_argument("--depth", default="", help="WxH: also publish 16UC1 depth of this size and camera_info")
    parser.add_argument("--all-outputs", action="store_true", help="subscribe to every output of the node")
    args = parser.parse_args(argv)
    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               HF_HUB_OFFLINE="1")
    os.environ.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    node = subprocess.Popen([sys.executable, "-m", "lseg_ros.ros.node", "--ros-args", "--params-file",
                             str(DEMO_WEIGHTS.parents[2] / "config" / "lseg.yaml"),
                             "-p", "backend:=lseg", "-p", "model:=lseg_tiny", "-p", f"pretrained:={DEMO_WEIGHTS}",
                             "-p", "prompt_templates:=none", "-p", "short_side:=128", "-p", "max_long_side:=160",
                             "-p", "device:=cpu", "-p", "image_qos:=reliable", "-p", "labels:=floor, wall, red disk",
                             "-p", "obstacle_labels:=wall, red disk"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rclpy.init(domain_id=args.domain_id)
    probe = rclpy.create_node("soak_probe")
    counts = {"masks": 0, "infos": 0}
    diagnostics = {}

    def on_diagnostics(msg):
        for status in msg.status:
            if status.name.startswith(("/lseg_node", "lseg_node:")):  # old and diagnostic_updater naming
                diagnostics.update({kv.key: kv.value for kv in status.values})

    probe.create_subscription(Image, "/lseg_node/mask", lambda msg: counts.__setitem__("masks", counts["masks"] + 1), 10)
    from lseg_ros.msg import SegmentationInfo
    from rclpy.qos import DurabilityPolicy
    probe.create_subscription(SegmentationInfo, "/lseg_node/label_info",
                              lambda msg: counts.__setitem__("infos", counts["infos"] + 1),
                              QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    probe.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    images = probe.create_publisher(Image, "/image", QoSProfile(depth=1))
    depth_pub = probe.create_publisher(Image, "/depth", QoSProfile(depth=1))  # reliable, as camera drivers
    info_pub = probe.create_publisher(CameraInfo, "/camera_info", QoSProfile(depth=1))
    outputs = {}
    if args.all_outputs:
        outputs = subscribe_all_outputs(probe)
    depth_msg = None
    if args.depth:
        width, height = (int(side) for side in args.depth.split("x"))
        depth_mm = np.full((height, width), 2000, np.uint16)
        depth_mm[height // 2:] = 1500
        depth_msg = Image(encoding="16UC1", width=width, height=height, step=2 * width,
                          data=depth_mm.astype("<u2").tobytes())
    info = pinhole_camera_info(640, 480, 60.0)
    labels = probe.create_publisher(String, "/labels", 10)
    executor = SingleThreadedExecutor()
    executor.add_node(probe)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    frames = [rgb_to_image_msg(generate_scene(np.random.default_rng(i), (480, 640))[0], Header(frame_id="cam"))
              for i in range(8)]
    process = psutil.Process(node.pid)
    deadline = time.monotonic() + 60
    while counts["masks"] == 0 and time.monotonic() < deadline and node.poll() is None:
        images.publish(frames[0])
        time.sleep(0.2)
    rss_start = process.memory_info().rss
    sets = ["floor, wall, red disk", "blue square, green triangle, checkerboard, purple ring, yellow stripes"]
    start = time.monotonic()
    published, bad_frames, bad_queries, switches = 0, 0, 0, 0
    next_switch, rss_max, rss_samples = start + args.switch_every, rss_start, []
    while time.monotonic() - start < args.seconds and node.poll() is None:
        msg = frames[published % len(frames)]
        if published % 50 == 49:
            bad = rgb_to_image_msg(np.zeros((480, 640, 3), np.uint8), Header(frame_id="cam"))
            bad.data = bytes(bad.data)[:-7]
            images.publish(bad)
            bad_frames += 1
        else:
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(published, 1000)[0], (published % 1000) * 1000
            if depth_msg is not None:
                depth_msg.header, info.header = msg.header, msg.header
                info_pub.publish(info)
                depth_pub.publish(depth_msg)
            images.publish(msg)
        published += 1
        if time.monotonic() >= next_switch:
            switches += 1
            labels.publish(String(data=" , " if switches % 10 == 0 else sets[switches % 2]))
            bad_queries += switches % 10 == 0
            next_switch += args.switch_every
            rss_max = max(rss_max, process.memory_info().rss)
            rss_samples.append(round(process.memory_info().rss / 2**20, 1))
        time.sleep(max(0.0, start + published / args.rate - time.monotonic()))
    duration = time.monotonic() - start
    time.sleep(2.0)
    rss_end = process.memory_info().rss
    alive = node.poll() is None
    node.terminate()
    stderr = node.communicate(timeout=30)[1]
    executor.shutdown()
    spinner.join(timeout=5.0)  # a spin thread alive at interpreter exit aborts it ("terminate called")
    probe.destroy_node()
    rclpy.try_shutdown()
    print(json.dumps({
        "seconds": round(duration, 1), "rate_hz": args.rate, "published": published, "bad_frames_sent": bad_frames,
        "label_switches": switches, "bad_queries_sent": bad_queries, "masks_received": counts["masks"],
        "label_info_received": counts["infos"], "node_alive_at_end": alive,
        "depth": args.depth or None, "outputs_received": {key: len(value) for key, value in outputs.items()} or None,
        "node_counters": {key: diagnostics.get(key) for key in ("frames_in", "processed", "dropped",
                                                                 "rejected_frames", "rejected_queries", "failed",
                                                                 "depth_in", "depth_matched", "rejected_camera_info")},
        "rss_mb_start": round(rss_start / 2**20, 1), "rss_mb_max": round(max(rss_max, rss_end) / 2**20, 1),
        "rss_mb_end": round(rss_end / 2**20, 1), "rss_mb_at_each_switch": rss_samples,
        "node_stderr_lines": len(stderr.splitlines()),
    }, indent=2))


def subscribe_all_outputs(probe) -> dict:
    """Subscribe to every output of /lseg_node but ~/mask (counted apart); {output: list of
    receive times} (times only: the messages themselves are not kept)."""
    from visualization_msgs.msg import MarkerArray

    from lseg_ros.msg import ConfidenceMaps, FeatureMap, ObjectArray

    types = {"overlay": Image, "confidence": ConfidenceMaps, "confidence_image": Image, "camera_info": CameraInfo,
             "points": PointCloud2, "obstacle_points": PointCloud2, "objects": ObjectArray, "markers": MarkerArray,
             "embeddings": FeatureMap}
    received = {name: [] for name in types}
    for name, msg_type in types.items():
        probe.create_subscription(msg_type, f"/lseg_node/{name}",
                                  lambda msg, times=received[name]: times.append(time.monotonic()), 10)
    return received


if __name__ == "__main__":
    main()
