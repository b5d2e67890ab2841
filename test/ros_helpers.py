"""The rclpy side of the tests' shared helpers: a probe node that publishes to lseg_node and
collects what it sends (topics chosen per test), service calls and waits, a parameter
client, and a host that spins the nodes under test. Modules import it after
``pytest.importorskip("rclpy")``; the no-ROS helpers are in ``helpers``."""
from __future__ import annotations

import contextlib
import os
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String

from lseg_ros.msg import ConfidenceMaps, LabelQuery, LabelSpec, SegmentationInfo
from lseg_ros.ros.conversions import rgb_to_image_msg

from helpers import LABELS, scene

#: every node of a test module publishes /diagnostics at 5 Hz: a deep queue keeps the others
#: from pushing out the one message a test waits for while the executor is busy
DIAGNOSTICS_DEPTH = 200


def header_stamp(header) -> tuple:
    """(sec, nanosec) of a header, comparable as a tuple."""
    return header.stamp.sec, header.stamp.nanosec


def node_outputs(node_path: str) -> dict:
    """The outputs of lseg_node at ``node_path`` a probe collects by default:
    key -> (message type, topic, QoS)."""
    latched = QoSProfile(depth=50, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    return {"mask": (Image, f"{node_path}/mask", 10), "overlay": (Image, f"{node_path}/overlay", 10),
            "confidence": (ConfidenceMaps, f"{node_path}/confidence", 10),
            "confidence_image": (Image, f"{node_path}/confidence_image", 10),
            "info": (SegmentationInfo, f"{node_path}/label_info", latched),
            "camera_info": (CameraInfo, f"{node_path}/camera_info", 10),
            "diagnostics": (DiagnosticArray, "/diagnostics", DIAGNOSTICS_DEPTH)}


class Probe:
    """A test-side node in ``namespace``: publishes frames, camera_info and label queries on
    lseg_node's input topics, and collects the messages of ``outputs`` (key -> (type, topic,
    QoS); lseg_node's outputs by default) under their keys, in arrival order. ``subscribe``
    names the keys subscribed at once (all by default); ``subscribe()``/``unsubscribe()``
    change them later."""

    def __init__(self, namespace, name="probe", outputs=None, subscribe=None, stamp_base=1000):
        self.node = rclpy.create_node(name, namespace=namespace)
        self.ns = f"/{namespace}/lseg_node"
        self.outputs = node_outputs(self.ns) if outputs is None else dict(outputs)
        self.received = {key: [] for key in self.outputs}
        self.arrivals = []  # (key, stamp) of every message, in arrival order
        self.lock = threading.Lock()
        self.subscriptions = {}
        self.subscribe(*(self.outputs if subscribe is None else subscribe))
        self.image_pub = self.node.create_publisher(Image, "image", qos_profile_sensor_data)
        self.compressed_pub = self.node.create_publisher(CompressedImage, "image/compressed", qos_profile_sensor_data)
        self.info_pub = self.node.create_publisher(CameraInfo, "camera_info", QoSProfile(depth=5))  # reliable: depth_qos
        self.labels_pub = self.node.create_publisher(String, "labels", 10)
        self.query_pub = self.node.create_publisher(LabelQuery, f"{self.ns}/label_query", 10)
        self.stamp_base = stamp_base
        self.stamp_counter = 0

    def subscribe(self, *keys):
        for key in keys:
            if key not in self.subscriptions:
                msg_type, topic, qos = self.outputs[key]
                self.subscriptions[key] = self.node.create_subscription(msg_type, topic, self._collector(key), qos)

    def unsubscribe(self, *keys):
        for key in keys:
            self.node.destroy_subscription(self.subscriptions.pop(key))

    def _collector(self, key):
        def collect(msg):
            with self.lock:
                self.received[key].append(msg)
                header = getattr(msg, "header", None)  # MarkerArray has none
                self.arrivals.append((key, header_stamp(header) if header is not None else None))
        return collect

    def clear(self):
        with self.lock:
            for messages in self.received.values():
                messages.clear()
            self.arrivals.clear()

    def next_header(self, frame_id="camera"):
        """A header with a stamp no earlier message of this probe had."""
        self.stamp_counter += 1
        header = Header(frame_id=frame_id)
        header.stamp.sec, header.stamp.nanosec = self.stamp_base + self.stamp_counter, 123
        return header

    def wait_for(self, key, predicate=lambda msg: True, timeout=20.0, what=None):
        """The first collected ``key`` message matching ``predicate``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for msg in self.received[key]:
                    if predicate(msg):
                        return msg
            time.sleep(0.02)
        raise AssertionError(f"no matching {what or key + ' message'} within {timeout} s")

    def wait_for_stamp(self, key, header, timeout=20.0):
        """The ``key`` message stamped as ``header``."""
        return self.wait_for(key, lambda msg: msg.header.stamp == header.stamp, timeout,
                             f"{key} message for stamp {header.stamp.sec}")

    def wait_label_info(self, predicate=lambda msg: True, timeout=20.0):
        """The first label_info matching ``predicate``. label_info comes with the first frame
        segmented with a new label set, so frames are sent until it arrives."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.image_pub.publish(rgb_to_image_msg(scene(0), self.next_header()))
            try:
                return self.wait_for("info", predicate, timeout=0.3)
            except AssertionError:
                continue
        raise AssertionError(f"no matching label_info within {timeout} s")

    def send_frame(self, rgb, frame_id="camera", publish=None, timeout=20.0):
        """Publish a frame (again if lost: sensor-data QoS is best effort) and return its mask."""
        header = self.next_header(frame_id)
        msg = rgb_to_image_msg(rgb, header) if publish is None else publish(header)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            (self.compressed_pub if isinstance(msg, CompressedImage) else self.image_pub).publish(msg)
            try:
                return header, self.wait_for_stamp("mask", header, timeout=1.5)
            except AssertionError:
                continue
        raise AssertionError(f"no mask for frame {header.stamp.sec}")


def wait_future(future, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert future.done(), "service did not answer"


def call(client, request, timeout=30.0):
    """A service call answered within ``timeout``: its response."""
    future = client.call_async(request)
    wait_future(future, timeout)
    return future.result()


def label_spec(name, prompts=(), threshold=float("nan")):
    return LabelSpec(name=name, prompts=list(prompts), threshold=threshold)


def set_labels_client(probe, target="/camera/lseg_node"):
    """A ready ~/set_labels client of ``target`` on the probe's node, and the service type."""
    from lseg_ros.srv import SetLabels

    client = probe.node.create_client(SetLabels, f"{target}/set_labels")
    assert client.wait_for_service(timeout_sec=10.0)
    return client, SetLabels


class ParameterClient:
    """set_parameters / set_parameters_atomically over plain service clients: rclpy's
    AsyncParameterClient does not exist on Humble, these services do (same futures)."""

    def __init__(self, node, target):
        from rcl_interfaces.srv import SetParameters, SetParametersAtomically

        self._set = node.create_client(SetParameters, f"{target}/set_parameters")
        self._atomic = node.create_client(SetParametersAtomically, f"{target}/set_parameters_atomically")

    def wait_for_services(self, timeout_sec):
        return self._set.wait_for_service(timeout_sec) and self._atomic.wait_for_service(timeout_sec)

    def set_parameters(self, parameters):
        return self._set.call_async(self._set.srv_type.Request(parameters=[p.to_parameter_msg() for p in parameters]))

    def set_parameters_atomically(self, parameters):
        return self._atomic.call_async(self._atomic.srv_type.Request(
            parameters=[p.to_parameter_msg() for p in parameters]))


def diagnosed_node(array):
    """The fully qualified node name a DiagnosticArray's first status reports on."""
    return next((kv.value for kv in array.status[0].values if kv.key == "node"), None) if array.status else None


def restore_labels(node, probe):
    """Back to LABELS without descriptions, waiting for the new label_info (not an old one)."""
    before = node.segmenter.label_set.generation
    probe.clear()
    probe.labels_pub.publish(String(data=", ".join(LABELS)))
    probe.wait_label_info(lambda m: list(m.labels) == LABELS and m.generation > before)
    deadline = time.monotonic() + 10
    while any(node.segmenter.label_set.descriptions) and time.monotonic() < deadline:
        time.sleep(0.02)


@contextlib.contextmanager
def slow_label_encoding(node):
    """Text forwards of 8 prompts taking 50 ms more: 80 prompts per label, 10 forwards each, so
    a set of 4 labels takes about 2 s to encode."""
    backend, encoder = node.segmenter.backend, node.segmenter.label_encoder
    real_encode_text = backend.encode_text

    def slow_encode_text(token_ids):
        time.sleep(0.05)
        return real_encode_text(token_ids)

    backend.encode_text, encoder.batch_size = slow_encode_text, 8
    try:
        yield
    finally:
        del backend.encode_text
        encoder.batch_size = 256


class NodeHost:
    """rclpy on ``domain_id`` (this host only) and a multi-threaded executor spinning every
    node added, from the first ``add``; ``close`` tears it all down."""

    def __init__(self, domain_id: int, threads: int = 4) -> None:
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        rclpy.init(domain_id=domain_id)
        self.executor = MultiThreadedExecutor(num_threads=threads)
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self.nodes = []

    def _spin(self) -> None:
        """Spin until ``close``. rclpy raises InvalidHandle out of spin when a subscription with
        event callbacks is destroyed (a lifecycle cleanup) while the executor builds its wait
        set; spinning goes on, so one such race does not leave every later test unanswered."""
        while True:
            try:
                self.executor.spin()
                return
            except Exception as error:  # rclpy._rclpy_pybind11.InvalidHandle
                if type(error).__name__ != "InvalidHandle":
                    raise
                time.sleep(0.01)

    def add(self, *nodes) -> None:
        for node in nodes:
            self.executor.add_node(node)
            self.nodes.append(node)
        if not self._spinner.is_alive():
            self._spinner.start()

    def close(self) -> None:
        self.executor.shutdown()
        for node in self.nodes:
            node.destroy_node()
        rclpy.try_shutdown()


@contextlib.contextmanager
def spinning(domain_id: int, make_nodes, threads: int = 3):
    """The (node, probe) that ``make_nodes()`` builds, spun on ``domain_id`` with half a second
    to discover each other; yields (node, probe) and tears everything down after."""
    host = NodeHost(domain_id, threads)
    try:
        node, probe = make_nodes()
        host.add(node, probe.node)
        time.sleep(0.5)
        yield node, probe
    finally:
        host.close()
