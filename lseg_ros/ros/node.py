"""``lseg_node``: camera images and label queries in; mask, confidences, overlay, label info out.

Subscribes (relative names, remap with ``-r image:=/camera/color/image_raw``):
  image (sensor_msgs/Image) or <image>/compressed (image_transport:=compressed),
  camera_info (optional), labels (std_msgs/String "door, chair"), ~/label_query (LabelQuery).
  The label topics are heard from plain and latched (transient local) publishers alike,
  including a latched one that published before the node started.
  depth (optional; 16UC1 mm / 32FC1 m, registered to the color image), paired with each
  frame by stamp (nearest within depth_slop; the image path never waits for it).
Serves ~/set_labels (SetLabels): applies a label set and answers once it is in use;
~/encode_text (EncodeText): text embeddings in the space of ~/embeddings.
Publishes, every message stamped with the source image's header:
  ~/mask (mono8 / mono16), ~/overlay (rgb8), ~/confidence (ConfidenceMaps),
  ~/confidence_image (32FC1, best label's probability), ~/camera_info (scaled to the mask
  size), ~/label_info (SegmentationInfo, transient local), /diagnostics;
  with depth and camera_info: ~/points (PointCloud2 x y z rgb label confidence),
  ~/obstacle_points (PointCloud2 x y z of the obstacle_labels); ~/objects (ObjectArray:
  connected label regions, 3D with depth), ~/markers (MarkerArray of them);
  ~/embeddings (FeatureMap, every embeddings_every_n-th frame).
  Each of the mapping outputs is computed only while it has a subscriber.

Several cameras (parameter ``cameras: [front, rear]``): each camera ``<name>`` has the
inputs ``<name>/image`` (or ``<name>/image/compressed``), ``<name>/camera_info`` and
``<name>/depth`` and the outputs above under ``~/<name>/`` (``~/front/mask``, ...); the
label inputs, ``~/label_info``, the services, /diagnostics (one status per camera) and the
model are shared. The newest frames of all cameras are segmented in one batched forward.

The executor never waits for the model: each camera's newest frame waits in a one-slot
buffer (a newer frame replaces it and counts as dropped) and a worker thread runs the model
on the frames of every camera that has one (worker.py; cameras.py holds a camera's state).
New label sets are encoded by a second thread, off the frame path: frames keep being
segmented with the current set until the new one is ready, then it is swapped in whole
under a new generation number. A newer request supersedes one still waiting; one being
encoded finishes (its labels are cached) but is not put in use if a newer one is waiting.
~/label_info is published with the first frame segmented with a new set, before that
frame's outputs, and carries the set's generation, as ~/confidence does (labels.py; the
label topics and services: label_inputs.py).

Each part is its own module: worker.py (frames), outputs.py (each camera's outputs,
~/label_info), labels.py and label_inputs.py (label sets), status.py (/diagnostics),
runtime_params.py (parameters changed while running). :class:`LsegCore` wires them in the
steps of a managed node; :class:`LsegNode` (this program) runs the steps at construction,
:mod:`lseg_ros.ros.lifecycle` as managed-node transitions.
"""
from __future__ import annotations

import functools
import math
import sys
import threading
import time
from typing import List, Optional

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ..deps import require_engine_packages, torch_build_summary
from ..stamps import StampBuffer, stamp_ns

require_engine_packages("lseg_node")  # one line instead of a ModuleNotFoundError traceback
from ..segmenter import Segmenter  # noqa: E402
from ..geometry import check_intrinsics  # noqa: E402
from ..validation import LabelLimits, shorten
from ..weights import WeightsError
from .runner import run_node
from .labels import LabelRequest, LabelScheduler  # noqa: F401  (LabelRequest: re-exported)
from .label_inputs import LabelInputs
from .cameras import CameraStream, Counters
from .diagnostics import FrequencyCheck, StampCheck
from .params import declare_parameters, read_configs
from .outputs import CameraOutputs, LabelInfoOutput, obstacle_indices
from .runtime_params import RUNTIME_PARAMETERS, checked_changes
from .status import NodeStatus
from .worker import FrameWorker


#: seconds after start-up after which the graph is checked (once, at the next diagnostics
#: message) for another node of the same name
NAME_CHECK_DELAY_S = 2.0
#: longest log line the node writes (values from topics are also shortened where quoted)
LOG_LIMIT = 1000


