"""lseg_node's mapping and navigation outputs over real rclpy/DDS, compared with the core
modules on the same frame: ~/points and ~/obstacle_points (geometry.labelled_points),
~/objects and ~/markers (objects.find_objects), ~/embeddings with ~/encode_text (the
engine's logits), depth pairing by stamp, and outputs computed only while subscribed.
"""
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("lseg_ros.msg", reason="ROS interfaces not built (run scripts/setup_env.sh)")

from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from lseg_ros.geometry import Intrinsics, depth_to_metres, labelled_points, points_stride  # noqa: E402
from lseg_ros.msg import FeatureMap, ObjectArray  # noqa: E402
from lseg_ros.objects import find_objects  # noqa: E402
from lseg_ros.ros.conversions import (cloud_msg_to_records, feature_map_to_array, metres_to_depth_msg,  # noqa: E402
                                      rgb_to_image_msg, semantic_cloud_msg)
from lseg_ros.ros.node import LsegNode, input_qos, obstacle_indices  # noqa: E402
from lseg_ros.ros.params import parameter_overrides  # noqa: E402
from lseg_ros.viz import label_colors  # noqa: E402

from helpers import TEST_DEVICE, domain_id, scene  # noqa: E402
from ros_helpers import ParameterClient, Probe, spinning, wait_future  # noqa: E402

pytestmark = pytest.mark.ros


def _result(future, timeout=30.0):
    wait_future(future, timeout)
    return future.result()

LABELS = ["floor", "wall", "door; doorway"]
PARAMETERS = {"backend": "dense_clip", "model": "lseg-test-tiny-ViT", "pretrained": "random", "device": TEST_DEVICE,
              "short_side": 64, "max_long_side": 128, "labels": LABELS, "diagnostics_period": 0.2,
              "points_stride": 1, "min_depth": 0.05, "max_depth": 20.0, "obstacle_labels": ["doorway"],
              "min_object_pixels": 4}
K = [40.0, 0.0, 31.5, 0.0, 42.0, 23.5, 0.0, 0.0, 1.0]  # of the 64x48 color image
OUTPUTS = {"points": (PointCloud2, "points"), "obstacles": (PointCloud2, "obstacle_points"),
           "objects": (ObjectArray, "objects"), "markers": (MarkerArray, "markers"),
           "embeddings": (FeatureMap, "embeddings"), "mask": (Image, "mask")}


class MappingProbe(Probe):
    """Publishes frames, depth and camera_info; subscribes to the outputs it is asked for."""

    def __init__(self, namespace):
        node_path = f"/{namespace}/lseg_node"
        super().__init__(namespace, name="mapping_probe", stamp_base=2000, subscribe=["mask"],
                         outputs={key: (msg_type, f"{node_path}/{topic}", 10) for key, (msg_type, topic) in OUTPUTS.items()})
        # depth and camera_info reliable, as camera drivers publish them (the node's depth_qos default)
        self.depth_pub = self.node.create_publisher(Image, "depth", QoSProfile(depth=5))

    def send(self, rgb, depth_msg=None, depth_offset_ns=0, info=True, timeout=20.0):
        """Publish camera_info, depth (stamp shifted by ``depth_offset_ns``) and the frame
        until its mask arrives (best-effort topics); returns the frame's header."""
        header = self.next_header("camera_optical")
        if depth_msg is not None:
            depth_msg.header = Header(frame_id=header.frame_id)
            total = header.stamp.sec * 10**9 + header.stamp.nanosec + depth_offset_ns
            depth_msg.header.stamp.sec, depth_msg.header.stamp.nanosec = divmod(total, 10**9)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if info:
                self.info_pub.publish(CameraInfo(header=header, width=64, height=48, k=K))
            if depth_msg is not None:
                self.depth_pub.publish(depth_msg)
                time.sleep(0.05)  # the depth is in the node's buffer before the frame is segmented
            self.image_pub.publish(rgb_to_image_msg(rgb, header))
            try:
                self.wait_for_stamp("mask", header, timeout=1.5)
                return header
            except AssertionError:
                continue
        raise AssertionError("no mask for the frame")


