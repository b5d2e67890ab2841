"""Which large images arrive between processes, per publisher and subscription QoS.

    python benchmarks/bench_qos.py                     # 50 frames at 10 Hz per case
    python benchmarks/bench_qos.py --frames 100 --rate 30

Each case starts a publisher in another process (this script with ``--publish``), which
waits until the subscription has matched, publishes ``--frames`` images at ``--rate`` Hz and
exits; this process subscribes with the QoS lseg_node uses for that input
(:func:`lseg_ros.ros.node.input_qos`: ``sensor_data`` = best effort, ``reliable``) and
counts the distinct frames that arrived. Cases: 1280x720 16UC1 depth (a RealSense aligned
depth stream, 1.8 MB) and 640x480 rgb8 (921 KB) from reliable and best-effort publishers.
Prints one JSON object with the RMW, the ROS distro and the counts.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

#: (name, encoding, width, height, publisher QoS, subscription QoS: the node's parameter value)
CASES = [
    ("depth 1280x720 16UC1, reliable publisher, depth_qos sensor_data", "16UC1", 1280, 720, "reliable", "sensor_data"),
    ("depth 1280x720 16UC1, reliable publisher, depth_qos reliable", "16UC1", 1280, 720, "reliable", "reliable"),
    ("depth 1280x720 16UC1, best-effort publisher, depth_qos sensor_data", "16UC1", 1280, 720, "sensor_data",
     "sensor_data"),
    ("rgb8 640x480, best-effort publisher, image_qos sensor_data", "rgb8", 640, 480, "sensor_data", "sensor_data"),
    ("rgb8 640x480, reliable publisher, image_qos sensor_data", "rgb8", 640, 480, "reliable", "sensor_data"),
    ("rgb8 640x480, reliable publisher, image_qos reliable", "rgb8", 640, 480, "reliable", "reliable"),
]


def image_msg(encoding: str, width: int, height: int):
    from sensor_msgs.msg import Image

    channels, itemsize = (3, 1) if encoding == "rgb8" else (1, 2)
    data = np.random.default_rng(0).integers(0, 255, height * width * channels * itemsize, dtype=np.uint8)
    return Image(encoding=encoding, width=width, height=height, step=width * channels * itemsize,
                 data=data.tobytes())


def publish(args) -> None:
    """The publisher process: wait for the subscriber, publish, let the last frame go out."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    rclpy.init(domain_id=args.domain_id)
    node = rclpy.create_node("bench_qos_publisher")
    qos = qos_profile_sensor_data if args.qos == "sensor_data" else \
        QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    publisher = node.create_publisher(type(image_msg("rgb8", 1, 1)), "/bench_qos", qos)
    msg = image_msg(args.encoding, args.width, args.height)
    deadline = time.monotonic() + 20
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # discovery finishes both ways
    start = time.monotonic()
    for index in range(args.frames):
        msg.header.stamp.sec = index
        publisher.publish(msg)
        time.sleep(max(0.0, start + (index + 1) / args.rate - time.monotonic()))
    time.sleep(1.0)
    node.destroy_node()
    rclpy.try_shutdown()


def measure(case, args, domain_id: int) -> int:
    """Distinct frames of one case received in this process."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from lseg_ros.ros.node import DEPTH_QOS_HISTORY, input_qos

    name, encoding, width, height, publisher_qos, subscription_qos = case
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node("bench_qos_subscriber", context=context)
    seen = set()
    history = DEPTH_QOS_HISTORY if encoding == "16UC1" else 1
    qos = input_qos("depth_qos" if encoding == "16UC1" else "image_qos", subscription_qos, history)
    node.create_subscription(Image, "/bench_qos", lambda msg: seen.add(msg.header.stamp.sec), qos)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    process = subprocess.Popen([sys.executable, __file__, "--publish", "--domain-id", str(domain_id), "--qos",
                                publisher_qos, "--encoding", encoding, "--width", str(width), "--height",
                                str(height), "--frames", str(args.frames), "--rate", str(args.rate)], env=env)
    deadline = time.monotonic() + 20 + args.frames / args.rate + 10
    while process.poll() is None and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    for _ in range(20):  # what is still queued
        executor.spin_once(timeout_sec=0.05)
    if process.poll() is None:
        process.kill()
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=context)
    return len(seen)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--domain-id", type=int, default=1 + (os.getpid() + 53) % 100)
    parser.add_argument("--publish", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--qos", default="reliable", help=argparse.SUPPRESS)
    parser.add_argument("--encoding", default="16UC1", help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, default=1280, help=argparse.SUPPRESS)
    parser.add_argument("--height", type=int, default=720, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if args.publish:
        publish(args)
        return
    results = {}
    for index, case in enumerate(CASES):
        results[case[0]] = f"{measure(case, args, (args.domain_id + index) % 101)}/{args.frames}"
    print(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "ros_distro": os.environ.get("ROS_DISTRO", "?"), "python_env": sys.prefix,
        "rmw": os.environ.get("RMW_IMPLEMENTATION", "default (rmw_fastrtps_cpp)"),
        "frames": args.frames, "rate_hz": args.rate, "received": results,
    }, indent=1))


if __name__ == "__main__":
    main()
