"""The frame path without rclpy: each camera's one-slot buffer (a newer frame replaces the
waiting one, counted as dropped) and the worker that segments the newest frame of every
camera in one batched forward. Only message classes are used; the node is a double."""
from __future__ import annotations

import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="ROS 2 message packages not installed")

from sensor_msgs.msg import Image  # noqa: E402

from lseg_ros.ros.cameras import CameraStream, Counters, WantedOutputs
from lseg_ros.ros.conversions import rgb_to_image_msg
from lseg_ros.ros.params import NodeConfig
from lseg_ros.ros.worker import FrameWorker
from lseg_ros.stamps import StampBuffer
from std_msgs.msg import Header

pytestmark = pytest.mark.ros  # ROS message classes (no rclpy)


def _frame(value: int, width: int = 4) -> Image:
    header = Header()
    header.stamp.sec = value
    return rgb_to_image_msg(np.full((3, width, 3), value, np.uint8), header)


def _stream(name: str) -> CameraStream:
    stream = CameraStream(name, Counters(), StampBuffer(4))
    stream.outputs = FakeOutputs()
    return stream


class FakeOutputs:
    def __init__(self) -> None:
        self.published = []  # (stamp sec, result)

    def wanted(self) -> WantedOutputs:
        return WantedOutputs()

    def publish(self, frame, wanted, result) -> None:
        self.published.append((frame.header.stamp.sec, result))


class FakeNode:
    """What FrameWorker uses of the node; ``segment`` records each batch and can be held."""

    def __init__(self) -> None:
        self.batches, self.lines, self.label_infos = [], [], []
        self.gate, self.entered = threading.Event(), threading.Event()
        self.gate.set()
        self.segmenter = SimpleNamespace(label_set=object(), segment=self._segment)
        self.counters = Counters()
        self.context = SimpleNamespace(ok=lambda: True)
        self.label_info = SimpleNamespace(generation=0, publish=self._publish_label_info)
        self._active = True

    def _segment(self, images, return_confidences=False, return_embeddings=False):
        self.entered.set()
        assert self.gate.wait(10.0)
        self.batches.append([int(image[0, 0, 0]) for image in images])
        return [SimpleNamespace(generation=3, labels=["door"]) for _ in images]

    def _publish_label_info(self, header, labels, generation) -> None:
        self.label_infos.append((header.stamp.sec, generation))
        self.label_info.generation = generation

    def _stopping(self) -> bool:
        return False

    def _log(self, level, text, **kwargs) -> None:
        self.lines.append((level, text))


def _until(condition, timeout=5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    return condition()


def test_the_one_slot_buffer_keeps_the_newest_frame_and_counts_the_replaced_one_dropped():
    stream = _stream("")
    worker = FrameWorker(FakeNode(), [stream], NodeConfig())
    for value in (1, 2, 3):
        worker.put(stream, _frame(value))
    assert stream.counters.frames_in == 3 and stream.counters.dropped == 2
    msg, _ = stream.take()
    assert msg.header.stamp.sec == 3 and stream.slot is None and stream.take() is None
    worker.put(stream, _frame(4))
    worker.clear(stream)
    assert stream.slot is None and stream.counters.dropped == 2


def test_the_worker_segments_the_newest_frame_of_every_camera_in_one_forward():
    node, streams = FakeNode(), [_stream("left"), _stream("right")]
    worker, stop = FrameWorker(node, streams, NodeConfig()), threading.Event()
    node.gate.clear()
    worker.start(stop)
    try:
        worker.put(streams[0], _frame(1))
        assert node.entered.wait(5.0)  # held in the forward of frame 1
        for value in (2, 3):
            worker.put(streams[0], _frame(value))
        worker.put(streams[1], _frame(9))
        node.gate.set()
        assert _until(lambda: len(node.batches) == 2)
        assert node.batches == [[1], [3, 9]]  # frame 2 was replaced by 3 while the worker was busy
        assert [sec for sec, _ in streams[0].outputs.published] == [1, 3]
        assert [sec for sec, _ in streams[1].outputs.published] == [9]
        assert node.label_infos == [(1, 3)]  # announced once, with the first frame of generation 3
        assert streams[0].counters.dropped == 1 and streams[0].counters.processed == 2
    finally:
        stop.set()
        worker.wake()
        worker.thread.join(5.0)
    assert not worker.thread.is_alive()


def test_a_frame_that_cannot_be_converted_is_rejected_alone():
    node, streams = FakeNode(), [_stream("left"), _stream("right")]
    worker = FrameWorker(node, streams, NodeConfig())
    bad = _frame(5)
    bad.encoding = "yuv422_nonsense"
    worker._process([(streams[0], bad, time.perf_counter()), (streams[1], _frame(6), time.perf_counter())])
    assert streams[0].counters.rejected_frames == 1 and streams[0].outputs.published == []
    assert node.batches == [[6]] and streams[1].counters.processed == 1
    assert node.lines[0][0] == "error" and node.lines[0][1].startswith("camera left: frame rejected: ")


def test_the_frame_path_needs_no_rclpy():
    import subprocess

    code = "import sys, lseg_ros.ros.worker, lseg_ros.ros.cameras; sys.exit('rclpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
