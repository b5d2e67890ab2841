"""lseg_node's services under load and what diagnostics say about refused requests (in process,
over real rclpy/DDS; the ros/running fixtures of conftest)."""
import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("lseg_ros.msg", reason="ROS interfaces not built (run scripts/setup_env.sh)")

from std_msgs.msg import String  # noqa: E402

import lseg_ros.ros.label_inputs as label_inputs_module  # noqa: E402
from lseg_ros.ros.node import LabelRequest  # noqa: E402
from helpers import LABELS, scene  # noqa: E402
from ros_helpers import (diagnosed_node, label_spec, restore_labels, set_labels_client, slow_label_encoding,  # noqa: E402
                         wait_future)

pytestmark = pytest.mark.ros


def _values(status) -> dict:
    return {kv.key: kv.value for kv in status.values}


def _segmentation_statuses(probe, namespace="/camera/lseg_node"):
    with probe.lock:
        return [m.status[0] for m in probe.received["diagnostics"] if diagnosed_node(m) == namespace]


def _diagnostics_over(probe, node, seconds):
    """The node's 'segmentation' statuses published during ``seconds`` from now, frames flowing."""
    probe.clear()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        probe.send_frame(scene(5))
        time.sleep(0.1)
    return _segmentation_statuses(probe)


def test_a_refused_set_labels_call_keeps_diagnostics_ok_and_is_counted(running):
    """The caller was told (success=false): no node health problem. A label message refused
    on a topic, with nobody to tell, still turns diagnostics WARN."""
    node, probe = running
    client, SetLabels = set_labels_client(probe)
    assert all(s.level == b"\x00" for s in _diagnostics_over(probe, node, 0.6)), "not OK before the test"
    refused = node.counters.refused_calls
    probe.clear()
    future = client.call_async(SetLabels.Request(labels=[label_spec("door"), label_spec("door")]))
    wait_future(future, 30.0)
    assert not future.result().success
    statuses = _diagnostics_over(probe, node, 1.0)  # 5 diagnostics periods
    assert statuses and all(s.level == b"\x00" for s in statuses), [(s.level, s.message) for s in statuses]
    assert int(_values(statuses[-1])["refused_calls"]) == refused + 1
    assert node.counters.refused_calls == refused + 1
    # the same set on the labels topic: refused with nobody to tell, so diagnostics say so
    probe.clear()
    probe.labels_pub.publish(String(data="door, door"))
    deadline = time.monotonic() + 10
    while not any(s.level != b"\x00" for s in _segmentation_statuses(probe)) and time.monotonic() < deadline:
        probe.send_frame(scene(6))
    assert any(s.level in (b"\x01", b"\x02") and "rejected" in s.message for s in _segmentation_statuses(probe))
    assert node.counters.refused_calls == refused + 1


def test_set_labels_calls_beyond_the_waiting_bound_are_refused_at_once(running, monkeypatch):
    """While SET_LABELS_MAX_WAITING calls wait for their label sets, another call is answered
    at once ("too many calls waiting") instead of holding an executor thread; the waiting
    call still gets its set."""
    node, probe = running
    client, SetLabels = set_labels_client(probe)
    monkeypatch.setattr(label_inputs_module, "SET_LABELS_MAX_WAITING", 1)
    with slow_label_encoding(node):
        waiting = client.call_async(SetLabels.Request(labels=[label_spec(f"waiting {i}") for i in range(4)]))
        deadline = time.monotonic() + 10
        while node.label_scheduler.waiting_calls == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert node.label_scheduler.waiting_calls == 1
        extra = client.call_async(SetLabels.Request(labels=[label_spec("extra")]))
        wait_future(extra, 10.0)
        assert not waiting.done(), "the first call's set encoded too fast to show anything"
        assert not extra.result().success and "too many calls waiting" in extra.result().message
        wait_future(waiting, 60.0)
        assert waiting.result().success, waiting.result().message
        assert list(waiting.result().labels) == [f"waiting {i}" for i in range(4)]
    assert node.label_scheduler.waiting_calls == 0
    restore_labels(node, probe)


def test_of_two_concurrent_label_requests_the_later_one_wins_whichever_is_enqueued_first(running):
    """Concurrent ~/set_labels calls are ordered by arrival: an earlier call that reaches the
    queue after a later one is answered superseded at once and the later set is applied."""
    node, probe = running
    later = LabelRequest(["later one", "later two"], [[], []], [None, None], "set_labels service",
                         done=threading.Event(), order=10 ** 9 + 1)
    earlier = LabelRequest(["earlier"], [[]], [None], "set_labels service", done=threading.Event(), order=10 ** 9)
    node.label_scheduler.enqueue(later)
    node.label_scheduler.enqueue(earlier)
    assert earlier.done.is_set() and not earlier.outcome[0] and "superseded" in earlier.outcome[1]
    assert later.done.wait(30.0) and later.outcome == (True, "")
    assert node.segmenter.labels == ["later one", "later two"]
    restore_labels(node, probe)


def test_an_obstacle_label_that_names_no_label_is_warned_about_at_start_and_on_change(ros, capfd):
    capfd.readouterr()
    node, probe = ros("obstacle_camera", obstacle_labels=["door", "stairz"])
    err = capfd.readouterr().err
    assert any("obstacle_labels ['stairz'] name no label" in line and "WARN" in line for line in err.splitlines()), err
    node.set_parameters([rclpy.parameter.Parameter("obstacle_labels", value=["wall", "ramp"])])
    time.sleep(0.2)
    err = capfd.readouterr().err
    assert "obstacle_labels ['ramp'] name no label" in err, err
    assert LABELS == node.segmenter.labels


def test_concurrent_encode_text_calls_are_all_answered(running):
    """16 ~/encode_text calls at once (each a text forward, answered one by one): none is
    dropped from the request queue while the others are computed."""
    from rclpy.qos import QoSProfile

    from lseg_ros.srv import EncodeText

    node, probe = running
    client = probe.node.create_client(EncodeText, "/camera/lseg_node/encode_text", qos_profile=QoSProfile(depth=100))
    assert client.wait_for_service(timeout_sec=10.0)
    with slow_label_encoding(node):  # each call's text forward takes 50 ms longer: the calls pile up
        futures = [client.call_async(EncodeText.Request(texts=[f"query {i}"])) for i in range(16)]
        deadline = time.monotonic() + 60
        while not all(future.done() for future in futures) and time.monotonic() < deadline:
            time.sleep(0.05)
    answered = [future.result() for future in futures if future.done()]
    assert len(answered) == 16, f"{len(answered)} of 16 calls answered"
    assert all(response.success and response.dim > 0 for response in answered)
    probe.node.destroy_client(client)