@pytest.fixture(scope="module")
def mapping():
    def make_nodes():
        node = LsegNode("lseg_node", namespace="mapcam", parameter_overrides=parameter_overrides(PARAMETERS))
        return node, MappingProbe("mapcam")

    with spinning(domain_id(), make_nodes) as pair:
        yield pair


def ramp_depth(height=48, width=64, seed=0):
    """Metres: a slanted plane with a few holes (no return)."""
    rng = np.random.default_rng(seed)
    depth = 1.0 + 0.03 * np.arange(height)[:, None] + 0.01 * np.arange(width)[None, :]
    depth = depth.astype(np.float32)
    depth[rng.random(depth.shape) < 0.05] = np.nan
    return depth


def expected_points(node, rgb, depth_m, include_unknown=False):
    result = node.segmenter.segment(rgb)
    return result, labelled_points(depth_m, result.mask, Intrinsics.from_k(K, 64, 48), rgb=rgb,
                                   confidence=result.confidences.max(0), stride=1, min_depth=0.05, max_depth=20.0,
                                   unknown_value=None if include_unknown else result.unknown_value)


def test_points_equal_the_core_back_projection_of_the_same_frame(mapping):
    node, probe = mapping
    probe.subscribe("points")
    rgb, depth_m = scene(1), ramp_depth()
    header = probe.send(rgb, metres_to_depth_msg(depth_m, Header(), "16UC1"))
    cloud = probe.wait_for_stamp("points", header)
    millimetres = depth_to_metres(np.where(np.isfinite(depth_m), np.rint(depth_m * 1000), 0).astype(np.uint16),
                                  "16UC1")
    _, points = expected_points(node, rgb, millimetres)
    expected = cloud_msg_to_records(semantic_cloud_msg(points, header))
    got = cloud_msg_to_records(cloud)
    assert cloud.header.frame_id == "camera_optical" and len(got) == len(expected) > 2500
    for field in ("x", "y", "z", "confidence"):
        np.testing.assert_allclose(got[field], expected[field], rtol=1e-6, atol=1e-6)
    for field in ("rgb", "label"):
        np.testing.assert_array_equal(got[field], expected[field])
    probe.unsubscribe("points")


def test_depth_of_another_size_in_metres_within_the_slop_is_paired(mapping):
    node, probe = mapping
    probe.subscribe("points")
    rgb, depth_m = scene(2), ramp_depth(24, 32, seed=1)  # half-size 32FC1 depth, registered to the image
    header = probe.send(rgb, metres_to_depth_msg(depth_m, Header(), "32FC1"), depth_offset_ns=20_000_000)
    got = cloud_msg_to_records(probe.wait_for_stamp("points", header))
    _, points = expected_points(node, rgb, depth_m)
    np.testing.assert_allclose(got["z"], points.xyz[:, 2], rtol=1e-6)
    probe.unsubscribe("points")


def test_depth_outside_the_slop_is_counted_and_the_mask_still_comes(mapping):
    node, probe = mapping
    probe.subscribe("points")
    unmatched = node.counters.depth_unmatched
    header = probe.send(scene(3), metres_to_depth_msg(ramp_depth(), Header(), "32FC1"),
                        depth_offset_ns=500_000_000)  # 0.5 s > depth_slop 0.05 s
    time.sleep(0.3)
    assert node.counters.depth_unmatched > unmatched
    assert not any(msg.header.stamp == header.stamp for msg in probe.received["points"])
    probe.unsubscribe("points")


def test_a_bad_depth_image_is_rejected_counted_and_the_next_one_is_used(mapping):
    node, probe = mapping
    probe.subscribe("points")
    rejected = node.counters.rejected_depth
    bad = rgb_to_image_msg(scene(4), Header())  # rgb8 on the depth topic
    probe.send(scene(4), bad)
    deadline = time.monotonic() + 5
    while node.counters.rejected_depth == rejected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert node.counters.rejected_depth > rejected
    header = probe.send(scene(5), metres_to_depth_msg(ramp_depth(), Header(), "32FC1"))
    assert len(cloud_msg_to_records(probe.wait_for_stamp("points", header))) > 2500
    assert node.counters.failed == 0
    probe.unsubscribe("points")


