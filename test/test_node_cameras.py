"""lseg_node with several cameras over real rclpy/DDS (parameter ``cameras``): each camera's
topics, its outputs compared with the engine on the same frame, one batched forward for the
frames of all cameras, a bad frame of one camera not holding back the others, camera-name
validation and one diagnostics status per camera.

Batching is made deterministic by holding the worker inside a forward (a gate on
``segmenter.segment``) while the next frames of both cameras arrive.
"""
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("lseg_ros.msg", reason="ROS interfaces not built (run scripts/setup_env.sh)")

from rclpy.qos import QoSProfile, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from lseg_ros.msg import ConfidenceMaps  # noqa: E402
from lseg_ros.ros.cameras import CAMERA_OUTPUTS  # noqa: E402
from lseg_ros.ros.conversions import image_msg_to_array, rgb_to_image_msg  # noqa: E402
from lseg_ros.ros.node import LsegNode  # noqa: E402
from lseg_ros.ros.params import NodeConfig, parameter_overrides  # noqa: E402

from helpers import NODE_PARAMETERS, domain_id, scene  # noqa: E402
from ros_helpers import Probe, node_outputs, spinning  # noqa: E402

pytestmark = pytest.mark.ros

CAMERAS = ["left", "right", "idle"]  # idle never sends a frame (its diagnostics say so)
NAMESPACE = "multi"
NODE = f"/{NAMESPACE}/lseg_node"
K = [50.0, 0.0, 32.0, 0.0, 50.0, 24.0, 0.0, 0.0, 1.0]


class CamerasProbe(Probe):
    """Publishes each camera's frames and camera_info; collects each camera's masks
    ("<camera>/mask") and camera_info ("<camera>/camera_info"), and /diagnostics; each
    camera's confidence maps ("<camera>/confidence") when subscribed."""

    def __init__(self, cameras):
        outputs = {"diagnostics": node_outputs(NODE)["diagnostics"]}
        for camera in cameras:
            outputs.update({f"{camera}/mask": (Image, f"{NODE}/{camera}/mask", 10),
                            f"{camera}/camera_info": (CameraInfo, f"{NODE}/{camera}/camera_info", 10),
                            f"{camera}/confidence": (ConfidenceMaps, f"{NODE}/{camera}/confidence", 10)})
        super().__init__(NAMESPACE, name="cameras_probe", outputs=outputs, stamp_base=3000,
                         subscribe=[key for key in outputs if not key.endswith("/confidence")])
        self.image_pubs, self.info_pubs = {}, {}
        for camera in cameras:
            self.image_pubs[camera] = self.node.create_publisher(Image, f"{camera}/image", qos_profile_sensor_data)
            self.info_pubs[camera] = self.node.create_publisher(CameraInfo, f"{camera}/camera_info",
                                                                QoSProfile(depth=5))  # reliable: depth_qos

    def frame(self, camera, rgb):
        """A frame message of ``camera`` with a stamp of its own and frame_id '<camera>_optical'."""
        return rgb_to_image_msg(rgb, self.next_header(f"{camera}_optical"))

    def publish_until_masked(self, camera, msg, what, timeout=20.0):
        """Publish ``msg`` on ``camera``'s image topic every 0.3 s until its mask arrives (a
        best-effort subscription may miss one publication)."""
        deadline = time.monotonic() + timeout
        while not any(m.header.stamp == msg.header.stamp for m in self.received[f"{camera}/mask"]):
            assert time.monotonic() < deadline, what
            self.image_pubs[camera].publish(msg)
            time.sleep(0.3)

    def mask_of(self, camera, header, timeout=20.0):
        return self.wait_for_stamp(f"{camera}/mask", header, timeout)


@pytest.fixture(scope="module")
def cameras():
    def make_nodes():
        node = LsegNode("lseg_node", namespace=NAMESPACE, parameter_overrides=parameter_overrides(
            dict(NODE_PARAMETERS, cameras=CAMERAS, input_timeout=1.0)))
        return node, CamerasProbe(CAMERAS)

    with spinning(domain_id(), make_nodes) as pair:
        yield pair


