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
on the frames of every camera that has one (cameras.py holds a camera's state).
New label sets are encoded by a second thread, off the frame path: frames keep being
segmented with the current set until the new one is ready, then it is swapped in whole
under a new generation number. A newer request supersedes one still waiting; one being
encoded finishes (its labels are cached) but is not put in use if a newer one is waiting.
~/label_info is published with the first frame segmented with a new set, before that
frame's outputs, and carries the set's generation, as ~/confidence does.

:class:`LsegCore` holds all of it as lifecycle steps; :class:`LsegNode` (this program) runs
them at construction, :mod:`lseg_ros.ros.lifecycle` as managed-node transitions.
"""
from __future__ import annotations

import array
import functools
import itertools
import math
import sys
import threading
import time
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.serialization import serialize_message
try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import ColorRGBA, Header, String

from ..deps import require_engine_packages, torch_build_summary
from ..stamps import StampBuffer, stamp_ns

require_engine_packages("lseg_node")  # one line instead of a ModuleNotFoundError traceback
from ..segmenter import Segmenter, parse_label_text  # noqa: E402
from ..geometry import Intrinsics, check_intrinsics, labelled_points, points_stride  # noqa: E402
from ..objects import find_objects  # noqa: E402
from ..validation import LabelLimits, shorten, split_synonyms
from ..viz import label_colors, overlay
from ..weights import WeightsError
from .runner import SET_LABELS_MAX_WAITING, run_node
from .conversions import (ImageConversionError, compressed_to_rgb, depth_image_to_metres, feature_map_msg,
                          float_map_to_image_msg, image_to_rgb, mask_to_image_msg, object_array_msg,
                          object_markers, rgb_to_image_msg, scale_camera_info, semantic_cloud_msg, xyz_cloud_msg)
from .cameras import CameraFrame, CameraStream, Counters, WantedOutputs
from .diagnostics import ERROR, OK, WARN, FrequencyCheck, StampCheck
from .params import declare_parameters, read_configs
from .twins import TwinFilter


#: depth of the latched ~/label_info history (label sets of recent masks for late subscribers)
LABEL_INFO_HISTORY = 10
#: seconds after start-up after which the graph is checked (once, at the next diagnostics
#: message) for another node of the same name
NAME_CHECK_DELAY_S = 2.0
#: longest log line the node writes (values from topics are also shortened where quoted)
LOG_LIMIT = 1000


@dataclass
class LabelRequest:
    """A validated label set waiting to be applied by the worker."""

    names: List[str]
    descriptions: List[List[str]]
    thresholds: List[Optional[float]]
    source: str
    done: Optional[threading.Event] = None  # set by finish(): a ~/set_labels call waits on it
    outcome: Optional[tuple] = None  # (success, message)
    order: int = 0  # arrival order (a ~/set_labels call's when it came in): the newest request wins

    def finish(self, success: bool, message: str) -> None:
        if self.outcome is None:
            self.outcome = (success, message)
            if self.done is not None:
                self.done.set()


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
        self._lock = threading.Condition()  # the cameras' frame slots
        self._streams: List[CameraStream] = []  # one per camera (made by _configure)
        self._label_lock = threading.Condition()  # label requests
        self._pending_labels: Optional[LabelRequest] = None  # waiting for the label thread
        self._destroyed = False
        self._last_logged = {}  # call site -> time of its last throttled log line
        self._active = False
        self._image_sub = None  # the first camera's image subscription
        self._configured_entities = []  # (destroy function, entity) made by _configure
        self._label_order = itertools.count(1)  # arrival order of label requests
        self._waiting_calls = 0  # ~/set_labels calls holding an executor thread (SET_LABELS_MAX_WAITING)
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
        self._encoding: Optional[tuple] = None  # (request, start time) being encoded now
        self._latest_request: Optional[LabelRequest] = None  # last accepted request (threshold changes)
        self._published_generation = 0  # label set of the last ~/label_info
        self._diagnostics_seen = (0, 0)  # (problems, processed) at the last diagnostics (several cameras)
        self._stop = threading.Event()  # this configure's threads' (see _init_core)
        self._twins = TwinFilter()
        # the single camera shares the node's counters (its diagnostics are the node's)
        cameras = self.node_config.cameras
        self._streams = [CameraStream(name, Counters() if cameras else self.counters, StampBuffer(DEPTH_BUFFER))
                         for name in cameras or [""]]
        made = self._configured_entities

        def publisher(msg_type, topic, qos, stream: Optional[CameraStream] = None):
            if stream is not None:
                topic = stream.output_topic(topic)  # ~/<name>/mask with several cameras
            made.append((self.destroy_publisher, self.create_publisher(msg_type, topic, qos)))
            return made[-1][1]

        def subscription(msg_type, topic, callback, qos, **kwargs):
            made.append((self.destroy_subscription, self.create_subscription(msg_type, topic, callback, qos,
                                                                             **kwargs)))

        try:
            from ..msg import ConfidenceMaps, LabelQuery, SegmentationInfo
            from ..srv import SetLabels
            from visualization_msgs.msg import MarkerArray
            from ..msg import FeatureMap, Object, ObjectArray
            from ..srv import EncodeText

            self._confidence_type, self._info_type = ConfidenceMaps, SegmentationInfo
            self._object_types, self._feature_map_type = (ObjectArray, Object), FeatureMap
            # each camera's outputs: ~/mask for the single camera, ~/<name>/mask for several
            for stream in self._streams:
                stream.publishers = {
                    "mask": publisher(Image, "~/mask", 10, stream),
                    "overlay": publisher(Image, "~/overlay", 10, stream),
                    "confidence": publisher(ConfidenceMaps, "~/confidence", 2, stream),  # large: few queued
                    # rviz cannot show ConfidenceMaps: the best label's probability per pixel, as an image
                    "confidence_image": publisher(Image, "~/confidence_image", 2, stream),
                    "camera_info": publisher(CameraInfo, "~/camera_info", 10, stream),
                    # mapping and navigation outputs (each computed only while subscribed)
                    "points": publisher(PointCloud2, "~/points", 2, stream),
                    "obstacle_points": publisher(PointCloud2, "~/obstacle_points", 2, stream),
                    "objects": publisher(ObjectArray, "~/objects", 10, stream),
                    "markers": publisher(MarkerArray, "~/markers", 10, stream),
                    "embeddings": publisher(FeatureMap, "~/embeddings", 2, stream),
                }
            # latched, with history: a late subscriber still gets the label sets of recent masks
            latched = QoSProfile(depth=LABEL_INFO_HISTORY, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                 reliability=ReliabilityPolicy.RELIABLE)
            self.info_pub = publisher(SegmentationInfo, "~/label_info", latched)
            self.diagnostics_pub = publisher(DiagnosticArray, "/diagnostics", 10)
            # Label inputs: each topic twice, so that latched publishers started before this node
            # are heard (transient local) as well as plain ones (volatile); see twins.py.
            # The latched twin does not match volatile publishers, by design: it says nothing
            # about it (each such publisher still logs once that a subscription requests
            # incompatible QoS; docs/node.md: labels from a mission planner).
            quiet = SubscriptionEventCallbacks(incompatible_qos=lambda event: None)
            for channel, qos, events in (("live", LABEL_INPUT_QOS, None),
                                         ("latched", LABEL_INPUT_LATCHED_QOS, quiet)):
                subscription(String, "labels", self._label_input("labels topic", channel, _label_text), qos,
                             event_callbacks=events)
                subscription(LabelQuery, "~/label_query", self._label_input("label_query", channel, _label_query),
                             qos, event_callbacks=events)
            # a reentrant group of its own: a call that waits for its label set holds up neither
            # frames nor the next call (which supersedes it); at most SET_LABELS_MAX_WAITING calls
            # wait at once, so they cannot take every executor thread (runner.py), and a deep
            # request queue keeps a burst of calls from being dropped before they are answered
            self._service_group = ReentrantCallbackGroup()
            made.append((self.destroy_service, self.create_service(
                SetLabels, "~/set_labels", self._on_set_labels, qos_profile=SERVICE_QOS,
                callback_group=self._service_group)))
            # its own group too: a text forward does not hold up frames nor wait for set_labels;
            # calls that come together queue (deeply) and are answered one by one
            made.append((self.destroy_service, self.create_service(
                EncodeText, "~/encode_text", self._on_encode_text, qos_profile=SERVICE_QOS,
                callback_group=MutuallyExclusiveCallbackGroup())))
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
        self._label_thread = threading.Thread(target=self._run_label_encoder, args=(self._stop,), name="lseg_labels",
                                              daemon=True)
        self._label_thread.start()
        self._worker = threading.Thread(target=self._run_worker, args=(self._stop,), name="lseg_worker", daemon=True)
        self._worker.start()

    def _apply_initial_labels(self, names: List[str]) -> None:
        """Encode and use the labels parameter's set. A refused set is a start-up error
        (ValueError naming it): a node that said "ready" with no labels would segment nothing.
        An obstacle_labels entry that no label names is only warned about (labels change at run time)."""
        try:
            request = self._validated_request(names, None, None, "labels parameter")
            label_set = self.segmenter.prepare_labels(request.names, request.descriptions, request.thresholds)
        except ValueError as error:
            raise ValueError(f"labels parameter {shorten(names, 200)} refused: {error}") from None
        self._latest_request = request
        generation = self.segmenter.use_labels(label_set)
        self._log("info", f"label set {generation} from labels parameter: {shorten(request.names, 200)}")
        self._warn_missing_obstacles(request.names)

    def _warn_missing_obstacles(self, labels: List[str]) -> None:
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
            with self._lock:
                stream.slot = None
            stream.depth.clear()

    def _cleanup(self) -> None:
        """Stop the threads, unsubscribe (_deactivate), destroy what _configure made and drop the
        model (GPU memory freed)."""
        self._active = False
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        with self._label_lock:
            waiting, self._pending_labels = self._pending_labels, None
            self._label_lock.notify_all()
        if waiting is not None:
            waiting.finish(False, "the node stopped before this label set was applied")
        deadline = time.monotonic() + SHUTDOWN_WAIT_S
        for thread in (getattr(self, "_worker", None), getattr(self, "_label_thread", None)):
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
        with self._lock:
            stream.counters.frames_in += 1
            if stream.put((msg, time.perf_counter())):
                stream.counters.dropped += 1
            self._lock.notify()

    def _on_depth(self, stream: CameraStream, msg: Image) -> None:
        """Keep a camera's newest depth images (converted only when a frame is paired with one)."""
        stream.counters.depth_in += 1
        stream.depth.push(stamp_ns(msg.header.stamp), msg)

    def _on_encode_text(self, request, response):
        """~/encode_text: embeddings of texts in the space of ~/embeddings (same label cache)."""
        segmenter = self.segmenter
        response.success = False
        if segmenter is None:
            response.message = "the node is not configured"
            return response
        response.model = segmenter.description
        response.logit_scale = float(segmenter.logit_scale)
        try:
            embeddings = segmenter.encode_texts(list(request.texts))
        except ValueError as error:
            self.counters.rejected_queries += 1
            self.counters.refused_calls += 1  # answered to the caller
            self._log("error", f"encode_text rejected: {error}", throttle=1.0)
            response.message = str(error)
            return response
        except InterruptedError:
            response.message = "the node is shutting down"
            return response
        values = embeddings.float().cpu().numpy()
        response.dim = int(values.shape[1])
        response.embeddings = array.array("f", values.astype("<f4").tobytes())
        response.success = True
        return response

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

    def _label_input(self, source: str, channel: str, to_labels):
        """The callback of one of a label topic's two subscriptions: a message that is not the
        twin of one already taken (twins.py) becomes a label request."""
        def on_labels(msg) -> None:
            if not self._twins.is_copy(source, channel, serialize_message(msg), time.monotonic()):
                self._submit(*to_labels(msg), source, allow_empty=False)
        return on_labels

    def _on_set_labels(self, request, response):
        """~/set_labels: apply a label set and answer once it is in use, or refused, superseded
        by a newer request, timed out (set_labels_timeout) or the node stops. Calls run
        concurrently (reentrant group); one that would be the (SET_LABELS_MAX_WAITING + 1)-th
        to wait is refused at once, so waiting calls never hold every executor thread."""
        order = next(self._label_order)  # before validation: the order the calls came in
        names, prompts, thresholds = _label_specs(request.labels)
        try:
            if not names:
                raise ValueError("empty label set; give at least one label (to pause segmentation, set the "
                                 "labels parameter to [])")
            label_request = self._validated_request(names, prompts, thresholds, "set_labels service")
        except ValueError as error:
            self._reject_labels("set_labels service", error, answered=True)
            return self._label_reply(response, False, str(error))
        with self._label_lock:
            busy = self._waiting_calls >= SET_LABELS_MAX_WAITING
            if not busy:
                self._waiting_calls += 1
        if busy:
            self.counters.rejected_queries += 1
            self.counters.refused_calls += 1
            self._log("warning", f"set_labels refused: {SET_LABELS_MAX_WAITING} calls already waiting", throttle=1.0)
            return self._label_reply(response, False, f"refused: too many calls waiting ({SET_LABELS_MAX_WAITING} "
                                     "~/set_labels calls wait for their label sets); call again")
        try:
            label_request.done, label_request.order = threading.Event(), order
            self._enqueue(label_request)
            return self._wait_for_labels(label_request, response)
        finally:
            with self._label_lock:
                self._waiting_calls -= 1

    def _wait_for_labels(self, label_request: LabelRequest, response):
        """The reply of a ~/set_labels call once its request finished (or timed out, or the node stops)."""
        timeout = self.node_config.set_labels_timeout
        deadline, stop = time.monotonic() + timeout, self._stop
        while not label_request.done.wait(0.05):
            if self._stopping() or stop.is_set():
                return self._label_reply(response, False, "the node is shutting down")
            if time.monotonic() > deadline:
                return self._label_reply(response, False, f"not in use after {timeout:g} s (set_labels_timeout): "
                                         "still encoding; it is applied when ready unless a newer set comes")
        success, message = label_request.outcome
        return self._label_reply(response, success, message)

    def _label_reply(self, response, success: bool, message: str):
        label_set = self.segmenter.label_set if self.segmenter is not None else None
        response.success, response.message = success, message
        response.labels = list(label_set.names) if label_set is not None else []
        response.generation = label_set.generation if label_set is not None else 0
        return response

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        """Validate every parameter of the request first; apply only if all pass (atomic)."""
        changes = []
        try:
            for parameter in parameters:
                if parameter.type_ == Parameter.Type.NOT_SET:
                    # with dynamic typing, NOT_SET would delete the parameter for good
                    raise ValueError(f"parameter {parameter.name!r} cannot be unset (type NOT_SET); "
                                     "set a value of its type instead")
                if parameter.name == "labels":
                    labels = _label_list(parameter.value)
                    if labels and self.segmenter is not None:
                        self.segmenter.validate_labels(labels)
                    changes.append(("labels", labels))
                elif parameter.name == "obstacle_labels":
                    obstacles = _label_list(parameter.value, "obstacle_labels")
                    if obstacles and self.segmenter is not None:
                        obstacles = self.segmenter.validate_texts(obstacles)
                    changes.append(("obstacle_labels", obstacles))
                elif parameter.name in ("threshold", "overlay_alpha"):
                    if not isinstance(parameter.value, (int, float)) or isinstance(parameter.value, bool) \
                            or not 0.0 <= float(parameter.value) <= 1.0:
                        raise ValueError(f"{parameter.name} {parameter.value!r} out of range; accepted: [0, 1]")
                    changes.append((parameter.name, float(parameter.value)))
        except ValueError as error:
            self.counters.rejected_queries += 1
            self.counters.refused_calls += 1  # answered to the caller
            self._log("error", f"parameter change rejected: {error}")
            return SetParametersResult(successful=False, reason=str(error))
        if self.segmenter is None:  # not configured (managed node): the values are read at configure
            return SetParametersResult(successful=True)
        for name, value in changes:
            if name == "labels":
                self._submit(value, None, None, "labels parameter")
            elif name == "threshold":
                self.segmenter.set_threshold(value)
                with self._label_lock:  # re-resolve default thresholds, unless another label set is waiting
                    latest = self._latest_request
                    if self._pending_labels is None and latest is not None and latest.names:
                        self._pending_labels = LabelRequest(latest.names, latest.descriptions, latest.thresholds,
                                                            "threshold parameter")
                        self._label_lock.notify()
            elif name == "obstacle_labels":
                self.node_config.obstacle_labels = value
                self._warn_missing_obstacles(self.segmenter.labels)
            else:
                self.node_config.overlay_alpha = value
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------- labels
    def _submit(self, names, descriptions, thresholds, source: str, allow_empty: bool = True) -> None:
        """Validate a label set now (cheap) and hand it to the label thread (text forward there).

        An empty set from the labels parameter pauses segmentation; from a topic it is a bad
        query (rejected, the current labels stay)."""
        if not names and allow_empty:
            self._log("warning", f"{source}: empty label set; segmentation paused until labels arrive")
            request = LabelRequest([], [], [], source)
        else:
            request = self._checked_request(names, descriptions, thresholds, source)
            if request is None:
                return
        self._enqueue(request)

    def _enqueue(self, request: "LabelRequest") -> None:
        """Make ``request`` the one waiting for the label thread: it supersedes a request still
        waiting, unless that one came in later (concurrent ~/set_labels calls: the newest wins)."""
        with self._label_lock:
            if not request.order:
                request.order = next(self._label_order)
            newer = max((other for other in (self._pending_labels, self._encoding and self._encoding[0])
                         if other is not None and other.order > request.order),
                        key=lambda other: other.order, default=None)
            if newer is None:
                replaced = self._pending_labels
                self._pending_labels = self._latest_request = request  # supersedes a waiting request
                self._label_lock.notify()
        if newer is not None:  # a call that came in later is already waiting or being encoded
            request.finish(False, f"superseded by a newer label set (from {newer.source}) before it was applied")
        elif replaced is not None:
            replaced.finish(False, f"superseded by a newer label set (from {request.source}) before it was applied")

    def _checked_request(self, names, descriptions, thresholds, source: str) -> Optional[LabelRequest]:
        """The request, or None after counting and logging why it is rejected."""
        try:
            return self._validated_request(names, descriptions, thresholds, source)
        except ValueError as error:
            self._reject_labels(source, error)
            return None

    def _reject_labels(self, source: str, error: ValueError, answered: bool = False) -> None:
        """Count and log a refused label set; ``answered``: its caller was told (a service call)."""
        self.counters.rejected_queries += 1
        self.counters.refused_calls += answered
        self._log("error", f"{source}: label set rejected: {error}")

    def _validated_request(self, names, descriptions, thresholds, source: str) -> LabelRequest:
        checked_names, checked_descriptions, _ = self.segmenter.validate_labels(names, descriptions, thresholds)
        return LabelRequest(checked_names, checked_descriptions,
                            list(thresholds) if thresholds else [None] * len(checked_names), source)

    def _run_label_encoder(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with self._label_lock:
                while self._pending_labels is None and not stop.is_set():
                    self._label_lock.wait(timeout=0.1)
                request, self._pending_labels = self._pending_labels, None
                self._encoding = (request, time.monotonic()) if request is not None else None
            if request is None:
                continue
            try:
                self._apply_labels(request)
            except Exception as error:  # the node never dies on a label set
                if not stop.is_set():
                    self.counters.failed += 1
                    self._log("error", f"label encoding failed: {type(error).__name__}: {error}")
                request.finish(False, f"label encoding failed: {type(error).__name__}: {error}")
            finally:
                with self._label_lock:
                    self._encoding = None

    def _apply_labels(self, request: LabelRequest) -> None:
        """Encode ``request`` (off the frame path) and swap it in whole under a new generation.
        Its ``finish`` says how it ended (for a waiting ~/set_labels call)."""
        segmenter = self.segmenter
        if not request.names:
            generation = segmenter.use_labels(None)
            header = Header()
            header.stamp = self.get_clock().now().to_msg()
            self._publish_label_info(header, [], generation)  # nothing is segmented: no frame to stamp with
            request.finish(True, "")
            return
        try:
            label_set = segmenter.prepare_labels(request.names, request.descriptions, request.thresholds)
        except InterruptedError:
            request.finish(False, "the node stopped before this label set was applied")
            return  # shutting down
        except ValueError as error:
            self.counters.rejected_queries += 1
            self.counters.refused_calls += request.done is not None  # a ~/set_labels call is told
            self._log("error", f"{request.source}: label set not applied: {error}")
            request.finish(False, str(error))
            return
        newer = self._pending_labels
        if newer is not None:  # a newer request came in meanwhile: it wins (this one is cached)
            self.counters.superseded_label_sets += 1
            self._log("info", f"{request.source}: label set superseded by a newer request before it was ready")
            request.finish(False, f"superseded by a newer label set (from {newer.source}) before it was applied")
            return
        generation = segmenter.use_labels(label_set)
        self._log("info", f"label set {generation} from {request.source}: {shorten(request.names, 200)}")
        request.finish(True, "")

    def _publish_label_info(self, header, labels: List[str], generation: int) -> None:
        info = self._info_type()
        info.header = header
        info.generation = generation
        info.labels = list(labels)
        info.colors = [ColorRGBA(r=r / 255.0, g=g / 255.0, b=b / 255.0, a=1.0)
                       for r, g, b in label_colors(len(info.labels))]
        info.unknown_value = self.segmenter.config.unknown_value
        info.model = self.segmenter.description
        self.info_pub.publish(info)
        self._published_generation = generation

    # ---------------------------------------------------------------- worker
    def _run_worker(self, stop: threading.Event) -> None:
        """Wait for a frame from any camera, take the newest frame of every camera that has one
        and segment them together (one batched forward)."""
        while not stop.is_set():
            with self._lock:
                while not any(stream.slot is not None for stream in self._streams) and not stop.is_set():
                    self._lock.wait(timeout=0.1)
                frames = [(stream, *stream.take()) for stream in self._streams if stream.slot is not None]
            if not frames or stop.is_set():
                continue
            try:
                self._process(frames)
            except Exception as error:  # the node never dies on a frame
                if stop.is_set() or not self.context.ok():
                    return  # shutting down or cleaned up: publishers may already be invalid
                self.counters.failed += 1
                self._log("error", f"worker step failed: {type(error).__name__}: {error}", throttle=1.0)

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

    def _process(self, frames: List[tuple]) -> None:
        """Segment ``frames`` ((stream, msg, receive time), at most one per camera) in one
        forward and publish each result on its own camera's outputs. A frame that cannot be
        converted is rejected alone; the others are segmented."""
        converted = [frame for frame in (self._converted(*frame) for frame in frames) if frame is not None]
        if not converted:
            return
        segmenter = self.segmenter
        if segmenter.label_set is None:
            self._log("warning", "no labels set: frame not segmented; publish labels on 'labels' or "
                      "'~/label_query' or set the labels parameter", throttle=5.0)
            return
        wanted = [self._wanted_outputs(frame.stream) for frame in converted]
        start = time.perf_counter()
        # one forward for all cameras (same-size frames batch; the segmenter runs other sizes one by one);
        # what one camera's subscribers want is computed for all of them
        results = segmenter.segment([frame.rgb for frame in converted],
                                    return_confidences=any(outputs.confidences for outputs in wanted),
                                    return_embeddings=any(outputs.embeddings for outputs in wanted))
        inference_s = time.perf_counter() - start
        if not self._active:  # deactivated meanwhile: inactive nodes publish nothing
            return
        if results[0].generation != self._published_generation:  # first frame(s) of a new label set
            self._publish_label_info(converted[0].header, results[0].labels, results[0].generation)
        for frame, outputs, result in zip(converted, wanted, results):
            counters = frame.stream.counters
            try:
                self._publish_outputs(frame, outputs, result)
            except Exception as error:  # one camera's failure does not keep the others' outputs back
                if not self._active or self._stopping():
                    raise  # deactivated, cleaned up or shutting down: the worker decides
                counters.failed += 1
                self._log("error", f"{frame.stream.log_prefix}publishing failed: {type(error).__name__}: {error}",
                          throttle=1.0, key=frame.stream.name)
                continue
            counters.processed += 1
            _push(counters.inference_s, inference_s)
            _push(counters.end_to_end_s, time.perf_counter() - frame.receive_time)

    def _converted(self, stream: CameraStream, msg, receive_time: float) -> Optional[CameraFrame]:
        """The frame as RGB, or None after counting and logging why it is rejected."""
        try:
            if isinstance(msg, CompressedImage):
                rgb = compressed_to_rgb(msg, max_pixels=self.node_config.max_image_pixels)
            else:
                rgb = image_to_rgb(msg, max_pixels=self.node_config.max_image_pixels)
        except ImageConversionError as error:
            stream.counters.rejected_frames += 1
            self._log("error", f"{stream.log_prefix}frame rejected: {error}", throttle=1.0, key=stream.name)
            return None
        return CameraFrame(stream, msg.header, rgb, receive_time)

    def _wanted_outputs(self, stream: CameraStream) -> WantedOutputs:
        """The outputs of ``stream`` that have subscribers (counts the frame towards embeddings_every_n)."""
        wanted = WantedOutputs(confidence_maps=stream.subscribed("confidence"),
                               confidence_image=stream.subscribed("confidence_image"),
                               spatial=self._wanted_spatial_outputs(stream))
        if stream.subscribed("embeddings"):
            wanted.embeddings = stream.counters.embeddings_due % self.node_config.embeddings_every_n == 0
            stream.counters.embeddings_due += 1
        return wanted

    def _publish_outputs(self, frame: CameraFrame, wanted: WantedOutputs, result) -> None:
        """One camera's outputs of ``result``, each stamped with the frame's header."""
        stream, header, rgb, publishers = frame.stream, frame.header, frame.rgb, frame.stream.publishers
        encoding = "mono8" if result.mask.dtype == np.uint8 else "mono16"
        publishers["mask"].publish(mask_to_image_msg(result.mask, header, encoding))
        if stream.subscribed("overlay"):
            colors = label_colors(len(result.labels))
            blended = overlay(rgb, result.mask, colors, self.node_config.overlay_alpha) \
                if result.mask.shape == rgb.shape[:2] else _resized_overlay(rgb, result.mask, colors,
                                                                            self.node_config.overlay_alpha)
            publishers["overlay"].publish(rgb_to_image_msg(blended, header))
        if wanted.confidence_image:  # 32FC1, at the confidence maps' size (see ConfidenceMaps.scale)
            publishers["confidence_image"].publish(float_map_to_image_msg(result.confidences.max(axis=0), header))
        if wanted.confidence_maps:
            maps = self._confidence_type()
            maps.header = header
            maps.labels = result.labels
            maps.generation = result.generation
            maps.scale = result.confidence_scale
            maps.maps = [float_map_to_image_msg(c, header) for c in result.confidences]
            publishers["confidence"].publish(maps)
        camera_info = stream.camera_info
        if camera_info is not None:
            height, width = result.mask.shape
            info = scale_camera_info(camera_info, width, height)
            info.header = header
            publishers["camera_info"].publish(info)
        if wanted.embeddings:
            segmenter = self.segmenter
            publishers["embeddings"].publish(feature_map_msg(
                self._feature_map_type, result.embeddings, header, segmenter.description, result.embedding_scale,
                segmenter.logit_scale))
        if wanted.spatial:
            self._publish_spatial(stream, wanted.spatial, result, rgb, header, camera_info)

    # ------------------------------------------------------- mapping outputs
    def _wanted_spatial_outputs(self, stream: CameraStream) -> set:
        """The depth-based outputs that have subscribers: points, obstacles, objects (also for markers)."""
        wanted = set()
        if stream.subscribed("points"):
            wanted.add("points")
        if stream.subscribed("obstacle_points") and self.node_config.obstacle_labels:
            wanted.add("obstacles")
        if stream.subscribed("objects") or stream.subscribed("markers"):
            wanted.add("objects")
        return wanted

    def _paired_depth(self, stream: CameraStream, header, camera_info) -> tuple:
        """(depth in metres, color intrinsics) for this frame, or (None, None): no depth within
        depth_slop (counted when depth is arriving), no camera_info, or a bad depth image."""
        counters, prefix = stream.counters, stream.log_prefix
        if counters.depth_in == 0:
            return None, None  # no depth published: the node runs without 3D outputs
        depth_msg = stream.depth.nearest(stamp_ns(header.stamp), self.node_config.depth_slop)
        if depth_msg is None:
            counters.depth_unmatched += 1
            self._log("warning", f"{prefix}no depth image within depth_slop={self.node_config.depth_slop:g} s of "
                      f"frame {header.stamp.sec}.{header.stamp.nanosec:09d}: no 3D outputs for it (depth and "
                      "color stamps too far apart, or depth slower than color)", throttle=10.0, key=stream.name)
            return None, None
        counters.depth_matched += 1
        if camera_info is None:
            self._log("warning", f"{prefix}depth received but no camera_info yet: 3D outputs need the color "
                      "camera's intrinsics (remap camera_info)", throttle=10.0, key=stream.name)
            return None, None
        try:
            depth_m = depth_image_to_metres(depth_msg, max_pixels=self.node_config.max_image_pixels)
            intrinsics = Intrinsics.from_k(camera_info.k, camera_info.width, camera_info.height)
        except ValueError as error:  # ImageConversionError too
            counters.rejected_depth += 1
            self._log("error", f"{prefix}depth rejected: {error}", throttle=1.0, key=stream.name)
            return None, None
        return depth_m, intrinsics

    def _publish_spatial(self, stream: CameraStream, wanted: set, result, rgb, header, camera_info) -> None:
        nc, publishers = self.node_config, stream.publishers
        depth_m, intrinsics = self._paired_depth(stream, header, camera_info)
        best = result.confidences.max(axis=0) if result.confidences is not None else None
        if depth_m is not None and wanted & {"points", "obstacles"}:
            include_unknown = "points" in wanted and nc.points_include_unknown
            stride = points_stride(result.mask.shape, nc.points_stride, nc.max_points)
            if stride != nc.points_stride:
                self._log("info", f"{stream.log_prefix}a {result.mask.shape[1]}x{result.mask.shape[0]} mask at "
                          f"points_stride {nc.points_stride} exceeds max_points {nc.max_points}: clouds use "
                          f"stride {stride}", throttle=60.0, key=stream.name)
            points = labelled_points(depth_m, result.mask, intrinsics, rgb=rgb, confidence=best,
                                     stride=stride, min_depth=nc.min_depth, max_depth=nc.max_depth,
                                     unknown_value=None if include_unknown else result.unknown_value)
            if "points" in wanted:
                publishers["points"].publish(semantic_cloud_msg(points, header))
            if "obstacles" in wanted:
                indices, missing = obstacle_indices(result.labels, nc.obstacle_labels)
                if missing:
                    self._log("warning", f"obstacle_labels {shorten(missing, 200)} are not in the label set "
                              f"{shorten(result.labels, 200)}: add them to the labels to see them", throttle=30.0)
                keep = np.isin(points.label, np.asarray(indices, dtype=np.uint16))
                publishers["obstacle_points"].publish(xyz_cloud_msg(points.xyz[keep], header))
        if "objects" in wanted:
            objects = find_objects(result.mask, len(result.labels), confidence=best, depth_m=depth_m,
                                   intrinsics=intrinsics, min_pixels=nc.min_object_pixels,
                                   depth_band=nc.object_depth_band, min_depth=nc.min_depth, max_depth=nc.max_depth)
            array_type, object_type = self._object_types
            msg = object_array_msg(array_type, object_type, objects, result.labels, header, result.generation,
                                   depth_m is not None)
            if stream.subscribed("objects"):
                publishers["objects"].publish(msg)
            if stream.subscribed("markers"):
                publishers["markers"].publish(object_markers(msg, label_colors(len(result.labels))))

    # ----------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        if self._name_check_at is not None and time.monotonic() >= self._name_check_at:
            self._name_check_at = None
            self.check_unique_name()
        if not self._active:  # configured managed node, not active: nothing is expected to arrive
            label_set = self.segmenter.label_set
            values = [KeyValue(key="node", value=self.get_fully_qualified_name()),
                      KeyValue(key="labels", value=", ".join(self.segmenter.labels)),
                      KeyValue(key="label_generation", value=str(label_set.generation if label_set else 0)),
                      KeyValue(key="model", value=self.segmenter.description)]
            array = DiagnosticArray(status=[DiagnosticStatus(
                level=DiagnosticStatus.OK, name=f"{self.get_name()}: {task}", message="inactive (lifecycle state)",
                hardware_id=str(self.segmenter.device), values=values) for task in DIAGNOSTIC_TASKS])
            array.header.stamp = self.get_clock().now().to_msg()
            self.diagnostics_pub.publish(array)
            return
        statuses = self._camera_statuses() if self.node_config.cameras else \
            self._single_camera_statuses(self._streams[0])
        array = DiagnosticArray(status=statuses)
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

    def _input_health(self, stream: CameraStream, problems: int) -> tuple:
        """((level, message) of a camera's input since the last diagnostics, or None when
        healthy; seconds since its last frame). Rejected or failing input, a silent image
        topic (also logged), depth arriving but never paired."""
        counters, seen = stream.counters, stream.diagnostics_seen
        new_problems, new_processed = problems - seen[0], counters.processed - seen[1]
        new_unpaired, new_paired = counters.depth_unmatched - seen[2], counters.depth_matched - seen[3]
        stream.diagnostics_seen = (problems, counters.processed, counters.depth_unmatched, counters.depth_matched)
        silent_s = time.monotonic() - stream.last_frame_at
        timeout = self.node_config.input_timeout
        stale = timeout > 0 and silent_s > timeout
        topic = stream.image_sub.topic_name
        if stale:
            self._log("warning", f"no frame for {silent_s:.0f} s on {topic}; check the camera and the topic "
                      "remapping", throttle=max(10.0, timeout), key=stream.name)
        if new_problems and not new_processed:
            return (ERROR, "input rejected or failing, nothing processed"), silent_s
        if new_problems:
            return (WARN, "some input rejected or failing"), silent_s
        if stale:
            return (WARN, f"no frame for {silent_s:.1f} s on {topic}"), silent_s
        if new_unpaired and not new_paired:
            return (WARN, f"depth arriving but not paired with frames (stamps more than depth_slop="
                          f"{self.node_config.depth_slop:g} s apart?)"), silent_s
        return None, silent_s

    def _label_status(self) -> tuple:
        """((level, message) when there is no label set, or None; the values about labels)."""
        encoding, pending = self._encoding, self._pending_labels
        label_set = self.segmenter.label_set
        health = None
        if label_set is None:
            health = (WARN, "waiting for labels" + ("" if encoding is None else " (encoding a label set)"))
        elif encoding is not None:
            health = (OK, "running; encoding a new label set")
        values = {
            "labels": ", ".join(self.segmenter.labels), "label_generation": label_set.generation if label_set else 0,
            "label_encoding": "idle" if encoding is None else
            f"{len(encoding[0].names)} labels from {encoding[0].source}, {time.monotonic() - encoding[1]:.1f} s",
            "label_pending": "none" if pending is None else f"{len(pending.names)} labels from {pending.source}",
            "superseded_label_sets": self.counters.superseded_label_sets,
        }
        return health, values

    def _single_camera_statuses(self, stream: CameraStream) -> List[DiagnosticStatus]:
        """The single camera's node: 'segmentation' (the node and its input), 'input frequency',
        'input timestamps'."""
        counters = self.counters  # the stream's
        # a refused request that was answered to its caller is no health problem: only label
        # messages from topics, refused with nobody to tell, count
        unanswered = counters.rejected_queries - counters.refused_calls
        input_health, silent_s = self._input_health(stream, counters.input_problems() + unanswered)
        label_health, label_values = self._label_status()
        if label_health is not None and label_health[0] != OK:
            level, message = label_health
        elif input_health is not None:
            level, message = input_health
        else:
            level, message = label_health or (OK, "running")
        values = {
            "node": self.get_fully_qualified_name(), "input_topic": stream.image_sub.topic_name,
            "seconds_since_last_frame": f"{silent_s:.1f}",
            "frames_in": counters.frames_in, "processed": counters.processed, "dropped": counters.dropped,
            "rejected_frames": counters.rejected_frames, "rejected_queries": counters.rejected_queries,
            "refused_calls": counters.refused_calls,
            "rejected_camera_info": counters.rejected_camera_info, "failed": counters.failed,
            "inference_ms_mean": _mean_ms(counters.inference_s), "end_to_end_ms_mean": _mean_ms(counters.end_to_end_s),
            **label_values,
            "depth_in": counters.depth_in, "depth_matched": counters.depth_matched,
            "depth_unmatched": counters.depth_unmatched, "rejected_depth": counters.rejected_depth,
            "device": str(self.segmenter.device),
            "model": self.segmenter.description,
        }
        # diagnostic_updater's naming: "<node name>: <task>" (the fully qualified name is a value)
        statuses = [self._status(DIAGNOSTIC_TASKS[0], level, message, values)]
        for task, (level, message, task_values) in ((DIAGNOSTIC_TASKS[1], stream.frequency.update(time.monotonic())),
                                                    (DIAGNOSTIC_TASKS[2], stream.stamps.update())):
            statuses.append(self._status(task, level, message, {"node": self.get_fully_qualified_name(),
                                                                "topic": stream.image_sub.topic_name, **task_values}))
        return statuses

    def _camera_statuses(self) -> List[DiagnosticStatus]:
        """Several cameras: 'segmentation' (the labels, the model, the worker), then one
        'camera <name>' status per camera (its input: counters, rate, stamps, silence, depth)."""
        counters, streams = self.counters, self._streams
        problems = counters.rejected_queries - counters.refused_calls + counters.failed  # see _single_camera_statuses
        processed = sum(stream.counters.processed for stream in streams)
        new_problems, new_processed = problems - self._diagnostics_seen[0], processed - self._diagnostics_seen[1]
        self._diagnostics_seen = (problems, processed)
        label_health, label_values = self._label_status()
        if label_health is not None and label_health[0] != OK:
            level, message = label_health
        elif new_problems:
            level, message = (ERROR, "label queries rejected or frames failing, nothing processed") \
                if not new_processed else (WARN, "some label queries rejected or frames failing")
        else:
            level, message = label_health or (OK, "running")
        values = {
            "node": self.get_fully_qualified_name(), "cameras": ", ".join(self.node_config.cameras),
            "input_topics": ", ".join(self.input_topics()),
            **{key: sum(getattr(stream.counters, key) for stream in streams)
               for key in ("frames_in", "processed", "dropped")},
            "rejected_queries": counters.rejected_queries, "refused_calls": counters.refused_calls,
            "failed": counters.failed,
            **label_values, "device": str(self.segmenter.device), "model": self.segmenter.description,
        }
        statuses = [self._status(DIAGNOSTIC_TASKS[0], level, message, values)]
        statuses.extend(self._camera_status(stream) for stream in streams)
        return statuses

    def _camera_status(self, stream: CameraStream) -> DiagnosticStatus:
        """One camera's status, named '<node>: camera <name>': the worst of its input health,
        its input rate and its stamps (diagnostic_updater's frequency and time-stamp checks)."""
        counters = stream.counters
        health, silent_s = self._input_health(stream, counters.input_problems())
        level, message = health or (OK, "running" if counters.frames_in else "waiting for the first frame")
        frequency = stream.frequency.update(time.monotonic())
        stamps = stream.stamps.update()
        for task, (task_level, task_message, _) in ((DIAGNOSTIC_TASKS[1], frequency),
                                                    (DIAGNOSTIC_TASKS[2], stamps)):
            if task_level != OK:
                message += f"; {task}: {task_message}"
                level = max(level, task_level)
        values = {
            "node": self.get_fully_qualified_name(), "camera": stream.name, "input_topic": stream.image_sub.topic_name,
            "seconds_since_last_frame": f"{silent_s:.1f}",
            "frames_in": counters.frames_in, "processed": counters.processed, "dropped": counters.dropped,
            "rejected_frames": counters.rejected_frames, "rejected_camera_info": counters.rejected_camera_info,
            "failed": counters.failed,
            "inference_ms_mean": _mean_ms(counters.inference_s), "end_to_end_ms_mean": _mean_ms(counters.end_to_end_s),
            "depth_in": counters.depth_in, "depth_matched": counters.depth_matched,
            "depth_unmatched": counters.depth_unmatched, "rejected_depth": counters.rejected_depth,
            **frequency[2], **stamps[2],
        }
        return self._status(f"camera {stream.name}", level, message, values)

    def _status(self, task: str, level: int, message: str, values: dict) -> DiagnosticStatus:
        """A DiagnosticStatus named '<node name>: <task>' (diagnostic_updater's naming; the
        fully qualified name is a value)."""
        return DiagnosticStatus(level=bytes([level]) if isinstance(DiagnosticStatus.OK, bytes) else level,
                                name=f"{self.get_name()}: {task}", message=message,
                                hardware_id=str(self.segmenter.device),
                                values=[KeyValue(key=key, value=str(value)) for key, value in values.items()])

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
        if hasattr(self, "_label_lock"):  # not when the constructor raised before _init_core began
            self._cleanup()
        super().destroy_node()

    def busy_threads(self) -> List[str]:
        """Names of this node's threads still running (a forward pass or a text batch that
        outlived destroy_node's short wait)."""
        threads = [getattr(self, name, None) for name in ("_worker", "_label_thread")]
        return [thread.name for thread in threads if thread is not None and thread.is_alive()]


#: depth images kept for pairing with color frames (at 30 Hz: the last third of a second)
DEPTH_BUFFER = 10
#: history of the depth and camera_info subscriptions (messages queued until the executor takes them)
DEPTH_QOS_HISTORY = 5
#: how long destroy_node waits for the worker and label threads (shutdown must take < 1 s)
SHUTDOWN_WAIT_S = 0.3
#: ~/set_labels and ~/encode_text requests queued in DDS until taken: a burst this deep is
#: answered, not dropped (a caller sending such bursts needs a client queue as deep for the answers)
SERVICE_QUEUE_DEPTH = 100
SERVICE_QOS = QoSProfile(depth=SERVICE_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
#: the tasks /diagnostics reports on, as "<node name>: <task>"
DIAGNOSTIC_TASKS = ("segmentation", "input frequency", "input timestamps")
#: label inputs: reliable, as publishers of commands are; the latched twin hears transient-local
#: publishers that started first (depth 1: only the last label set matters)
LABEL_INPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
LABEL_INPUT_LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


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


def _label_text(msg: String) -> tuple:
    """(names, prompts, thresholds) of a labels topic message: 'door, person; man'."""
    return parse_label_text(msg.data), None, None


def _label_query(msg) -> tuple:
    return _label_specs(msg.labels)


def _label_specs(specs) -> tuple:
    """(names, prompts, thresholds) of LabelSpec messages; threshold NaN or 0 = the node's default."""
    names = [spec.name for spec in specs]
    prompts = [list(spec.prompts) for spec in specs]
    thresholds = [None if math.isnan(spec.threshold) or spec.threshold == 0 else float(spec.threshold)
                  for spec in specs]
    return names, prompts, thresholds


def _resized_overlay(rgb, mask, colors, alpha):
    from PIL import Image as PilImage

    resized = np.asarray(PilImage.fromarray(rgb).resize((mask.shape[1], mask.shape[0]), PilImage.BILINEAR))
    return overlay(resized, mask, colors, alpha)


def _label_list(value, name: str = "labels") -> List[str]:
    """A label-list parameter's value as a list of names; ValueError names a wrong type."""
    if value is None:
        return []
    if isinstance(value, str):
        return parse_label_text(value)
    if isinstance(value, (list, tuple)) and all(isinstance(label, str) for label in value):
        return list(value)
    raise ValueError(f"{name} must be a string array (or 'door, chair'), got {shorten(value)}")


def obstacle_indices(labels: List[str], obstacle_labels: List[str]) -> tuple:
    """(indices of ``labels`` that are obstacles, obstacle names no label has): a label is an
    obstacle when it or one of its synonyms is in ``obstacle_labels`` (case-insensitive)."""
    wanted = {name.strip().casefold() for name in obstacle_labels}
    indices, found = [], set()
    for index, label in enumerate(labels):
        names = {label.casefold()} | {name.casefold() for name in split_synonyms(label)}
        if names & wanted:
            indices.append(index)
            found |= names & wanted
    return indices, sorted(wanted - found)


def _push(window: list, value: float, size: int = 100) -> None:
    window.append(value)
    if len(window) > size:
        del window[0]


def _mean_ms(window: list) -> str:
    return f"{1000.0 * sum(window) / len(window):.1f}" if window else "n/a"


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