class LsegCore:
    """Everything lseg_node does, in the steps of a managed node: ``_configure`` (read the
    parameters, load the model, encode the labels, create the outputs and the label inputs),
    ``_activate`` (subscribe to images), ``_deactivate``, ``_cleanup`` (drop the model, free
    GPU memory). :class:`LsegNode` runs configure and activate in its constructor;
    :class:`~lseg_ros.ros.lifecycle.LsegLifecycleNode` runs them as lifecycle transitions.
    Mixed into an rclpy ``Node`` (or ``LifecycleNode``)."""

    def _init_core(self) -> None:
        # the state _cleanup needs comes first: a parameter refused by declare_parameters leaves a
        # half-built node that rclpy (Kilted: at shutdown) still destroys
        self.segmenter: Optional[Segmenter] = None
        self.counters = Counters()
        self._stop = threading.Event()  # the worker and label threads' (a new one per configure)
        self.frame_worker: Optional[FrameWorker] = None  # the frame path (made by _configure)
        self._streams: List[CameraStream] = []  # one per camera (made by _configure)
        self.label_scheduler: Optional[LabelScheduler] = None  # label requests (made by _configure)
        self._destroyed = False
        self._last_logged = {}  # call site -> time of its last throttled log line
        self._active = False
        self._image_sub = None  # the first camera's image subscription
        self._configured_entities = []  # (destroy function, entity) made by _configure
        declare_parameters(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # ------------------------------------------------------------- lifecycle steps
    def _configure(self, segmenter: Optional[Segmenter] = None) -> None:
        """Read the parameters, load the model, encode the initial labels, create publishers,
        label inputs, ~/set_labels and the diagnostics timer, start the worker threads.
        Raises (WeightsError, ValueError, ...) with nothing left half-made on failure."""
        self.config, self.node_config = read_configs(self)
        initial_labels = list(self.config.labels)  # coerced: "door, chair" -> ["door", "chair"]
        # which torch build, and whether CUDA is usable: logged before the model is built
        self.get_logger().info(torch_build_summary())
        if segmenter is None:
            segmenter_config = self.config
            segmenter_config.labels = []  # applied below through the same path as run-time changes
            segmenter = Segmenter(segmenter_config)
        self.segmenter = segmenter
        settings = getattr(segmenter, "settings", {})  # what the speed settings' "auto" became here
        self.get_logger().info(f"engine: {segmenter.description}; " +
                               ", ".join(f"{key} {value}" for key, value in settings.items()))
        for warning in getattr(segmenter, "warnings", []):
            self.get_logger().warning(warning)
        self.segmenter.limits = LabelLimits(max_labels=self.node_config.max_labels,
                                            max_label_chars=self.node_config.max_label_chars,
                                            max_descriptions=self.node_config.max_prompts_per_label)
        if self.node_config.obstacle_labels:  # same text rules as labels
            try:
                self.node_config.obstacle_labels = self.segmenter.validate_texts(self.node_config.obstacle_labels)
            except ValueError as error:
                self.segmenter = None
                raise ValueError(f"obstacle_labels: {error}") from None
        self.counters = Counters()
        self.node_status = NodeStatus(self)  # /diagnostics
        self._stop = threading.Event()  # this configure's threads' (see _init_core)
        self.label_scheduler = LabelScheduler(self.segmenter, self.counters, self._log,
                                              lambda generation: self.label_info.publish_cleared(generation))
        # the single camera shares the node's counters (its diagnostics are the node's)
        cameras = self.node_config.cameras
        self._streams = [CameraStream(name, Counters() if cameras else self.counters, StampBuffer(DEPTH_BUFFER))
                         for name in cameras or [""]]
        self.frame_worker = FrameWorker(self, self._streams, self.node_config)
        made = self._configured_entities

        def publisher(msg_type, topic, qos):
            made.append((self.destroy_publisher, self.create_publisher(msg_type, topic, qos)))
            return made[-1][1]

        def subscription(msg_type, topic, callback, qos, **kwargs):
            made.append((self.destroy_subscription, self.create_subscription(msg_type, topic, callback, qos,
                                                                             **kwargs)))

        def service(srv_type, name, callback, **kwargs):
            made.append((self.destroy_service, self.create_service(srv_type, name, callback, **kwargs)))

        try:
            for stream in self._streams:  # ~/mask for the single camera, ~/<name>/mask for several
                stream.outputs = CameraOutputs(self, stream, self.node_config, publisher)
            self.label_info = LabelInfoOutput(self, publisher)
            self.diagnostics_pub = publisher(DiagnosticArray, "/diagnostics", 10)
            self.label_inputs = LabelInputs(self, self.label_scheduler, self.node_config, subscription, service)
            made.append((self.destroy_timer, self.create_timer(self.node_config.diagnostics_period,
                                                               self._publish_diagnostics)))
            self._name_check_at = time.monotonic() + NAME_CHECK_DELAY_S  # done by the diagnostics timer
            # Ctrl-C or shutdown stop a long text forward between batches
            stop = self._stop
            self.segmenter.stop_encoding_when(lambda: stop.is_set() or not self.context.ok())
            if initial_labels:  # encoded before the node reports ready, so the first frame is segmented
                self._apply_initial_labels(initial_labels)
        except BaseException:
            self._cleanup()
            raise
        # Each thread watches the stop event of its own configure: one that outlives a cleanup
        # (mid-forward) ends when it finishes, even if the node is configured again meanwhile.
        self.label_scheduler.start(self._stop)
        self.frame_worker.start(self._stop)

    def _apply_initial_labels(self, names: List[str]) -> None:
        """Encode and use the labels parameter's set. A refused set is a start-up error
        (ValueError naming it): a node that said "ready" with no labels would segment nothing.
        An obstacle_labels entry that no label names is only warned about (labels change at run time)."""
        try:
            request = self.label_scheduler.validated(names, None, None, "labels parameter")
            self.label_scheduler.apply_now(request)
        except ValueError as error:
            raise ValueError(f"labels parameter {shorten(names, 200)} refused: {error}") from None
        self.warn_missing_obstacles(request.names)

    def warn_missing_obstacles(self, labels: List[str]) -> None:
        """Warn (naming them) about obstacle_labels entries that no label of ``labels`` names."""
        missing = obstacle_indices(labels, self.node_config.obstacle_labels)[1]
        if missing and labels:
            self._log("warning", f"obstacle_labels {shorten(missing, 200)} name no label of {shorten(labels, 200)}: "
                      "nothing is published on ~/obstacle_points for them until a label set includes them")

    def _activate(self) -> None:
        """Subscribe to every camera's images, camera_info and depth: frames are segmented from now on."""
        nc = self.node_config
        image_qos = input_qos("image_qos", nc.image_qos, history=1)
        depth_qos = input_qos("depth_qos", nc.depth_qos, history=DEPTH_QOS_HISTORY)  # camera_info's too
        transport = nc.image_transport
        if nc.use_compressed:
            self.get_logger().warning("use_compressed is deprecated and goes away in the next release: use "
                                      "image_transport:=compressed (with the base topic remapped: -r image:=/cam/image)")
            transport = "compressed"

        def subscription(msg_type, topic, callback, qos, stream: CameraStream, events=None):
            """``stream``'s input ``topic`` (<name>/image with several cameras), calling back
            ``callback(stream, msg)``."""
            topic = stream.input_topic(topic)
            return self.create_subscription(msg_type, topic, functools.partial(callback, stream), qos,
                                            event_callbacks=events)

        def mismatch(parameter: str, value: str, topic: str):
            """Event callbacks that log, once a minute, a publisher this subscription cannot match."""
            def on_incompatible(event) -> None:
                self._log("warning", f"a publisher on {self.resolve_topic_name(topic)} offers QoS this node's "
                          f"{parameter}:={value} subscription cannot match (policy {event.last_policy_kind}): "
                          f"nothing arrives from it; set {parameter}:=" +
                          ("sensor_data for a best-effort publisher" if value == "reliable" else "reliable"),
                          throttle=60.0, key=topic)
            return SubscriptionEventCallbacks(incompatible_qos=on_incompatible)

        for stream in self._streams:
            if transport == "compressed":
                # image_transport's convention: the transport's topic hangs off the resolved (remapped) base topic
                compressed_topic = self.resolve_topic_name(stream.input_topic("image")).rstrip("/") + "/compressed"
                stream.image_sub = self.create_subscription(CompressedImage, compressed_topic,
                                                            functools.partial(self._on_image, stream), image_qos)
            else:
                stream.image_sub = subscription(Image, "image", self._on_image, image_qos, stream)
            stream.subscriptions = [
                stream.image_sub,
                subscription(CameraInfo, "camera_info", self._on_camera_info, depth_qos, stream,
                             mismatch("depth_qos", nc.depth_qos, stream.input_topic("camera_info"))),
                subscription(Image, "depth", self._on_depth, depth_qos, stream,
                             mismatch("depth_qos", nc.depth_qos, stream.input_topic("depth")))]
            stream.frequency = FrequencyCheck(nc.min_rate, nc.max_rate or math.inf, nc.rate_tolerance,
                                              nc.rate_window, now=time.monotonic())
            stream.stamps = StampCheck(nc.min_stamp_delay, nc.max_stamp_delay)
            stream.last_frame_at = time.monotonic()  # activation counts as the last frame for the timeout
        self._image_sub = self._streams[0].image_sub
        self._active = True

    def input_topics(self) -> List[str]:
        """The image topics subscribed to (one per camera), while active."""
        return [stream.image_sub.topic_name for stream in self._streams if stream.image_sub is not None]

    def _deactivate(self) -> None:
        """Unsubscribe from images; a frame waiting in the slot is dropped, one being
        segmented is not published. Labels can still be changed (they are configuration)."""
        self._active = False
        for stream in self._streams:
            for sub in stream.subscriptions:
                self.destroy_subscription(sub)
            stream.subscriptions, stream.image_sub = [], None
            self.frame_worker.clear(stream)
            stream.depth.clear()

    def _cleanup(self) -> None:
        """Stop the threads, unsubscribe (_deactivate), destroy what _configure made and drop the
        model (GPU memory freed)."""
        self._active = False
        self._stop.set()
        if self.frame_worker is not None:
            self.frame_worker.wake()
        if self.label_scheduler is not None:
            self.label_scheduler.stop()
        deadline = time.monotonic() + SHUTDOWN_WAIT_S
        for thread in self._threads():
            if thread is not None:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._deactivate()
        for destroy, entity in reversed(self._configured_entities):
            destroy(entity)
        self._configured_entities = []
        if self.segmenter is not None:  # a thread still computing with it frees it when it ends
            self.segmenter.stop_encoding_when(lambda: True)  # a batch still running stops
            self.segmenter = None
            free_memory()

    # ------------------------------------------------------------- callbacks
    def _on_image(self, stream: CameraStream, msg) -> None:
        """A camera's frame: into its one-slot buffer (a frame still waiting there is dropped)."""
        stream.last_frame_at = time.monotonic()
        stream.frequency.tick()
        stamp = msg.header.stamp
        stream.stamps.record(stamp.sec + stamp.nanosec * 1e-9, self.get_clock().now().nanoseconds * 1e-9)
        self.frame_worker.put(stream, msg)

    def _on_depth(self, stream: CameraStream, msg: Image) -> None:
        """Keep a camera's newest depth images (converted only when a frame is paired with one)."""
        stream.counters.depth_in += 1
        stream.depth.push(stamp_ns(msg.header.stamp), msg)

    def _on_camera_info(self, stream: CameraStream, msg: CameraInfo) -> None:
        """Keep the newest camera_info whose intrinsics can be a camera's (geometry.check_intrinsics);
        a bad one is counted and logged, and the last good one stays in use."""
        try:
            check_intrinsics(msg.k, msg.width, msg.height)
        except ValueError as error:
            stream.counters.rejected_camera_info += 1
            self._log("error", f"{stream.log_prefix}camera_info rejected: {error}", throttle=5.0, key=stream.name)
            return
        stream.camera_info = msg

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        """Check every parameter of the request first; apply only if all pass (atomic; runtime_params.py)."""
        try:
            changes = checked_changes(self, parameters)
        except ValueError as error:
            self.counters.rejected_queries += 1
            self.counters.refused_calls += 1  # answered to the caller
            self._log("error", f"parameter change rejected: {error}")
            return SetParametersResult(successful=False, reason=str(error))
        if self.segmenter is None:  # not configured (managed node): the values are read at configure
            return SetParametersResult(successful=True)
        for name, value in changes:
            RUNTIME_PARAMETERS[name].apply(self, value)
        return SetParametersResult(successful=True)

    def _stopping(self) -> bool:
        """True once the node is being destroyed or rclpy shuts down (nothing may be published
        or logged then: the rosout publisher is gone)."""
        return self._destroyed or not self.context.ok()

    def _log(self, level: str, text: str, throttle: float = 0.0, key: str = "") -> None:
        """Log from any thread: at most LOG_LIMIT characters, at most once per ``throttle``
        seconds from the same calling line (and ``key``: a camera's name, so that one camera's
        errors do not hide another's), and not once shutting down (the rosout publisher is
        gone then). rclpy ties a call site to one severity, so each level has its own call below."""
        if self._stopping():
            return
        if throttle:
            caller = sys._getframe(1)
            site, now = (caller.f_code, caller.f_lineno, key), time.monotonic()
            if now - self._last_logged.get(site, -math.inf) < throttle:
                return
            self._last_logged[site] = now
        if len(text) > LOG_LIMIT:
            text = f"{text[:LOG_LIMIT]}... ({len(text)} characters)"
        logger = self.get_logger()
        if level == "error":
            logger.error(text)
        elif level == "warning":
            logger.warning(text)
        else:
            logger.info(text)

    # ----------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        if self._name_check_at is not None and time.monotonic() >= self._name_check_at:
            self._name_check_at = None
            self.check_unique_name()
        array = DiagnosticArray(status=self.node_status.statuses())
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

    def check_unique_name(self) -> int:
        """Warn when other nodes on the graph have this node's fully qualified name (both would
        answer every frame and parameter request); returns how many others there are."""
        name = self.get_fully_qualified_name()
        others = sum(1 for node_name, namespace in self.get_node_names_and_namespaces()
                     if f"{namespace.rstrip('/')}/{node_name}" == name) - 1
        if others > 0:
            self._log("warning", f"{others} other node(s) named {name} are running: every one answers each frame "
                      "and label query; give each a unique name or namespace (__node:=, __ns:=)")
        return others

    def destroy_node(self) -> None:
        # Shutdown must not wait for a forward pass (seconds on a CPU): _cleanup waits briefly,
        # then leaves a busy thread to the runner, which ends the process without it
        # (busy_threads()).
        self._destroyed = True
        if hasattr(self, "label_scheduler"):  # not when the constructor raised before _init_core began
            self._cleanup()
        super().destroy_node()

    def busy_threads(self) -> List[str]:
        """Names of this node's threads still running (a forward pass or a text batch that
        outlived destroy_node's short wait)."""
        return [thread.name for thread in self._threads() if thread is not None and thread.is_alive()]

    def _threads(self) -> list:
        """The worker and label threads of the last configure (None where not started)."""
        return [worker and worker.thread for worker in (self.frame_worker, self.label_scheduler)]


#: depth images kept for pairing with color frames (at 30 Hz: the last third of a second)
DEPTH_BUFFER = 10
#: history of the depth and camera_info subscriptions (messages queued until the executor takes them)
DEPTH_QOS_HISTORY = 5
#: how long destroy_node waits for the worker and label threads (shutdown must take < 1 s)
SHUTDOWN_WAIT_S = 0.3


class LsegNode(LsegCore, Node):
    """The plain node: configured and active from construction until destroyed."""

    def __init__(self, node_name: str = "lseg_node", segmenter: Optional[Segmenter] = None, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self._init_core()
        self._configure(segmenter)
        self._activate()
        self.get_logger().info(f"lseg_node ready: {self.segmenter.description} on {self.segmenter.device}; "
                               f"labels {shorten(self.segmenter.labels, 200)}")


def free_memory() -> None:
    """Give memory held by dropped models back: Python objects, then the CUDA caching allocator."""
    import gc

    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def input_qos(parameter: str, value: str, history: int) -> QoSProfile:
    """The subscription QoS an input's parameter names: sensor_data (best effort, ROS's sensor
    data profile) or reliable (keep last ``history``); ValueError names another value."""
    if value == "sensor_data":
        return qos_profile_sensor_data
    if value == "reliable":
        return QoSProfile(depth=history, reliability=ReliabilityPolicy.RELIABLE)
    raise ValueError(f"invalid parameter {parameter}: {value!r}; accepted: sensor_data, reliable")


def main(args=None) -> int:
    return run_node(LsegNode, "lseg_node", args, start_errors=(WeightsError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