class HeldForward:
    """Wraps ``node.segmenter.segment``: records how many frames each call segments and holds
    the worker inside a call until released, so that frames of several cameras wait together."""

    def __init__(self, node, monkeypatch):
        self.calls, self.forward_batches, self.options = [], [], []
        self.entered, self.gate = threading.Event(), threading.Event()
        segment, image_forward = node.segmenter.segment, node.segmenter.image_forward

        def held_segment(images, *args, **kwargs):
            self.calls.append(len(images) if isinstance(images, list) else 1)
            self.options.append(kwargs)
            self.entered.set()
            self.gate.wait(timeout=20.0)
            return segment(images, *args, **kwargs)

        def counted_forward(model_input, *args, **kwargs):
            self.forward_batches.append(int(model_input.shape[0]))  # [B, 3, h, w]
            return image_forward(model_input, *args, **kwargs)

        monkeypatch.setattr(node.segmenter, "segment", held_segment)
        monkeypatch.setattr(node.segmenter, "image_forward", counted_forward)

    def hold_worker(self, probe, camera="left"):
        """Send a frame on ``camera`` and return once the worker is held in its forward."""
        self.gate.clear()
        self.entered.clear()
        deadline = time.monotonic() + 20
        while not self.entered.wait(timeout=0.3):
            assert time.monotonic() < deadline, "the worker never started a forward"
            probe.image_pubs[camera].publish(probe.frame(camera, scene(90)))
        self.calls.clear()  # calls and forwards from now on; the held call's forward is still to come
        self.options.clear()
        self.forward_batches.clear()


def eventually(condition, what, timeout=10.0):
    """Wait until ``condition()`` holds (the ROS graph, for one, is updated asynchronously)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _publish_until_waiting(node, probe, frames):
    """Publish {camera: msg} (again while lost: best effort) until each camera's slot holds its frame."""
    streams = {stream.name: stream for stream in node._streams}
    deadline = time.monotonic() + 20
    while True:
        missing = [camera for camera, msg in frames.items()
                   if streams[camera].slot is None or streams[camera].slot[0].header.stamp != msg.header.stamp]
        if not missing:
            return
        assert time.monotonic() < deadline, f"frames of {missing} never reached the node"
        for camera in missing:
            probe.image_pubs[camera].publish(frames[camera])
        time.sleep(0.1)


def test_each_camera_has_its_own_inputs_and_outputs_under_its_name(cameras):
    node, probe = cameras
    assert node.input_topics() == [f"/{NAMESPACE}/{camera}/image" for camera in CAMERAS]

    def published_topics():
        return {topic for topic, _ in node.get_publisher_names_and_types_by_node("lseg_node", f"/{NAMESPACE}")}

    eventually(lambda: f"{NODE}/{CAMERAS[-1]}/embeddings" in published_topics(), "the node's publishers")
    published = published_topics()
    for camera in CAMERAS:
        assert {f"{NODE}/{camera}/{output}" for output in CAMERA_OUTPUTS} <= published
    assert {f"{NODE}/label_info", "/diagnostics"} <= published  # shared
    assert not {f"{NODE}/{output}" for output in CAMERA_OUTPUTS} & published  # no single-camera outputs
    subscribed = {topic for topic, _ in node.get_subscriber_names_and_types_by_node("lseg_node", f"/{NAMESPACE}")}
    for camera in CAMERAS:
        assert {f"/{NAMESPACE}/{camera}/{topic}" for topic in ("image", "camera_info", "depth")} <= subscribed


def test_each_camera_mask_equals_the_engine_mask_of_its_own_frame_with_its_header(cameras, monkeypatch):
    node, probe = cameras
    for camera in ("left", "right"):
        probe.info_pubs[camera].publish(CameraInfo(width=64, height=48, k=K))
    held = HeldForward(node, monkeypatch)
    held.hold_worker(probe)
    frames = {"left": probe.frame("left", scene(1)), "right": probe.frame("right", scene(2))}
    _publish_until_waiting(node, probe, frames)
    held.gate.set()
    masks = {camera: probe.mask_of(camera, msg.header) for camera, msg in frames.items()}
    monkeypatch.undo()
    batch = node.segmenter.segment([scene(1), scene(2)])  # the same forward as the node's
    for (camera, msg), result in zip(frames.items(), batch):
        mask = masks[camera]
        assert mask.header.frame_id == f"{camera}_optical" and mask.header.stamp == msg.header.stamp
        np.testing.assert_array_equal(image_msg_to_array(mask), result.mask)
    # each camera's mask is also the engine's mask of that frame alone
    for camera, seed in (("left", 1), ("right", 2)):
        np.testing.assert_array_equal(image_msg_to_array(masks[camera]), node.segmenter.segment(scene(seed)).mask)
        info = probe.wait_for(f"{camera}/camera_info", lambda m: m.header.stamp == frames[camera].header.stamp)
        assert info.header.frame_id == f"{camera}_optical"


def test_frames_of_two_cameras_waiting_together_are_segmented_in_one_forward(cameras, monkeypatch):
    node, probe = cameras
    held = HeldForward(node, monkeypatch)
    held.hold_worker(probe)
    frames = {"left": probe.frame("left", scene(3)), "right": probe.frame("right", scene(4))}
    _publish_until_waiting(node, probe, frames)
    held.gate.set()
    for camera, msg in frames.items():
        probe.mask_of(camera, msg.header)
    assert held.calls == [2]  # one segment call with both frames
    # the held frame's forward (batch 1), then one forward of batch 2 for both cameras
    assert held.forward_batches == [1, 2]