def test_obstacle_points_are_the_points_of_the_obstacle_labels_and_follow_the_parameter(mapping):
    node, probe = mapping
    probe.subscribe("obstacles")
    rgb, depth_m = scene(6), ramp_depth()
    header = probe.send(rgb, metres_to_depth_msg(depth_m, Header(), "32FC1"))
    cloud = probe.wait_for_stamp("obstacles", header)
    assert [(f.name, f.offset, f.datatype) for f in cloud.fields] == [("x", 0, 7), ("y", 4, 7), ("z", 8, 7)]
    result, points = expected_points(node, rgb, depth_m)
    indices, missing = obstacle_indices(result.labels, ["doorway"])
    assert indices == [2] and missing == []  # a synonym names the label
    keep = points.label == 2
    got = cloud_msg_to_records(cloud)
    np.testing.assert_allclose(np.stack([got["x"], got["y"], got["z"]], 1), points.xyz[keep], rtol=1e-6)

    client = ParameterClient(probe.node, probe.ns)
    assert client.wait_for_services(10.0)
    future = client.set_parameters([Parameter("obstacle_labels", value=["floor", "WALL"])])
    assert _result(future).results[0].successful
    header = probe.send(rgb, metres_to_depth_msg(depth_m, Header(), "32FC1"))
    got = cloud_msg_to_records(probe.wait_for_stamp("obstacles", header))
    np.testing.assert_allclose(got["z"], points.xyz[np.isin(points.label, [0, 1]), 2], rtol=1e-6)
    future = client.set_parameters([Parameter("obstacle_labels", value=["ok", "bad\x07"])])
    outcome = _result(future).results[0]
    assert not outcome.successful and "position 1" in outcome.reason
    assert node.node_config.obstacle_labels == ["floor", "WALL"]
    assert _result(client.set_parameters([Parameter("obstacle_labels", value=["doorway"])])).results[0].successful
    probe.unsubscribe("obstacles")


def test_objects_and_markers_equal_the_core_objects_of_the_same_frame(mapping):
    node, probe = mapping
    probe.subscribe("objects", "markers")
    rgb, depth_m = scene(7), ramp_depth()
    header = probe.send(rgb, metres_to_depth_msg(depth_m, Header(), "32FC1"))
    objects = probe.wait_for_stamp("objects", header)
    result = node.segmenter.segment(rgb)
    expected = find_objects(result.mask, 3, result.confidences.max(0), depth_m, Intrinsics.from_k(K, 64, 48),
                            min_pixels=4, depth_band=0.5, min_depth=0.05, max_depth=20.0)
    assert objects.has_depth and objects.generation == result.generation and len(objects.objects) == len(expected) > 0
    for got, want in zip(objects.objects, expected):
        assert (got.label, got.label_index, got.pixel_count) == (result.labels[want.label_index], want.label_index,
                                                                   want.pixel_count)
        assert (got.roi.x_offset, got.roi.y_offset, got.roi.width, got.roi.height) == want.bbox
        np.testing.assert_allclose([got.centroid.x, got.centroid.y, got.centroid.z], want.centroid, rtol=1e-5)
        np.testing.assert_allclose([got.extent.x, got.extent.y, got.extent.z], want.extent, rtol=1e-5, atol=1e-6)
        assert got.confidence == pytest.approx(want.confidence, rel=1e-6)
    markers = None
    deadline = time.monotonic() + 10
    while markers is None and time.monotonic() < deadline:
        with probe.lock:
            markers = next((m for m in probe.received["markers"] if m.markers and m.markers[0].header.stamp ==
                            header.stamp), None)
        time.sleep(0.02)
    assert markers is not None and markers.markers[0].action == Marker.DELETEALL
    boxes = [m for m in markers.markers if m.type == Marker.CUBE]
    texts = [m for m in markers.markers if m.type == Marker.TEXT_VIEW_FACING]
    assert len(boxes) == len(texts) == len(expected)
    colors = label_colors(3)
    for box, text, want in zip(boxes, texts, expected):
        assert text.text == result.labels[want.label_index]
        assert (round(box.color.r * 255), round(box.color.g * 255)) == colors[want.label_index][:2]
        assert box.pose.position.z == pytest.approx(float(want.centroid[2]), rel=1e-5)
    probe.unsubscribe("objects", "markers")


