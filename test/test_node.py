"""lseg_node end to end over real rclpy/DDS: frames in, outputs out, compared with the engine.

The node runs a tiny dense_clip model with random weights (the masks are meaningless but
deterministic, so the node's outputs can be compared with the engine's on the same frame).
Each test run uses its own ROS_DOMAIN_ID and localhost-only discovery.
"""
import math
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("lseg_ros.msg", reason="ROS interfaces not built (run scripts/setup_env.sh)")

from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header, String  # noqa: E402

from lseg_ros.msg import LabelQuery, LabelSpec  # noqa: E402
from lseg_ros.ros.conversions import image_msg_to_array, rgb_to_image_msg  # noqa: E402
from lseg_ros.ros.node import LsegNode  # noqa: E402
from lseg_ros.ros.params import parameter_overrides  # noqa: E402

from helpers import LABELS, NODE_PARAMETERS, scene  # noqa: E402
from ros_helpers import (ParameterClient, Probe, call, diagnosed_node, label_spec, restore_labels,  # noqa: E402
                         set_labels_client, slow_label_encoding, header_stamp, wait_future)

pytestmark = pytest.mark.ros

def test_mask_equals_the_engine_mask_for_the_same_frame(running):
    node, probe = running
    rgb = scene(1)
    header, mask_msg = probe.send_frame(rgb)
    expected = node.segmenter.segment(rgb)
    np.testing.assert_array_equal(image_msg_to_array(mask_msg), expected.mask)
    assert mask_msg.encoding == "mono8"


def test_all_outputs_carry_the_source_header(running):
    node, probe = running
    info = CameraInfo(width=64, height=48, k=[50.0, 0, 32, 0, 50.0, 24, 0, 0, 1])
    probe.info_pub.publish(info)
    time.sleep(0.3)
    header, mask_msg = probe.send_frame(scene(2), frame_id="cam_optical")
    same = lambda m: m.header.stamp == header.stamp and m.header.frame_id == "cam_optical"  # noqa: E731
    assert same(mask_msg)
    probe.wait_for("overlay", same)
    probe.wait_for("confidence", same)
    scaled = probe.wait_for("camera_info", same)
    assert (scaled.width, scaled.height) == (64, 48)