def test_what_one_camera_subscribes_to_is_computed_in_the_shared_forward(cameras, monkeypatch):

    node, probe = cameras
    probe.subscribe("right/confidence")
    maps = probe.received["right/confidence"]
    try:
        deadline = time.monotonic() + 10
        while not node._streams[1].subscribed("confidence"):
            assert time.monotonic() < deadline, "the node never saw the confidence subscriber"
            time.sleep(0.05)
        held = HeldForward(node, monkeypatch)
        held.hold_worker(probe)
        frames = {"left": probe.frame("left", scene(11)), "right": probe.frame("right", scene(12))}
        _publish_until_waiting(node, probe, frames)
        held.gate.set()
        probe.wait_for("right/confidence", lambda m: m.header.stamp == frames["right"].header.stamp, what="right confidence")
        probe.mask_of("left", frames["left"].header)
        assert held.calls == [2] and held.options[0]["return_confidences"] is True
        monkeypatch.undo()
        result = node.segmenter.segment([scene(11), scene(12)])[1]
        confidence = next(m for m in maps if m.header.stamp == frames["right"].header.stamp)
        np.testing.assert_allclose(np.stack([image_msg_to_array(m) for m in confidence.maps]), result.confidences,
                                   atol=1e-6)
    finally:
        probe.unsubscribe("right/confidence")


def test_a_newer_frame_of_a_camera_replaces_the_waiting_one_and_counts_as_dropped(cameras, monkeypatch):
    node, probe = cameras
    held = HeldForward(node, monkeypatch)
    held.hold_worker(probe)
    left = node._streams[0]
    dropped = left.counters.dropped
    first, newer = probe.frame("left", scene(5)), probe.frame("left", scene(6))
    _publish_until_waiting(node, probe, {"left": first})
    _publish_until_waiting(node, probe, {"left": newer})
    assert left.counters.dropped > dropped
    held.gate.set()
    probe.mask_of("left", newer.header)
    assert held.calls[0] == 1
    assert not any(m.header.stamp == first.header.stamp for m in probe.received["left/mask"])


def test_a_malformed_frame_of_one_camera_does_not_stop_the_other_cameras_frame(cameras, monkeypatch):
    node, probe = cameras
    streams = {stream.name: stream for stream in node._streams}
    rejected = streams["left"].counters.rejected_frames
    held = HeldForward(node, monkeypatch)
    held.hold_worker(probe)
    bad = probe.frame("left", scene(7))
    bad.data = bytes(bad.data)[:-5]  # shorter than height x step
    good = probe.frame("right", scene(8))
    _publish_until_waiting(node, probe, {"left": bad, "right": good})
    held.gate.set()
    mask = probe.mask_of("right", good.header)
    assert held.calls == [1]  # only the good frame was segmented
    monkeypatch.undo()
    np.testing.assert_array_equal(image_msg_to_array(mask), node.segmenter.segment(scene(8)).mask)
    assert streams["left"].counters.rejected_frames == rejected + 1
    assert streams["right"].counters.rejected_frames == 0
    # the node keeps running: the next good frame of the camera that sent the bad one is segmented
    later = probe.frame("left", scene(9))
    probe.publish_until_masked("left", later, "no mask for the left camera's next good frame")


def test_each_camera_has_its_own_diagnostics_status(cameras):
    node, probe = cameras
    msg = probe.frame("right", scene(10))
    probe.publish_until_masked("right", msg, "no mask for the right camera's frame")

    def ours(array):
        return array.status and array.status[0].name == "lseg_node: segmentation" and any(
            kv.key == "node" and kv.value == NODE for kv in array.status[0].values) and len(array.status) == 4

    def values_of(array, name):
        status = next(s for s in array.status if s.name == name)
        return status, {kv.key: kv.value for kv in status.values}

    array = probe.wait_for("diagnostics", lambda a: ours(a) and int(values_of(
        a, "lseg_node: camera right")[1]["processed"]) > 0 and "no frame" in values_of(a, "lseg_node: camera idle")[0].message,
        what="diagnostics with a status per camera")
    assert [s.name for s in array.status] == ["lseg_node: segmentation"] + [f"lseg_node: camera {c}" for c in CAMERAS]
    shared = values_of(array, "lseg_node: segmentation")[1]
    assert shared["cameras"] == ", ".join(CAMERAS) and shared["labels"] == ", ".join(NODE_PARAMETERS["labels"])
    status, right = values_of(array, "lseg_node: camera right")
    assert right["camera"] == "right" and right["input_topic"] == f"/{NAMESPACE}/right/image"
    for key in ("frames_in", "dropped", "processed", "rejected_frames", "Actual frequency (Hz)",
                "Latest acceptable timestamp delay", "seconds_since_last_frame"):
        assert key in right
    status, idle = values_of(array, "lseg_node: camera idle")
    assert idle["frames_in"] == "0" and idle["processed"] == "0"
    assert "no frame for" in status.message and f"/{NAMESPACE}/idle/image" in status.message
    assert "input frequency: No events recorded." in status.message and status.level == b"\x02"


