"""lseg_lifecycle_node driven through its lifecycle services, as a lifecycle manager (or
`ros2 lifecycle set`) drives it: configure loads the model, activate segments, deactivate
stops, cleanup releases the model, a failed configure is a failed transition, not a crash."""
import gc
import time
import weakref

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("lseg_ros.msg", reason="ROS interfaces not built (run scripts/setup_env.sh)")

from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from lseg_ros.ros.conversions import image_msg_to_array, rgb_to_image_msg  # noqa: E402
from lseg_ros.ros.lifecycle import LsegLifecycleNode  # noqa: E402
from lseg_ros.ros.params import parameter_overrides  # noqa: E402
from helpers import LABELS, NODE_PARAMETERS, domain_id, scene  # noqa: E402
from ros_helpers import NodeHost, Probe, call  # noqa: E402

pytestmark = pytest.mark.ros


class Manager:
    """change_state / get_state over the node's lifecycle services."""

    def __init__(self, probe, target):
        self.change = probe.node.create_client(ChangeState, f"{target}/change_state")
        self.get = probe.node.create_client(GetState, f"{target}/get_state")
        assert self.change.wait_for_service(10.0) and self.get.wait_for_service(10.0)

    def transition(self, transition_id, timeout=60.0) -> bool:
        return call(self.change, ChangeState.Request(transition=Transition(id=transition_id)), timeout).success

    def state(self) -> int:
        return call(self.get, GetState.Request(), 20.0).current_state.id


@pytest.fixture(scope="module")
def ros():
    host = NodeHost(domain_id())

    def start(namespace, **overrides):
        node = LsegLifecycleNode("lseg_node", namespace=namespace,
                                 parameter_overrides=parameter_overrides(dict(NODE_PARAMETERS, **overrides)))
        probe = Probe(namespace)
        host.add(node, probe.node)
        return node, probe, Manager(probe, f"/{namespace}/lseg_node")

    yield start
    host.close()


def _no_mask_for(probe, rgb, seconds=1.5):
    probe.clear()
    header = probe.next_header()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        probe.image_pub.publish(rgb_to_image_msg(rgb, header))
        time.sleep(0.1)
    return not probe.received["mask"]


def _diagnostics_message(probe, node_name):
    return probe.wait_for("diagnostics", lambda m: any(
        kv.key == "node" and kv.value == node_name for kv in m.status[0].values)).status[0].message


def test_transitions_load_segment_stop_and_release(ros):
    node, probe, manager = ros("lifecycle_camera")
    assert manager.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert node.segmenter is None
    assert probe.node.count_publishers("/lifecycle_camera/lseg_node/mask") == 0

    assert manager.transition(Transition.TRANSITION_CONFIGURE)
    assert manager.state() == State.PRIMARY_STATE_INACTIVE
    assert node.segmenter is not None and node.segmenter.labels == LABELS  # model loaded, labels encoded
    assert _no_mask_for(probe, scene(1))  # inactive: not segmenting
    probe.clear()
    assert _diagnostics_message(probe, "/lifecycle_camera/lseg_node") == "inactive (lifecycle state)"

    assert manager.transition(Transition.TRANSITION_ACTIVATE)
    assert manager.state() == State.PRIMARY_STATE_ACTIVE
    rgb = scene(2)
    _, mask_msg = probe.send_frame(rgb)
    np.testing.assert_array_equal(image_msg_to_array(mask_msg), node.segmenter.segment(rgb).mask)
    probe.wait_label_info(lambda m: list(m.labels) == LABELS)

    assert manager.transition(Transition.TRANSITION_DEACTIVATE)
    assert manager.state() == State.PRIMARY_STATE_INACTIVE
    assert _no_mask_for(probe, scene(3))
    # labels are configuration: they can change while inactive
    probe.labels_pub.publish(String(data="bed, lamp"))
    deadline = time.monotonic() + 20
    while node.segmenter.labels != ["bed", "lamp"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert node.segmenter.labels == ["bed", "lamp"]

    backend = weakref.ref(node.segmenter.backend)
    assert manager.transition(Transition.TRANSITION_CLEANUP)
    assert manager.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert node.segmenter is None
    gc.collect()
    assert backend() is None, "the model is still referenced after cleanup"
    assert probe.node.count_publishers("/lifecycle_camera/lseg_node/mask") == 0

    # configured again from the parameters (labels from the labels parameter again)
    assert manager.transition(Transition.TRANSITION_CONFIGURE)
    assert manager.transition(Transition.TRANSITION_ACTIVATE)
    rgb = scene(4)
    _, mask_msg = probe.send_frame(rgb)
    np.testing.assert_array_equal(image_msg_to_array(mask_msg), node.segmenter.segment(rgb).mask)
    assert node.segmenter.labels == LABELS

    assert manager.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert manager.state() == State.PRIMARY_STATE_FINALIZED
    assert node.segmenter is None and not node.busy_threads()


def test_a_failed_configure_is_a_failed_transition_and_the_node_keeps_answering(ros, tmp_path):
    missing = str(tmp_path / "no_such_weights.safetensors")
    node, probe, manager = ros("broken_camera", pretrained=missing)
    assert not manager.transition(Transition.TRANSITION_CONFIGURE)
    assert manager.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert node.segmenter is None
    assert probe.node.count_publishers("/broken_camera/lseg_node/mask") == 0
    assert manager.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
    assert manager.state() == State.PRIMARY_STATE_FINALIZED