def test_objects_without_depth_have_nan_positions(mapping):
    node, probe = mapping
    probe.subscribe("objects")
    header = probe.send(scene(8), None)  # no depth near this stamp
    objects = probe.wait_for_stamp("objects", header)
    assert not objects.has_depth and objects.objects
    assert all(np.isnan(o.centroid.z) and o.depth_pixel_count == 0 for o in objects.objects)
    probe.unsubscribe("objects")


def test_embeddings_queried_with_encode_text_give_the_node_logits(mapping):
    """cosine(~/embeddings pixel, ~/encode_text("door")) * logit_scale == the node's logit
    for that pixel before upsampling."""
    from lseg_ros.srv import EncodeText

    node, probe = mapping
    probe.subscribe("embeddings")
    rgb = scene(9)
    header = probe.send(rgb)
    feature_map = probe.wait_for_stamp("embeddings", header)
    embeddings = feature_map_to_array(feature_map).astype(np.float32)  # [h, w, D]
    client = probe.node.create_client(EncodeText, f"{probe.ns}/encode_text")
    assert client.wait_for_service(timeout_sec=10.0)
    reply = _result(client.call_async(EncodeText.Request(texts=["door", "doorway", "floor", "wall"])))
    assert reply.success and reply.model == feature_map.model == node.segmenter.description
    assert reply.dim == feature_map.dim == embeddings.shape[2]
    texts = np.asarray(reply.embeddings, dtype=np.float32).reshape(4, reply.dim)
    segmenter = node.segmenter
    with torch.inference_mode():
        x = segmenter.model_input([rgb])
        logits = segmenter.classify(segmenter.backend(x), segmenter.label_set.label_embeddings, x)[0].numpy()
    # the label set's names: floor, wall, door, doorway (the synonyms of label 2)
    names = ["floor", "wall", "door", "doorway"]
    order = [names.index(text) for text in ("door", "doorway", "floor", "wall")]
    ours = np.einsum("hwd,nd->nhw", embeddings, texts) * reply.logit_scale
    assert feature_map.logit_scale == pytest.approx(reply.logit_scale)
    assert ours.shape == logits[order].shape
    np.testing.assert_allclose(ours, logits[order], atol=0.1)  # float16 embeddings, logit scale 100
    assert (feature_map.scale_x, feature_map.scale_y) == pytest.approx((64 / feature_map.width, 48 / feature_map.height))
    bad = _result(client.call_async(EncodeText.Request(texts=["door", ""])))
    assert not bad.success and "position 1" in bad.message
    probe.unsubscribe("embeddings")


def test_embeddings_every_n_frames(mapping):
    node, probe = mapping
    probe.subscribe("embeddings")
    node.node_config.embeddings_every_n = 2  # read-only parameter: set as a restart would
    try:
        headers = [probe.send(scene(10 + i)) for i in range(4)]
        time.sleep(0.3)
        with probe.lock:
            stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in probe.received["embeddings"]}
        sent = [(h.stamp.sec, h.stamp.nanosec) in stamps for h in headers]
        assert sum(sent) == 2 and sent[0] != sent[1]
    finally:
        node.node_config.embeddings_every_n = 1
        probe.unsubscribe("embeddings")