def test_deactivating_unsubscribes_every_camera_and_activating_subscribes_them_again(cameras):
    node, probe = cameras

    def image_subscriptions():
        return {topic for topic, _ in node.get_subscriber_names_and_types_by_node("lseg_node", f"/{NAMESPACE}")
                if topic.endswith(("/image", "/camera_info", "/depth"))}

    node._deactivate()
    try:
        assert node.input_topics() == [] and all(stream.slot is None for stream in node._streams)
        eventually(lambda: image_subscriptions() == set(), f"still subscribed: {image_subscriptions()}")
    finally:
        node._activate()
    eventually(lambda: len(image_subscriptions()) == 3 * len(CAMERAS), f"subscribed: {image_subscriptions()}")
    msg = probe.frame("left", scene(13))
    probe.publish_until_masked("left", msg, "no mask after activating again")


@pytest.mark.parametrize("names, bad", [([""], "''"), (["front camera"], "'front camera'"), (["2nd"], "'2nd'"),
                                        (["front/left"], "'front/left'"), (["__ns"], "'__ns'"),
                                        (["front", "rear", "front"], "'front' given twice")])
def test_invalid_camera_names_are_refused_naming_the_value(names, bad):
    with pytest.raises(ValueError, match="cameras") as error:
        NodeConfig(cameras=names).validate()
    assert bad in str(error.value)


def test_a_node_with_an_invalid_camera_name_fails_to_configure_naming_it(cameras):
    with pytest.raises(ValueError, match="camera name 'front camera'"):
        LsegNode("lseg_bad_cameras", namespace="bad", parameter_overrides=parameter_overrides(
            dict(NODE_PARAMETERS, cameras=["front camera"])))


def test_compressed_transport_and_remaps_apply_to_each_camera(cameras):
    node = LsegNode("lseg_node", namespace="compressed_cameras", parameter_overrides=parameter_overrides(
        dict(NODE_PARAMETERS, cameras=["front", "rear"], image_transport="compressed")),
        cli_args=["--ros-args", "-r", "front/image:=/robot/front/color/image_raw"])
    try:
        assert node.input_topics() == ["/robot/front/color/image_raw/compressed",
                                       "/compressed_cameras/rear/image/compressed"]
    finally:
        node.destroy_node()


# ------------------------------------------------------------------ launch
def test_cameras_launch_argument_takes_a_list_or_comma_separated_names():
    from lseg_ros.ros import launch_args

    for text in ("[front, rear]", "front, rear", "['front', 'rear']"):
        assert launch_args.node_parameters({"cameras": text}) == {"cameras": ["front", "rear"]}, text


def test_remaps_launch_argument_remaps_each_cameras_inputs():
    from lseg_ros.ros import launch_args

    rules = launch_args.remappings("/cam/image", "/cam/info", "labels", "/cam/depth",
                                   "front/image:=/front/color/image_raw, rear/depth:=/rear/depth/image_rect_raw")
    assert rules[-2:] == [("front/image", "/front/color/image_raw"), ("rear/depth", "/rear/depth/image_rect_raw")]
    assert launch_args.remappings("/a", "/b", "c", "/d", "") == launch_args.remappings("/a", "/b", "c", "/d")
    with pytest.raises(ValueError, match="'front/image=/x'"):
        launch_args.remappings("/a", "/b", "c", "/d", "front/image=/x")


def test_rviz_shows_the_first_cameras_outputs_with_several_cameras():
    from pathlib import Path

    import yaml

    from lseg_ros.ros import launch_args

    template = (Path(__file__).resolve().parent.parent / "config" / "lseg.rviz").read_text()
    rendered = yaml.safe_load(launch_args.render_rviz_config(template, "/front/color/image_raw", "robot",
                                                             camera="front"))
    assert [display["Topic"]["Value"] for display in rendered["Visualization Manager"]["Displays"]] == [
        "/front/color/image_raw", "/robot/lseg_node/front/overlay", "/robot/lseg_node/front/mask",
        "/robot/lseg_node/front/confidence_image", "/robot/lseg_node/front/points", "/robot/lseg_node/front/markers"]
