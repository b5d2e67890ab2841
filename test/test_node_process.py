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
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from lseg_ros.ros.conversions import image_msg_to_array, rgb_to_image_msg  # noqa: E402

from helpers import domain_id  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]  # each test starts lseg_node as a process

ROOT = Path(__file__).resolve().parent.parent
TINY = ["-p", "model:=lseg-test-tiny-ViT", "-p", "pretrained:=random", "-p", "device:=cpu", "-p", "short_side:=64"]


def node_command(*ros_args):
    return [sys.executable, "-m", "lseg_ros.ros.node", "--ros-args",
            "--params-file", str(ROOT / "config" / "lseg.yaml"), *ros_args]


@pytest.fixture
def domain_env(monkeypatch):
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # for this process's probe too
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id()), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
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


def _unfinished_frames(status) -> int:
    """Frames the node took in and neither dropped nor finished, from its diagnostics: one
    being segmented, plus one waiting in the slot when 2."""
    values = {kv.key: kv.value for kv in status.values}
    if values.get("node") != "/lseg_node" or "frames_in" not in values:
        return 0
    return int(values["frames_in"]) - int(values["dropped"]) - int(values["processed"]) - \
        int(values["rejected_frames"]) - int(values["failed"])


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
        busy = []  # diagnostics saying that a frame is being segmented and another waits in the slot
        probe.create_subscription(DiagnosticArray, "/diagnostics", lambda msg: busy.extend(
            status for status in msg.status[:1] if _unfinished_frames(status) >= 2), 10)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(probe)
        rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        deadline = time.monotonic() + 10
        while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Frames keep coming until the node reports one frame in the forward and one more in
        # its slot: from then on the worker is inside a forward of seconds (that one or the
        # next), so Ctrl-C always lands mid-forward.
        deadline = time.monotonic() + 120
        while not busy and time.monotonic() < deadline and process.poll() is None:
            publisher.publish(rgb_to_image_msg(rgb, Header(frame_id="cam")))
            executor.spin_once(timeout_sec=0.2)
        assert busy, "the node never had a frame waiting behind a forward within 120 s"
        start = time.monotonic()
        process.send_signal(signal.SIGINT)
    finally:
        probe.destroy_node()
        rclpy.try_shutdown(context=context)
    output = "".join(lines) + process.communicate(timeout=30)[0]
    elapsed = time.monotonic() - start
    assert process.returncode == 0, output
    assert "left lseg_worker mid-computation" in output, output  # the forward was still running
    assert "Traceback" not in output, output
    assert elapsed < 3.0, f"shutdown took {elapsed:.1f} s"  # the forward alone takes longer
    print(f"shutdown during a forward: {elapsed:.2f} s")


@pytest.mark.parametrize("bad, named", [(["-p", "short_side:=1.5"], "short_side"),  # refused by rclpy's type check
                                        (["-p", "short_side:=-5"], "-5"),  # rclpy's range check
                                        (["-p", "threshold_label:=999"], "threshold_label 999"),
                                        (["-p", "labels:=" + ", ".join(f"label {i}" for i in range(256))],
                                         "256 labels requested")])
def test_a_refused_start_exits_1_with_one_line_naming_the_bad_value(domain_env, bad, named):
    """No traceback after the line, on any distro (Kilted's rclpy destroys the half-built node
    at shutdown); refused initial labels are a start-up error, not a node "ready" with none."""
    tiny = TINY[:-2]  # without short_side: the first -p of a name wins
    result = subprocess.run(node_command(*tiny, *bad), env=domain_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("[INFO]")]
    assert len(errors) == 1 and errors[0].startswith("lseg_node: cannot start: ") and named in errors[0] \
        and bad[-1].split(":=")[0] in errors[0], \
        result.stderr
    assert "Traceback" not in result.stderr + result.stdout and "lseg_node ready" not in result.stderr


