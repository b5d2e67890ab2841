"""lseg_node as a ROS user starts it: a process with --params-file, -p overrides and -r remaps."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("lseg_ros.msg", reason="ROS interfaces not built (run scripts/setup_env.sh)")

from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from lseg_ros.ros.conversions import image_msg_to_array, rgb_to_image_msg  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = ["-p", "model:=lseg-test-tiny-ViT", "-p", "pretrained:=random", "-p", "device:=cpu", "-p", "short_side:=64"]


def node_command(*ros_args):
    return [sys.executable, "-m", "lseg_ros.ros.node", "--ros-args",
            "--params-file", str(ROOT / "config" / "lseg.yaml"), *ros_args]


@pytest.fixture
def domain_env(monkeypatch):
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # for this process's probe too
    env = dict(os.environ, ROS_DOMAIN_ID=str(1 + (os.getpid() + 37) % 100), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               HF_HUB_OFFLINE="1")
    return env


def start_until_ready(env, ros_args, timeout):
    """Start lseg_node as a process; (process, its output lines up to "lseg_node ready")."""
    process = subprocess.Popen(node_command(*ros_args), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not any("lseg_node ready" in line for line in lines):
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
    return process, lines


def segment_in_node_process(env, ros_args, image_topic, qos, rgb, masks_wanted):
    """Start lseg_node as a process, publish ``rgb`` on ``image_topic`` until ``masks_wanted``
    masks came back; return (masks, the process's output)."""
    process = subprocess.Popen(node_command(*TINY, *ros_args), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(env["ROS_DOMAIN_ID"]))
    masks = []
    probe = rclpy.create_node("process_probe", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    try:
        probe.create_subscription(Image, "/lseg_node/mask", masks.append, 10)
        publisher = probe.create_publisher(Image, image_topic, qos)
        executor.add_node(probe)
        deadline = time.monotonic() + 60
        while len(masks) < masks_wanted and time.monotonic() < deadline and process.poll() is None:
            publisher.publish(rgb_to_image_msg(rgb, Header(frame_id="cam")))
            executor.spin_once(timeout_sec=0.5)
    finally:
        executor.shutdown()
        probe.destroy_node()
        rclpy.try_shutdown(context=context)
        process.terminate()
        output = process.communicate(timeout=20)[0]
    return masks, output


def test_node_process_with_params_file_overrides_and_remapping_segments_frames(domain_env):
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    masks, output = segment_in_node_process(domain_env, ["-p", "labels:=door, chair", "-r", "image:=/robot/camera/image"],
                                            "/robot/camera/image", qos_profile_sensor_data, rgb, 1)
    assert masks, f"no mask from the node process:\n{output}"
    mask = image_msg_to_array(masks[0])
    assert mask.shape == (48, 64) and mask.max() < 2 and masks[0].header.frame_id == "cam"
    assert "lseg_node ready" in output and "labels ['door', 'chair']" in output, output


def test_full_size_frames_from_another_process_arrive_with_reliable_image_qos(domain_env):
    """640x480 rgb8 (921 KB) between processes: image_qos:=reliable with a reliable camera."""
    from rclpy.qos import QoSProfile

    rgb = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    masks, output = segment_in_node_process(domain_env, ["-p", "image_qos:=reliable"], "/image", QoSProfile(depth=1),
                                            rgb, 3)
    assert len(masks) >= 3, f"full-size frames did not reach the node process:\n{output}"
    assert (masks[0].height, masks[0].width) == (480, 640)


def test_missing_weights_stop_the_node_at_start_with_a_clear_message(domain_env):
    result = subprocess.run(node_command("-p", "pretrained:=/nonexistent/lseg.safetensors", "-p", "device:=cpu"),
                            env=domain_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "/nonexistent/lseg.safetensors" in result.stderr and "does not exist" in result.stderr


def test_ctrl_c_during_a_long_label_encoding_shuts_down_cleanly(domain_env):
    import signal

    from std_msgs.msg import String

    process, lines = start_until_ready(domain_env, TINY, timeout=60)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(domain_env["ROS_DOMAIN_ID"]))
    probe = rclpy.create_node("ctrl_c_probe", context=context)
    try:
        publisher = probe.create_publisher(String, "/labels", 10)
        many = ", ".join(f"object number {i}" for i in range(200))  # 200 x 80 prompts: seconds of text forwards
        for _ in range(10):
            publisher.publish(String(data=many))
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        probe.destroy_node()
        rclpy.try_shutdown(context=context)
    process.send_signal(signal.SIGINT)
    output = "".join(lines) + process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    assert "Failed to publish log message" not in output and "Traceback" not in output, output


def test_ctrl_c_during_a_long_forward_exits_at_once_with_code_0(domain_env):
    """A ViT-B/16 forward at 672x896 takes seconds on a CPU; Ctrl-C must not wait for it."""
    import signal

    from rclpy.qos import QoSProfile, ReliabilityPolicy

    process, lines = start_until_ready(domain_env, ["-p", "model:=ViT-B-16", "-p", "pretrained:=random",
                                                    "-p", "device:=cpu", "-p", "short_side:=896",
                                                    "-p", "max_long_side:=896", "-p", "image_qos:=reliable"],
                                       timeout=120)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(domain_env["ROS_DOMAIN_ID"]))
    probe = rclpy.create_node("long_forward_probe", context=context)
    try:
        publisher = probe.create_publisher(Image, "/image", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        deadline = time.monotonic() + 10
        while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        publisher.publish(rgb_to_image_msg(rgb, Header(frame_id="cam")))
        time.sleep(2.0)  # the worker is inside the forward now
    finally:
        probe.destroy_node()
        rclpy.try_shutdown(context=context)
    start = time.monotonic()
    process.send_signal(signal.SIGINT)
    output = "".join(lines) + process.communicate(timeout=30)[0]
    elapsed = time.monotonic() - start
    assert process.returncode == 0, output
    assert "left lseg_worker mid-computation" in output, output  # the forward was still running
    assert "Traceback" not in output, output
    assert elapsed < 3.0, f"shutdown took {elapsed:.1f} s"  # the forward alone takes longer
    print(f"shutdown during a forward: {elapsed:.2f} s")
