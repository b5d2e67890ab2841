"""NodeStatus without rclpy: one builder gives the single camera's three statuses and, with
several cameras, 'segmentation' plus one 'camera <name>' each, with the same values in the
same order as before the builder was shared. The node is a double; only messages are used."""
from __future__ import annotations

import sys
import time
from types import SimpleNamespace

import pytest

pytest.importorskip("diagnostic_msgs.msg", reason="ROS 2 message packages not installed")

from lseg_ros.ros.cameras import CameraStream, Counters  # noqa: E402
from lseg_ros.ros.diagnostics import FrequencyCheck, StampCheck
from lseg_ros.ros.params import NodeConfig
from lseg_ros.ros.status import NodeStatus
from lseg_ros.stamps import StampBuffer

pytestmark = pytest.mark.ros  # ROS message classes (no rclpy)

INPUT_KEYS = ["input_topic", "seconds_since_last_frame", "frames_in", "processed", "dropped", "rejected_frames"]
LATENCY_KEYS = ["inference_ms_mean", "end_to_end_ms_mean"]
DEPTH_KEYS = ["depth_in", "depth_matched", "depth_unmatched", "rejected_depth"]
LABEL_KEYS = ["labels", "label_generation", "label_encoding", "label_pending", "superseded_label_sets"]


class FakeNode:
    def __init__(self, cameras=()) -> None:
        self.node_config = NodeConfig(cameras=list(cameras))
        self.counters = Counters()
        self.lines = []
        self._streams = []
        for name in cameras or [""]:
            stream = CameraStream(name, Counters() if cameras else self.counters, StampBuffer(4))
            stream.image_sub = SimpleNamespace(topic_name=f"/{name or 'camera'}/image")
            stream.frequency, stream.stamps = FrequencyCheck(now=time.monotonic()), StampCheck()
            stream.last_frame_at = time.monotonic()
            self._streams.append(stream)
        label_set = SimpleNamespace(generation=2, names=["door", "wall"])
        self.segmenter = SimpleNamespace(label_set=label_set, labels=["door", "wall"], device="cpu",
                                         description="tiny model")
        self.label_scheduler = SimpleNamespace(encoding=None, pending=None)
        self._active = True

    def get_fully_qualified_name(self) -> str:
        return "/robot/lseg_node"

    def get_name(self) -> str:
        return "lseg_node"

    def input_topics(self) -> list:
        return [stream.image_sub.topic_name for stream in self._streams]

    def _log(self, level, text, **kwargs) -> None:
        self.lines.append((level, text))


def _values(status) -> dict:
    return {kv.key: kv.value for kv in status.values}


def test_the_single_camera_has_segmentation_frequency_and_timestamps_statuses_in_the_old_layout():
    node = FakeNode()
    node.counters.frames_in, node.counters.processed = 5, 4
    statuses = NodeStatus(node).statuses()
    assert [status.name for status in statuses] == ["lseg_node: segmentation", "lseg_node: input frequency",
                                                    "lseg_node: input timestamps"]
    head = statuses[0]
    assert list(_values(head)) == (["node"] + INPUT_KEYS + ["rejected_queries", "refused_calls", "rejected_camera_info",
                                                           "failed"] + LATENCY_KEYS + LABEL_KEYS + DEPTH_KEYS +
                                   ["device", "model"])
    assert head.message == "running" and _values(head)["labels"] == "door, wall"
    assert _values(statuses[1])["topic"] == "/camera/image" and list(_values(statuses[1]))[:2] == ["node", "topic"]


def test_several_cameras_have_a_shared_status_and_one_per_camera_in_the_old_layout():
    node = FakeNode(["front", "rear"])
    node._streams[0].counters.frames_in = 3
    node._streams[1].counters.frames_in = 4
    statuses = NodeStatus(node).statuses()
    assert [status.name for status in statuses] == ["lseg_node: segmentation", "lseg_node: camera front",
                                                    "lseg_node: camera rear"]
    head = _values(statuses[0])
    assert list(head) == (["node", "cameras", "input_topics", "frames_in", "processed", "dropped", "rejected_queries",
                           "refused_calls", "failed"] + LABEL_KEYS + ["device", "model"])
    assert head["frames_in"] == "7" and head["input_topics"] == "/front/image, /rear/image"
    front = statuses[1]
    keys = list(_values(front))
    assert keys[:2 + len(INPUT_KEYS)] == ["node", "camera"] + INPUT_KEYS
    assert keys[2 + len(INPUT_KEYS):2 + len(INPUT_KEYS) + 8] == (["rejected_camera_info", "failed"] + LATENCY_KEYS +
                                                                DEPTH_KEYS)
    assert "Events in window" in keys and "Earliest acceptable timestamp delay" in keys
    # no frame ticked nor stamp recorded since the last update: both checks' messages are merged in
    assert front.level == b"\x02" and front.message == ("running; input frequency: No events recorded.; "
                                                        "input timestamps: No data since last update.")


def test_labels_missing_outrank_input_health_and_problems_count_once():
    node = FakeNode(["front"])
    node.segmenter.label_set, node.segmenter.labels = None, []
    node.counters.failed = 1
    builder = NodeStatus(node)
    head = builder.statuses()[0]
    assert head.level == b"\x01" and head.message == "waiting for labels"
    node.segmenter.label_set = SimpleNamespace(generation=3, names=["door"])
    node.segmenter.labels = ["door"]
    assert builder.statuses()[0].message == "running"  # the failure was reported by the previous call
    node.counters.failed = 2
    head = builder.statuses()[0]
    assert head.level == b"\x02" and head.message == "label queries rejected or frames failing, nothing processed"


def test_an_inactive_node_reports_every_task_ok_and_inactive():
    node = FakeNode()
    node._active = False
    statuses = NodeStatus(node).statuses()
    assert [(status.level, status.message) for status in statuses] == [(b"\x00", "inactive (lifecycle state)")] * 3
    assert _values(statuses[0]) == {"node": "/robot/lseg_node", "labels": "door, wall", "label_generation": "2",
                                    "model": "tiny model"}


def test_the_status_builder_needs_no_rclpy():
    import subprocess

    code = "import sys, lseg_ros.ros.status; sys.exit('rclpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