def test_confidence_maps_sum_to_one_and_match_the_engine(running):
    node, probe = running
    rgb = scene(3)
    header, _ = probe.send_frame(rgb)
    maps = probe.wait_for("confidence", lambda m: m.header.stamp == header.stamp)
    stack = np.stack([image_msg_to_array(m) for m in maps.maps])
    assert list(maps.labels) == LABELS and all(m.encoding == "32FC1" for m in maps.maps)
    np.testing.assert_allclose(stack.sum(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(stack, node.segmenter.segment(rgb).confidences, atol=1e-6)
    best = probe.wait_for("confidence_image", lambda m: m.header.stamp == header.stamp)
    assert best.encoding == "32FC1" and (best.height, best.width) == (48, 64)
    np.testing.assert_allclose(image_msg_to_array(best), stack.max(0), atol=1e-6)


def test_overlay_is_rgb8_of_the_frame_size(running):
    node, probe = running
    header, _ = probe.send_frame(scene(4))
    overlay = probe.wait_for("overlay", lambda m: m.header.stamp == header.stamp)
    assert overlay.encoding == "rgb8" and (overlay.height, overlay.width) == (48, 64)


def test_label_info_lists_labels_colors_and_unknown_value(running):
    node, probe = running
    info = probe.wait_label_info(lambda m: list(m.labels) == node.segmenter.labels)
    assert len(info.colors) == len(info.labels)
    assert info.unknown_value == 255 and "dense_clip" in info.model


def test_labels_topic_changes_labels_from_the_next_frame(running):
    node, probe = running
    probe.labels_pub.publish(String(data="chair, table, person, plant"))
    probe.wait_label_info(lambda m: list(m.labels) == ["chair", "table", "person", "plant"])
    header, mask_msg = probe.send_frame(scene(5))
    expected = node.segmenter.segment(scene(5)).mask
    np.testing.assert_array_equal(image_msg_to_array(mask_msg), expected)
    restore_labels(node, probe)


def test_label_query_with_prompts_and_thresholds(running):
    node, probe = running
    query = LabelQuery()
    query.labels = [LabelSpec(name="floor", prompts=["a wooden floor"], threshold=1.0),
                    LabelSpec(name="wall", prompts=[], threshold=float("nan")),
                    LabelSpec(name="door", prompts=["a glass door", "a door with a handle"], threshold=0.0)]
    probe.query_pub.publish(query)
    probe.wait_label_info(lambda m: list(m.labels) == LABELS and node.segmenter.label_set.descriptions[0])
    assert node.segmenter.label_set.descriptions == [["a wooden floor"], [], ["a glass door", "a door with a handle"]]
    header, mask_msg = probe.send_frame(scene(6))
    mask = image_msg_to_array(mask_msg)
    expected = node.segmenter.segment(scene(6))
    np.testing.assert_array_equal(mask, expected.mask)
    floor_best = expected.confidences.argmax(0) == 0
    # floor needs confidence 1.0: its pixels are unknown unless float32 softmax saturated to exactly 1
    assert np.all((mask[floor_best] == 255) | (expected.confidences[0][floor_best] >= 1.0))
    assert np.all(mask[~floor_best] == expected.confidences.argmax(0)[~floor_best])
    restore_labels(node, probe)
    assert not node.segmenter.label_set.descriptions[0]


def test_labels_parameter_is_settable_at_run_time_and_rejects_bad_values(running):
    node, probe = running
    client = ParameterClient(probe.node, "/camera/lseg_node")
    assert client.wait_for_services(timeout_sec=10.0)
    future = client.set_parameters([Parameter("labels", value=["sofa", "lamp"])])
    wait_future(future)
    assert future.result().results[0].successful
    probe.wait_label_info(lambda m: list(m.labels) == ["sofa", "lamp"])
    future = client.set_parameters([Parameter("labels", value=["sofa", "sofa"])])
    wait_future(future)
    result = future.result().results[0]
    assert not result.successful and "duplicate label 'sofa'" in result.reason
    future = client.set_parameters([Parameter("backend", value="lseg")])
    wait_future(future)
    assert not future.result().results[0].successful  # read-only: needs a restart
    wait_future(client.set_parameters([Parameter("labels", value=LABELS)]))
    probe.wait_label_info(lambda m: list(m.labels) == LABELS)


@pytest.mark.parametrize("value", [5, True, 3.5])
def test_labels_parameter_of_a_wrong_type_is_rejected_and_the_node_keeps_running(running, value):
    node, probe = running
    client = ParameterClient(probe.node, "/camera/lseg_node")
    assert client.wait_for_services(timeout_sec=10.0)
    future = client.set_parameters([Parameter("labels", value=value)])
    wait_future(future)
    result = future.result().results[0]
    assert not result.successful and "string array" in result.reason
    assert node.segmenter.labels == LABELS
    probe.send_frame(scene(20))


def test_atomic_parameter_change_with_one_bad_value_changes_nothing(running):
    node, probe = running
    client = ParameterClient(probe.node, "/camera/lseg_node")
    assert client.wait_for_services(timeout_sec=10.0)
    future = client.set_parameters_atomically([Parameter("labels", value=["sofa", "lamp"]),
                                               Parameter("overlay_alpha", value=5.0)])
    wait_future(future)
    assert not future.result().result.successful
    probe.send_frame(scene(21))
    assert node.segmenter.labels == LABELS and node.node_config.overlay_alpha == 0.5


def test_threshold_change_does_not_undo_a_label_query_waiting_to_be_applied(running):
    node, probe = running
    client = ParameterClient(probe.node, "/camera/lseg_node")
    assert client.wait_for_services(timeout_sec=10.0)
    real_segment = node.segmenter.segment
    node.segmenter.segment = lambda *a, **k: (time.sleep(0.5), real_segment(*a, **k))[1]  # keep the worker busy
    try:
        probe.image_pub.publish(rgb_to_image_msg(scene(22), probe.next_header()))
        time.sleep(0.2)
        query = LabelQuery()
        query.labels = [LabelSpec(name="sofa", threshold=float("nan")), LabelSpec(name="lamp", threshold=0.0)]
        probe.query_pub.publish(query)
        time.sleep(0.1)
        wait_future(client.set_parameters([Parameter("threshold", value=0.1)]))
        probe.wait_label_info(lambda m: list(m.labels) == ["sofa", "lamp"])
        time.sleep(1.5)
        assert node.segmenter.labels == ["sofa", "lamp"]
        assert node.segmenter.label_set.thresholds.tolist() == pytest.approx([0.1, 0.1])
    finally:
        node.segmenter.segment = real_segment
        wait_future(client.set_parameters([Parameter("threshold", value=0.0)]))
        restore_labels(node, probe)


def _bad_images():
    good = rgb_to_image_msg(scene(7), Header())
    short = rgb_to_image_msg(scene(7), Header())
    short.data = bytes(short.data)[:-5]
    zero = rgb_to_image_msg(scene(7), Header())
    zero.width = 0
    unknown = rgb_to_image_msg(scene(7), Header())
    unknown.encoding = "yuv422_yuy2_bogus"
    huge = Image(height=20000, width=20000, encoding="mono8", step=20000, data=b"")
    bad_step = rgb_to_image_msg(scene(7), Header())
    bad_step.step = 3
    del good
    return {"short data": short, "zero width": zero, "unknown encoding": unknown, "absurd size": huge,
            "step smaller than a row": bad_step}


@pytest.mark.parametrize("case", list(_bad_images()))
def test_bad_frames_are_rejected_counted_and_the_next_good_frame_is_processed(running, case):
    node, probe = running
    bad = _bad_images()[case]
    before = node.counters.rejected_frames
    bad.header = probe.next_header()
    probe.image_pub.publish(bad)
    deadline = time.monotonic() + 10
    while node.counters.rejected_frames == before and time.monotonic() < deadline:
        time.sleep(0.02)
        probe.image_pub.publish(bad)
    assert node.counters.rejected_frames > before
    probe.send_frame(scene(8))  # still alive and processing


@pytest.mark.parametrize("names", [[""], ["x" * 5000], [f"label {i}" for i in range(300)], ["door", "door"]],
                         ids=["empty name", "5000 characters", "300 labels", "duplicates"])
def test_bad_label_queries_are_rejected_and_the_label_set_is_kept(running, names):
    node, probe = running
    before = node.counters.rejected_queries
    query = LabelQuery()
    query.labels = [LabelSpec(name=name, threshold=float("nan")) for name in names]
    probe.query_pub.publish(query)
    deadline = time.monotonic() + 10
    while node.counters.rejected_queries == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert node.counters.rejected_queries == before + 1
    assert node.segmenter.labels == LABELS
    probe.send_frame(scene(9))


@pytest.mark.parametrize("text", [" , ;\n ,", ""])
def test_label_text_without_names_is_rejected_and_the_label_set_is_kept(running, text):
    node, probe = running
    before = node.counters.rejected_queries
    probe.labels_pub.publish(String(data=text))
    deadline = time.monotonic() + 10
    while node.counters.rejected_queries == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert node.counters.rejected_queries == before + 1
    assert node.segmenter.labels == LABELS


def test_empty_camera_info_is_rejected_and_frames_are_still_processed(running):
    node, probe = running
    before = dict(vars(node.counters))
    deadline = time.monotonic() + 10
    while node.counters.rejected_camera_info == before["rejected_camera_info"] and time.monotonic() < deadline:
        probe.info_pub.publish(CameraInfo(width=0, height=0))
        time.sleep(0.05)
    assert node.counters.rejected_camera_info > before["rejected_camera_info"]
    probe.send_frame(scene(23))
    assert node.counters.failed == before["failed"]


def test_diagnostics_report_counters_labels_and_device(running):
    node, probe = running
    probe.send_frame(scene(10))
    diagnostics = probe.wait_for("diagnostics", lambda m: diagnosed_node(m) == "/camera/lseg_node" and any(
        kv.key == "processed" and int(kv.value) > 0 for kv in m.status[0].values))
    values = {kv.key: kv.value for kv in diagnostics.status[0].values}
    for key in ("frames_in", "dropped", "rejected_frames", "rejected_queries", "inference_ms_mean",
                "end_to_end_ms_mean", "labels", "device"):
        assert key in values
    assert values["device"] == "cpu"


def test_compressed_images_are_segmented_like_raw_ones(ros):
    node, probe = ros("compressed_camera", image_transport="compressed")
    import io
    from PIL import Image as PilImage

    rgb = scene(11)
    buffer = io.BytesIO()
    PilImage.fromarray(rgb).save(buffer, format="PNG")

    def publish(header):
        return CompressedImage(header=header, format="png", data=buffer.getvalue())

    _, mask_msg = probe.send_frame(rgb, publish=publish)
    np.testing.assert_array_equal(image_msg_to_array(mask_msg), node.segmenter.segment(rgb).mask)


def test_compressed_transport_follows_the_remapped_base_topic(ros):
    """image_transport's convention: -p image_transport:=compressed -r image:=/cam/image_raw
    subscribes to /cam/image_raw/compressed."""
    import io
    from PIL import Image as PilImage

    node = LsegNode("lseg_node", namespace="remapped", cli_args=["--ros-args", "-r", "image:=/cam9/image_raw"],
                    parameter_overrides=parameter_overrides(dict(NODE_PARAMETERS, image_transport="compressed")))
    probe = Probe("remapped")
    probe.compressed_pub = probe.node.create_publisher(CompressedImage, "/cam9/image_raw/compressed",
                                                       qos_profile_sensor_data)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    executor.add_node(probe.node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        assert node._image_sub.topic_name == "/cam9/image_raw/compressed"
        rgb = scene(13)
        buffer = io.BytesIO()
        PilImage.fromarray(rgb).save(buffer, format="PNG")
        _, mask_msg = probe.send_frame(rgb, publish=lambda h: CompressedImage(header=h, format="png",
                                                                              data=buffer.getvalue()))
        np.testing.assert_array_equal(image_msg_to_array(mask_msg), node.segmenter.segment(rgb).mask)
    finally:
        executor.shutdown()
        node.destroy_node()
        probe.node.destroy_node()


def test_deprecated_use_compressed_still_selects_the_compressed_transport(ros):
    node, _ = ros("deprecated_camera", use_compressed=True)
    assert node._image_sub.topic_name == "/deprecated_camera/image/compressed"


def test_empty_label_set_publishes_nothing_until_labels_arrive(ros):
    node, probe = ros("unlabelled_camera", labels=[])
    header = probe.next_header()
    for _ in range(5):
        probe.image_pub.publish(rgb_to_image_msg(scene(12), header))
        time.sleep(0.1)
    time.sleep(0.5)
    assert not probe.received["mask"]
    probe.labels_pub.publish(String(data="floor, wall"))
    probe.wait_label_info(lambda m: list(m.labels) == ["floor", "wall"])


def test_fast_camera_and_slow_model_process_only_the_newest_frames_with_flat_memory(ros):
    import psutil

    node, probe = ros("fast_camera", labels=LABELS)
    probe.wait_label_info()
    real_segment = node.segmenter.segment

    def slow_segment(*args, **kwargs):
        time.sleep(0.25)
        return real_segment(*args, **kwargs)

    node.segmenter.segment = slow_segment
    process = psutil.Process()
    rgb = scene(13, 240, 320)
    rss = []
    last_header = None
    for index in range(240):  # 8 s at 30 Hz
        last_header = probe.next_header()
        probe.image_pub.publish(rgb_to_image_msg(rgb, last_header))
        if index % 10 == 9:
            probe.clear()  # the test's own copies of the outputs are not the node's memory
        if index % 60 == 59:
            rss.append(process.memory_info().rss)
        time.sleep(1 / 30)
    probe.wait_for("mask", lambda m: m.header.stamp == last_header.stamp, timeout=10)
    counters = node.counters
    assert counters.processed < counters.frames_in / 3
    assert counters.dropped >= counters.frames_in - counters.processed - 1
    assert max(rss) - rss[0] < 50 * 2**20, f"resident memory grew: {[r >> 20 for r in rss]} MiB"
    assert not math.isnan(float(counters.end_to_end_s[-1]))


def _latest_info_for(infos, stamp):
    """The label_info in force for a frame: the latest one stamped no later than it."""
    earlier = [info for info in infos if header_stamp(info.header) <= stamp]
    return max(earlier, key=lambda info: (header_stamp(info.header), info.generation)) if earlier else None


def test_label_info_is_stamped_with_the_first_frame_of_its_label_set(running):
    node, probe = running
    probe.send_frame(scene(30))
    probe.clear()
    probe.labels_pub.publish(String(data="sofa, lamp, rug"))
    info = probe.wait_label_info(lambda m: list(m.labels) == ["sofa", "lamp", "rug"])
    assert info.generation == node.segmenter.label_set.generation
    probe.wait_for("mask", lambda m: header_stamp(m.header) == header_stamp(info.header))
    first = probe.wait_for("confidence", lambda m: header_stamp(m.header) == header_stamp(info.header))
    assert first.generation == info.generation and list(first.labels) == ["sofa", "lamp", "rug"]
    with probe.lock:
        earlier = [m for m in probe.received["confidence"] if header_stamp(m.header) < header_stamp(info.header)]
    assert earlier and all(m.generation < info.generation for m in earlier)  # made with the old set
    restore_labels(node, probe)


def test_with_rapidly_alternating_label_sets_every_output_names_the_labels_it_used(running):
    node, probe = running
    sets = ["sofa, lamp", "chair, table, person, plant, door, window"]
    for labels in sets:  # encoded once; the alternation below switches between cached sets
        probe.labels_pub.publish(String(data=labels))
        probe.wait_label_info(lambda m: ", ".join(m.labels) == labels)
    with probe.lock:
        infos_before = list(probe.received["info"])  # the set in force when the alternation starts
    probe.clear()
    start = time.monotonic()
    index = 0
    while time.monotonic() - start < 3.0:  # label sets at 50 Hz, frames at 25 Hz
        probe.labels_pub.publish(String(data=sets[index % 2]))
        if index % 2 == 0:
            probe.image_pub.publish(rgb_to_image_msg(scene(32 + index % 5), probe.next_header()))
        index += 1
        time.sleep(0.02)
    time.sleep(1.0)
    with probe.lock:
        infos, masks, maps = infos_before + list(probe.received["info"]), list(probe.received["mask"]), \
            list(probe.received["confidence"])
    assert len(masks) >= 5 and len(infos) >= 3 and maps
    by_generation = {info.generation: info for info in infos}
    for mask_msg in masks:
        info = _latest_info_for(infos, header_stamp(mask_msg.header))
        assert info is not None
        values = np.unique(image_msg_to_array(mask_msg))
        assert values.max() < len(info.labels), (values, list(info.labels))
    for maps_msg in maps:
        info = by_generation[maps_msg.generation]
        assert list(info.labels) == list(maps_msg.labels) and header_stamp(info.header) <= header_stamp(maps_msg.header)
        assert _latest_info_for(infos, header_stamp(maps_msg.header)).generation == maps_msg.generation
    restore_labels(node, probe)


def test_a_slow_label_encoding_never_stalls_frames_and_a_newer_request_supersedes_it(running):
    node, probe = running
    with slow_label_encoding(node):
        generation = node.segmenter.label_set.generation
        superseded = node.counters.superseded_label_sets
        probe.labels_pub.publish(String(data="slow one, slow two, slow three, slow four"))  # ~2 s to encode
        deadline = time.monotonic() + 5
        while node.label_scheduler.encoding is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert node.label_scheduler.encoding is not None
        frames_during = [probe.send_frame(scene(40 + i))[1] for i in range(3)]
        assert node.label_scheduler.encoding is not None, "the encoding finished too fast to show anything"
        diagnostics = probe.wait_for("diagnostics", lambda m: diagnosed_node(m) == "/camera/lseg_node" and any(
            kv.key == "label_encoding" and kv.value.startswith("4 labels") for kv in m.status[0].values))
        assert "encoding" in diagnostics.status[0].message
        assert node.segmenter.label_set.generation == generation  # still the old set
        assert all(image_msg_to_array(m).max() < len(LABELS) for m in frames_during)
        probe.labels_pub.publish(String(data="newer one, newer two"))
        info = probe.wait_label_info(lambda m: list(m.labels) == ["newer one", "newer two"], timeout=30)
        assert info.generation > generation
        assert node.counters.superseded_label_sets == superseded + 1
        assert not any(list(m.labels)[0] == "slow one" for m in probe.received["info"])
    restore_labels(node, probe)


def test_unsetting_the_labels_parameter_is_refused_and_it_stays_settable(running):
    node, probe = running
    client = ParameterClient(probe.node, "/camera/lseg_node")
    assert client.wait_for_services(timeout_sec=10.0)
    future = client.set_parameters([Parameter("labels", Parameter.Type.NOT_SET)])
    wait_future(future)
    result = future.result().results[0]
    assert not result.successful and "cannot be unset" in result.reason
    assert node.has_parameter("labels")
    future = client.set_parameters([Parameter("labels", value=["sofa", "lamp"])])
    wait_future(future)
    assert future.result().results[0].successful
    probe.wait_label_info(lambda m: list(m.labels) == ["sofa", "lamp"])
    restore_labels(node, probe)


def test_another_node_with_the_same_name_is_reported(running):
    node, probe = running
    assert node.check_unique_name() == 0
    twin = rclpy.create_node("lseg_node", namespace="camera")
    try:
        deadline = time.monotonic() + 10
        while node.check_unique_name() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert node.check_unique_name() == 1
    finally:
        twin.destroy_node()


def test_log_lines_quote_only_a_short_excerpt_of_attacker_controlled_text(ros, capfd):
    node, probe = ros("log_camera", use_compressed=True)
    capfd.readouterr()
    before = node.counters.rejected_frames
    format_string = "%s" * 5000  # 10,000 characters
    deadline = time.monotonic() + 10
    while node.counters.rejected_frames == before and time.monotonic() < deadline:
        probe.compressed_pub.publish(CompressedImage(header=probe.next_header(), format=format_string, data=b"junk"))
        time.sleep(0.1)
    probe.labels_pub.publish(String(data="x" * 10000))
    deadline = time.monotonic() + 10
    while node.counters.rejected_queries == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    lines = [line for line in capfd.readouterr().err.splitlines() if "log_camera" in line]
    assert any("frame rejected" in line for line in lines) and any("label set rejected" in line for line in lines)
    assert max(len(line) for line in lines) < 500, max(lines, key=len)[:300]


def test_profile_parameter_sets_the_defaults_of_the_others_and_explicit_values_win(ros):
    node, probe = ros(namespace="profiled", profile="naclip", short_side=48, max_long_side=64)
    config = node.segmenter.config
    assert (config.profile, config.dense_clip.mode, config.logit_scale) == ("naclip", "naclip", 40.0)
    assert (config.postprocess.pamr_iters, config.postprocess.pamr_on) == (10, "output_logits")
    assert (config.short_side, config.max_long_side, config.model) == (48, 64, NODE_PARAMETERS["model"])
    assert node.get_parameter("logit_scale").value == 40.0
    probe.wait_label_info()
    rgb = scene(21)
    _, mask_msg = probe.send_frame(rgb)
    np.testing.assert_array_equal(image_msg_to_array(mask_msg), node.segmenter.segment(rgb).mask)


def test_label_synonyms_from_the_labels_topic_reach_the_engine_and_label_info(running):
    node, probe = running
    probe.clear()
    probe.labels_pub.publish(String(data="person; man ;woman, door,floor"))
    info = probe.wait_label_info(lambda m: list(m.labels) == ["person; man; woman", "door", "floor"])
    assert node.segmenter.label_set.name_groups.tolist() == [0, 0, 0, 1, 2]
    rgb = scene(22)
    header, mask_msg = probe.send_frame(rgb)
    assert info.generation == node.segmenter.label_set.generation
    np.testing.assert_array_equal(image_msg_to_array(mask_msg), node.segmenter.segment(rgb).mask)
    restore_labels(node, probe)


def test_diagnostics_warn_about_a_silent_input_topic_and_report_rate_and_stamps(ros):
    node, probe = ros(namespace="quiet", input_timeout=1.5)
    array = probe.wait_for("diagnostics", lambda m: diagnosed_node(m) == "/quiet/lseg_node"
                           and m.status[0].level == b"\x01" and "no frame" in m.status[0].message)
    names = [status.name for status in array.status]
    assert names == ["lseg_node: segmentation", "lseg_node: input frequency", "lseg_node: input timestamps"]
    assert "/quiet/image" in array.status[0].message
    assert (array.status[1].level, array.status[1].message) == (b"\x02", "No events recorded.")
    assert (array.status[2].level, array.status[2].message) == (b"\x01", "No data since last update.")
    probe.clear()
    probe.send_frame(scene(30))  # the probe's stamps are synthetic: 1000 s + n
    array = probe.wait_for("diagnostics", lambda m: diagnosed_node(m) == "/quiet/lseg_node"
                           and m.status[2].message == "Timestamps too far in past seen.")
    assert array.status[2].level == b"\x02"

    def now_stamped(header):
        header.stamp = probe.node.get_clock().now().to_msg()
        return rgb_to_image_msg(scene(31), header)

    probe.clear()
    probe.send_frame(scene(31), publish=now_stamped)
    array = probe.wait_for("diagnostics", lambda m: diagnosed_node(m) == "/quiet/lseg_node"
                           and m.status[2].message == "Timestamps are reasonable.")
    assert array.status[1].message == "Desired frequency met" and array.status[1].level == b"\x00"
    assert array.status[0].level == b"\x00"


# ------------------------------------------------------------------ latched labels, ~/set_labels
def test_a_latched_label_publisher_started_before_the_node_is_heard(ros):
    """The latched labels arrive without being published again, and every later message of
    that publisher (which reaches both of the node's label subscriptions) is applied once."""
    publisher_node = rclpy.create_node("mission_planner", namespace="latched_camera")
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    labels_pub = publisher_node.create_publisher(String, "labels", latched)
    try:
        labels_pub.publish(String(data="sky, road"))
        node, probe = ros("latched_camera")  # starts after the message was published
        info = probe.wait_label_info(lambda m: list(m.labels) == ["sky", "road"])
        generation = info.generation
        labels_pub.publish(String(data="tree, car, road"))
        info = probe.wait_label_info(lambda m: list(m.labels) == ["tree", "car", "road"])
        assert info.generation == generation + 1
        time.sleep(1.0)  # the second copy (other subscription) has long arrived: it changed nothing
        assert node.segmenter.label_set.generation == generation + 1
        assert node.counters.superseded_label_sets == 0
        # a plain (volatile) publisher is heard too, also once
        probe.labels_pub.publish(String(data="tree, car"))
        info = probe.wait_label_info(lambda m: list(m.labels) == ["tree", "car"])
        assert info.generation == generation + 2
        time.sleep(0.5)
        assert node.segmenter.label_set.generation == generation + 2
    finally:
        publisher_node.destroy_node()


def test_a_latched_label_query_started_before_the_node_is_heard(ros):
    publisher_node = rclpy.create_node("mission_planner", namespace="latched_query_camera")
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    query_pub = publisher_node.create_publisher(LabelQuery, "/latched_query_camera/lseg_node/label_query", latched)
    try:
        query_pub.publish(LabelQuery(labels=[label_spec("stairs", ["a staircase"]), label_spec("ramp")]))
        node, probe = ros("latched_query_camera")
        probe.wait_label_info(lambda m: list(m.labels) == ["stairs", "ramp"])
        assert node.segmenter.label_set.descriptions[0] == ["a staircase"]
    finally:
        publisher_node.destroy_node()


def test_set_labels_answers_once_the_labels_are_in_use(running):
    node, probe = running
    client, SetLabels = set_labels_client(probe)
    before = node.segmenter.label_set.generation
    response = call(client, SetLabels.Request(labels=[label_spec("sofa", ["a couch"]), label_spec("lamp", (), 0.4),
                                                       label_spec("person; man; woman")]))
    assert response.success, response.message
    assert response.message == ""
    assert list(response.labels) == ["sofa", "lamp", "person; man; woman"]
    assert response.generation == before + 1
    # in use when the reply came: the engine holds exactly that set, prompts and threshold included
    label_set = node.segmenter.label_set
    assert label_set.generation == response.generation and label_set.names == list(response.labels)
    assert label_set.descriptions[0] == ["a couch"]
    assert label_set.thresholds[1].item() == pytest.approx(0.4)
    info = probe.wait_label_info(lambda m: m.generation == response.generation)
    assert list(info.labels) == list(response.labels)
    restore_labels(node, probe)


@pytest.mark.parametrize("specs, expected", [
    ([], "empty label set"),
    ([("door",), ("door",)], "'door'"),
    ([("x" * 300,)], "characters long"),
    ([("door\x1b[2J",)], "control characters"),
])
def test_set_labels_refuses_a_bad_set_with_the_reason_and_keeps_the_labels(running, specs, expected):
    node, probe = running
    client, SetLabels = set_labels_client(probe)
    generation = node.segmenter.label_set.generation
    rejected = node.counters.rejected_queries
    response = call(client, SetLabels.Request(labels=[label_spec(*spec) for spec in specs]))
    assert not response.success
    assert expected in response.message
    assert list(response.labels) == LABELS and response.generation == generation
    assert node.segmenter.label_set.generation == generation
    assert node.counters.rejected_queries == rejected + 1
    probe.send_frame(scene(3))  # and the node keeps segmenting


def test_set_labels_superseded_by_a_newer_request_says_so(running):
    """A call whose set is overtaken (here by a labels message while it encodes) answers
    failure naming the newer source, and reports the labels that are in use."""
    node, probe = running
    client, SetLabels = set_labels_client(probe)
    with slow_label_encoding(node):
        future = client.call_async(SetLabels.Request(labels=[label_spec(f"slow {i}") for i in range(4)]))
        deadline = time.monotonic() + 5
        while node.label_scheduler.encoding is None and time.monotonic() < deadline:
            time.sleep(0.01)
        probe.labels_pub.publish(String(data="newer one, newer two"))
        wait_future(future, 30.0)
        response = future.result()
        assert not response.success
        assert "superseded" in response.message and "labels topic" in response.message
        probe.wait_label_info(lambda m: list(m.labels) == ["newer one", "newer two"], timeout=30)
    restore_labels(node, probe)