def test_ctrl_c_during_start_up_label_encoding_exits_with_one_line(domain_env):
    """SIGINT while the initial labels are being encoded (after the model loaded)."""
    import signal

    many = ", ".join(f"object number {i}" for i in range(200))  # 200 x 80 prompts: seconds of text forwards
    process = subprocess.Popen(node_command(*TINY, "-p", f"labels:={many}"), env=domain_env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    while not any("engine:" in line for line in lines):  # the model is loaded; the labels are encoding
        line = process.stdout.readline()
        assert line, "".join(lines)
        lines.append(line)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    after = process.communicate(timeout=30)[0]
    output = "".join(lines) + after
    assert "Traceback" not in output, output
    assert "lseg_node ready" not in output, output  # it was still starting
    assert after.strip().splitlines() == ["lseg_node: stopped during start-up"], output
    assert process.returncode == 0, output


def test_concurrent_set_labels_calls_are_all_answered_while_frames_flow(domain_env):
    """50 ~/set_labels calls at once (each a new set: a text forward each): every call gets an
    answer (in use, superseded by a newer call, or refused because too many wait), the set in
    use is one a call was told it got, and masks keep coming meanwhile."""
    from rclpy.qos import QoSProfile

    from lseg_ros.msg import LabelSpec
    from lseg_ros.srv import SetLabels

    process, lines = start_until_ready(domain_env, TINY, timeout=60)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(domain_env["ROS_DOMAIN_ID"]))
    probe = rclpy.create_node("set_labels_probe", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    masks = []
    try:
        executor.add_node(probe)
        probe.create_subscription(Image, "/lseg_node/mask", masks.append, 10)
        publisher = probe.create_publisher(Image, "/image", qos_profile_sensor_data)
        # a burst of 50 answers needs a client queue that deep (docs/node.md: ~/set_labels)
        client = probe.create_client(SetLabels, "/lseg_node/set_labels", qos_profile=QoSProfile(depth=100))
        assert client.wait_for_service(timeout_sec=20.0)
        rgb = np.random.default_rng(2).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        requests = [SetLabels.Request(labels=[LabelSpec(name=f"thing {i} {j}", prompts=[], threshold=float("nan"))
                                              for j in range(8)]) for i in range(50)]
        futures = [client.call_async(request) for request in requests]
        burst_at, masks_before = time.monotonic(), len(masks)
        deadline = burst_at + 120
        while not all(future.done() for future in futures) and time.monotonic() < deadline:
            publisher.publish(rgb_to_image_msg(rgb, Header(frame_id="cam")))
            executor.spin_once(timeout_sec=0.1)
        answered = [future.result() for future in futures if future.done()]
        masks_during = len(masks) - masks_before
    finally:
        executor.shutdown()
        probe.destroy_node()
        rclpy.try_shutdown(context=context)
        process.terminate()
        output = "".join(lines) + process.communicate(timeout=20)[0]
    assert len(answered) == 50, f"{len(answered)} of 50 calls answered:\n{output}"
    kinds = [("in use" if r.success else "superseded" if "superseded" in r.message else
              "refused" if "too many calls waiting" in r.message else r.message) for r in answered]
    assert set(kinds) <= {"in use", "superseded", "refused"}, kinds
    applied = [r for r in answered if r.success]
    assert applied, kinds
    newest = max(applied, key=lambda r: r.generation)
    assert list(newest.labels) in [[spec.name for spec in request.labels] for request in requests]
    assert masks_during > 0, "no mask while the calls were being answered"
    print(f"50 concurrent set_labels: {kinds.count('in use')} in use, {kinds.count('superseded')} superseded, "
          f"{kinds.count('refused')} refused; {masks_during} masks meanwhile")


def test_ctrl_c_during_start_up_model_load_exits_with_one_line(domain_env):
    """SIGINT once the node logs its torch build, which it does just before it builds the
    model: ViT-L/14's random init takes seconds on a CPU, so the model is still being built."""
    import signal

    process = subprocess.Popen(node_command("-p", "model:=ViT-L-14", "-p", "pretrained:=random", "-p", "device:=cpu"),
                               env=domain_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:  # ends when the process does
        lines.append(line)
        if "CUDA usable" in line:
            process.send_signal(signal.SIGINT)
            break
    output = "".join(lines) + process.communicate(timeout=60)[0]
    assert "engine:" not in output, f"the model was loaded before SIGINT:\n{output}"
    assert "Traceback" not in output, output
    assert output.strip().splitlines()[-1] == "lseg_node: stopped during start-up", output
    assert [line for line in output.strip().splitlines() if "CUDA usable" not in line] == \
        ["lseg_node: stopped during start-up"], output
    assert process.returncode == 0, output