def test_nothing_is_computed_for_outputs_without_subscribers(mapping, monkeypatch):
    node, probe = mapping
    calls = []
    import lseg_ros.ros.outputs as outputs_module

    for name in ("labelled_points", "find_objects", "feature_map_msg"):
        original = getattr(outputs_module, name)
        monkeypatch.setattr(outputs_module, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    matched = node.counters.depth_matched
    for index in range(3):
        probe.send(scene(20 + index), metres_to_depth_msg(ramp_depth(), Header(), "32FC1"))
    assert calls == [] and node.counters.depth_matched == matched
    segmented = []
    original_segment = node.segmenter.segment
    monkeypatch.setattr(node.segmenter, "segment",
                        lambda *a, **k: segmented.append(k) or original_segment(*a, **k))
    probe.send(scene(30))
    assert segmented and not segmented[-1]["return_embeddings"]


def _reliability(node, topic):
    """The reliability of ``node``'s own subscription to ``topic``."""
    infos = [info for info in node.get_subscriptions_info_by_topic(topic) if info.node_name == node.get_name()
             and info.node_namespace == node.get_namespace()]
    assert len(infos) == 1, infos
    return infos[0].qos_profile.reliability


def test_depth_qos_sets_the_reliability_of_the_depth_and_camera_info_subscriptions(mapping):
    node, _ = mapping
    assert node.node_config.depth_qos == "reliable"  # the default: what camera drivers publish
    for topic in ("/mapcam/depth", "/mapcam/camera_info"):
        assert _reliability(node, topic) == ReliabilityPolicy.RELIABLE
    assert _reliability(node, "/mapcam/image") == ReliabilityPolicy.BEST_EFFORT  # image_qos unchanged
    other = LsegNode("lseg_node", namespace="qoscam",
                     parameter_overrides=parameter_overrides({**PARAMETERS, "labels": [], "depth_qos": "sensor_data"}))
    try:
        for topic in ("/qoscam/depth", "/qoscam/camera_info"):
            assert _reliability(other, topic) == ReliabilityPolicy.BEST_EFFORT
    finally:
        other.destroy_node()
    with pytest.raises(ValueError, match="depth_qos: 'best_effort'; accepted: sensor_data, reliable"):
        input_qos("depth_qos", "best_effort", 5)


PUBLISH_DEPTH = """
import sys, time
import numpy as np
import rclpy
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
rclpy.init(domain_id=int(sys.argv[1]))
node = rclpy.create_node("depth_camera")
# reliable, as realsense2_camera; a history holding every frame: with a shorter one a frame not yet
# acknowledged (1.8 MB, a loaded machine, a reader still completing its match) is replaced in the
# writer's own history, a loss no subscriber can prevent (5 of 30 were lost that way with depth 5)
publisher = node.create_publisher(Image, sys.argv[2], QoSProfile(depth=int(sys.argv[3])))
msg = Image(encoding="16UC1", width=1280, height=720, step=2560, data=np.full(1280 * 720, 1500, "<u2").tobytes())
deadline = time.monotonic() + 20
while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(0.5)
for index in range(int(sys.argv[3])):
    msg.header.stamp.sec = 5000 + index
    publisher.publish(msg)
    time.sleep(0.1)
time.sleep(1.0)
"""


@pytest.mark.slow
def test_reliable_1280x720_depth_from_another_process_arrives(mapping):
    """A RealSense-like aligned depth stream (1.8 MB 16UC1 frames, reliable, 10 Hz) from
    another process reaches the node; best effort, most such frames never arrived."""
    node, _ = mapping
    before, frames = node.counters.depth_in, 30
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    process = subprocess.run([sys.executable, "-c", PUBLISH_DEPTH, str(node.context.get_domain_id()), "/mapcam/depth",
                              str(frames)], env=env, timeout=60, capture_output=True, text=True)
    assert process.returncode == 0, process.stderr
    # Reliable delivery into the node's keep-last-5 depth history (DEPTH_QOS_HISTORY): a frame is
    # dropped only when the executor falls 5 frames behind, which a loaded 2-core machine does now
    # and then (24-27 of 30 counted in 2 of 8 runs); best effort lost most frames of this size.
    expected = frames * 2 // 3
    deadline = time.monotonic() + 10  # frames still queued for the node's callbacks
    while node.counters.depth_in - before < frames - 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert node.counters.depth_in - before >= expected
    assert len(node._streams[0].depth) > 0


def test_camera_info_that_cannot_be_a_camera_is_rejected_counted_and_the_last_good_one_stays(mapping):
    """cx 1e300, fx 1e-30, a width of 2^32-1: rejected (naming the value); the points of
    the next frame use the last good camera_info, so no inf or 1e32 m points."""
    node, probe = mapping
    probe.subscribe("points")
    rgb, depth_m = scene(40), ramp_depth()
    probe.send(rgb, metres_to_depth_msg(depth_m, Header(), "32FC1"))  # the good K in use
    for change in ({"k": [40.0, 0.0, 1e300, 0.0, 42.0, 23.5, 0.0, 0.0, 1.0]},
                   {"k": [1e-30, 0.0, 31.5, 0.0, 42.0, 23.5, 0.0, 0.0, 1.0]}, {"width": 2**32 - 1}):
        rejected = node.counters.rejected_camera_info
        bad = CameraInfo(**{"width": 64, "height": 48, "k": K, **change})
        deadline = time.monotonic() + 10
        probe.info_pub.publish(bad)  # reliable (depth_qos), matched since the good K came through
        while node.counters.rejected_camera_info == rejected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node.counters.rejected_camera_info == rejected + 1
    assert list(node._streams[0].camera_info.k) == K
    header = probe.send(rgb, metres_to_depth_msg(depth_m, Header(), "32FC1"), info=False)
    got = cloud_msg_to_records(probe.wait_for_stamp("points", header))
    _, points = expected_points(node, rgb, depth_m)
    assert np.isfinite(got["x"]).all() and np.abs(got["x"]).max() < 100
    np.testing.assert_allclose(got["x"], points.xyz[:, 0], rtol=1e-6)
    assert node.counters.failed == 0
    probe.unsubscribe("points")


def test_max_points_decimates_the_cloud_by_a_larger_stride(mapping):
    node, probe = mapping
    probe.subscribe("points", "obstacles")
    node.node_config.max_points = 500  # read-only parameter: set as a restart would
    try:
        rgb, depth_m = scene(41), ramp_depth()
        header = probe.send(rgb, metres_to_depth_msg(depth_m, Header(), "32FC1"))
        got = cloud_msg_to_records(probe.wait_for_stamp("points", header))
        obstacles = cloud_msg_to_records(probe.wait_for_stamp("obstacles", header))
    finally:
        node.node_config.max_points = 1_000_000
        probe.unsubscribe("points", "obstacles")
    stride = points_stride((48, 64), 1, 500)
    assert stride == 3  # 16 x 22 = 352 pixels; stride 2 gives 768
    result = node.segmenter.segment(rgb)
    points = labelled_points(depth_m, result.mask, Intrinsics.from_k(K, 64, 48), rgb=rgb,
                             confidence=result.confidences.max(0), stride=stride, min_depth=0.05, max_depth=20.0,
                             unknown_value=result.unknown_value)
    assert 0 < len(got) == len(points) <= 500
    np.testing.assert_allclose(got["x"], points.xyz[:, 0], rtol=1e-6)
    np.testing.assert_array_equal(got["label"], points.label)
    assert len(obstacles) == int((points.label == 2).sum())


def test_a_best_effort_depth_publisher_that_cannot_match_is_logged_with_the_fix(mapping, monkeypatch):
    node, probe = mapping
    lines = []
    original = node._log
    monkeypatch.setattr(node, "_log", lambda level, text, **kw: lines.append((level, text)) or original(level, text, **kw))
    publisher = probe.node.create_publisher(Image, "depth", qos_profile_sensor_data)  # best effort: no match
    try:
        # the incompatible-QoS event comes with discovery: 10 s was not always enough on a loaded CI machine
        deadline = time.monotonic() + 30
        while not any("depth_qos:=sensor_data" in text for _, text in lines) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        probe.node.destroy_publisher(publisher)
    warnings = [text for level, text in lines if level == "warning" and "/mapcam/depth" in text]
    assert warnings and "depth_qos:=reliable" in warnings[0] and "set depth_qos:=sensor_data" in warnings[0]
