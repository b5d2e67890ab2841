"""``lseg_node``: camera images and label queries in; mask, confidences, overlay, label info out.

Subscribes (relative names, remap with ``-r image:=/camera/color/image_raw``):
  image (sensor_msgs/Image) or image/compressed (with use_compressed:=true),
  camera_info (optional), labels (std_msgs/String "door, chair"), ~/label_query (LabelQuery).
Publishes, every message stamped with the source image's header:
  ~/mask (mono8 / mono16), ~/overlay (rgb8), ~/confidence (ConfidenceMaps),
  ~/camera_info (scaled to the mask size), ~/label_info (SegmentationInfo, transient local),
  /diagnostics.

The executor never waits for the model: the newest frame waits in a one-slot buffer
(a newer frame replaces it and counts as dropped) and a worker thread runs the model.
"""
from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import ColorRGBA, String

from ..segmenter import Segmenter, parse_label_text
from ..viz import label_colors, overlay
from ..weights import WeightsError
from .runner import run_node
from .conversions import (ImageConversionError, compressed_to_rgb, float_map_to_image_msg, image_to_rgb,
                          mask_to_image_msg, rgb_to_image_msg, scale_camera_info)
from .params import declare_parameters, read_configs


@dataclass
class LabelRequest:
    """A validated label set waiting to be applied by the worker."""

    names: List[str]
    descriptions: List[List[str]]
    thresholds: List[Optional[float]]
    source: str


@dataclass
class Counters:
    frames_in: int = 0
    processed: int = 0
    dropped: int = 0
    rejected_frames: int = 0
    rejected_queries: int = 0
    failed: int = 0
    rejected_camera_info: int = 0
    inference_s: List[float] = field(default_factory=list)
    end_to_end_s: List[float] = field(default_factory=list)


class LsegNode(Node):
    def __init__(self, node_name: str = "lseg_node", segmenter: Optional[Segmenter] = None, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        declare_parameters(self)
        self.config, self.node_config = read_configs(self)
        initial_labels = list(self.config.labels)  # coerced: "door, chair" -> ["door", "chair"]
        if segmenter is None:
            segmenter_config = self.config
            segmenter_config.labels = []  # applied below through the same path as run-time changes
            segmenter = Segmenter(segmenter_config)
        self.segmenter = segmenter
        self.segmenter.max_labels = self.node_config.max_labels
        self.segmenter.max_label_chars = self.node_config.max_label_chars
        self.segmenter.max_descriptions = self.node_config.max_prompts_per_label
        self.counters = Counters()
        self._lock = threading.Condition()
        self._slot = None  # (msg, receive_time) of the newest unprocessed frame
        self._pending_labels: Optional[LabelRequest] = None
        self._active_request: Optional[LabelRequest] = None
        self._camera_info: Optional[CameraInfo] = None
        self._latest_header = None  # header of the last processed frame, for ~/label_info
        self._diagnostics_seen = (0, 0)  # (problems, processed) at the last diagnostics message
        self._stop = threading.Event()

        self.mask_pub = self.create_publisher(Image, "~/mask", 10)
        self.overlay_pub = self.create_publisher(Image, "~/overlay", 10)
        from ..msg import ConfidenceMaps, LabelQuery, SegmentationInfo

        self._confidence_type, self._info_type = ConfidenceMaps, SegmentationInfo
        self.confidence_pub = self.create_publisher(ConfidenceMaps, "~/confidence", 2)  # large: few queued
        self.camera_info_pub = self.create_publisher(CameraInfo, "~/camera_info", 10)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self.info_pub = self.create_publisher(SegmentationInfo, "~/label_info", latched)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        image_qos = qos_profile_sensor_data if self.node_config.image_qos == "sensor_data" else \
            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        if self.node_config.use_compressed:
            self.create_subscription(CompressedImage, "image/compressed", self._on_image, image_qos)
        else:
            self.create_subscription(Image, "image", self._on_image, image_qos)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos_profile_sensor_data)
        self.create_subscription(String, "labels", self._on_label_text, 10)
        self.create_subscription(LabelQuery, "~/label_query", self._on_label_query, 10)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(self.node_config.diagnostics_period, self._publish_diagnostics)

        self.segmenter.label_encoder.should_stop = self._stop.is_set  # Ctrl-C during a long text forward
        if initial_labels:
            self._submit(initial_labels, None, None, "labels parameter")
        self._worker = threading.Thread(target=self._run_worker, name="lseg_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(f"lseg_node ready: {self.segmenter.description} on {self.segmenter.device}; "
                               f"labels {initial_labels}")

    # ------------------------------------------------------------- callbacks
    def _on_image(self, msg) -> None:
        with self._lock:
            self.counters.frames_in += 1
            if self._slot is not None:
                self.counters.dropped += 1
            self._slot = (msg, time.perf_counter())
            self._lock.notify()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        if msg.width == 0 or msg.height == 0 or len(msg.k) != 9 or msg.k[0] == 0:
            self.counters.rejected_camera_info += 1
            self.get_logger().error(f"camera_info rejected: size {msg.width}x{msg.height}, K {list(msg.k)}; "
                                    "need a non-zero size and focal length", throttle_duration_sec=5.0)
            return
        self._camera_info = msg

    def _on_label_text(self, msg: String) -> None:
        self._submit(parse_label_text(msg.data), None, None, "labels topic", allow_empty=False)

    def _on_label_query(self, msg) -> None:
        names = [spec.name for spec in msg.labels]
        prompts = [list(spec.prompts) for spec in msg.labels]
        thresholds = [None if math.isnan(spec.threshold) or spec.threshold == 0 else float(spec.threshold)
                      for spec in msg.labels]
        self._submit(names, prompts, thresholds, "label_query", allow_empty=False)

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        """Validate every parameter of the request first; apply only if all pass (atomic)."""
        changes = []
        try:
            for parameter in parameters:
                if parameter.name == "labels":
                    labels = _label_list(parameter.value)
                    if labels:
                        self.segmenter.validate_labels(labels)
                    changes.append(("labels", labels))
                elif parameter.name in ("threshold", "overlay_alpha"):
                    if not isinstance(parameter.value, (int, float)) or isinstance(parameter.value, bool) \
                            or not 0.0 <= float(parameter.value) <= 1.0:
                        raise ValueError(f"{parameter.name} {parameter.value!r} out of range; accepted: [0, 1]")
                    changes.append((parameter.name, float(parameter.value)))
        except ValueError as error:
            self.counters.rejected_queries += 1
            self.get_logger().error(f"parameter change rejected: {error}")
            return SetParametersResult(successful=False, reason=str(error))
        for name, value in changes:
            if name == "labels":
                self._submit(value, None, None, "labels parameter")
            elif name == "threshold":
                self.segmenter.config.threshold = value
                with self._lock:  # re-resolve default thresholds, unless another label set is waiting
                    if self._pending_labels is None and self._active_request is not None:
                        self._pending_labels = self._active_request
                        self._lock.notify()
            else:
                self.node_config.overlay_alpha = value
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------- labels
    def _submit(self, names, descriptions, thresholds, source: str, allow_empty: bool = True) -> None:
        """Validate a label set now (cheap) and hand it to the worker (text forward there).

        An empty set from the labels parameter pauses segmentation; from a topic it is a bad
        query (rejected, the current labels stay)."""
        if not names and allow_empty:
            self.get_logger().warning(f"{source}: empty label set; segmentation paused until labels arrive")
            self._submit_request(LabelRequest([], [], [], source))
            return
        try:
            checked_names, checked_descriptions, _ = self.segmenter.validate_labels(names, descriptions, thresholds)
        except ValueError as error:
            self.counters.rejected_queries += 1
            self.get_logger().error(f"{source}: label set rejected: {error}")
            return
        self._submit_request(LabelRequest(checked_names, checked_descriptions,
                                          list(thresholds) if thresholds else [None] * len(checked_names), source))

    def _submit_request(self, request: LabelRequest) -> None:
        with self._lock:
            self._pending_labels = request
            self._lock.notify()

    def _apply_pending_labels(self) -> None:
        with self._lock:
            request, self._pending_labels = self._pending_labels, None
        if request is None:
            return
        if not request.names:
            self.segmenter.label_set = None
            with self._lock:
                self._active_request = None
            self._publish_label_info(self._latest_header)  # an empty set: nothing is segmented
            return
        try:
            self.segmenter.set_labels(request.names, request.descriptions, request.thresholds)
        except (ValueError, InterruptedError) as error:
            self.counters.rejected_queries += 1
            self.get_logger().error(f"{request.source}: label set not applied: {error}")
            return
        with self._lock:
            self._active_request = request
        self.get_logger().info(f"labels from {request.source}: {request.names}")
        self._publish_label_info(self._latest_header)

    def _publish_label_info(self, header) -> None:
        info = self._info_type()
        if header is not None:
            info.header = header
        info.labels = self.segmenter.labels
        info.colors = [ColorRGBA(r=r / 255.0, g=g / 255.0, b=b / 255.0, a=1.0)
                       for r, g, b in label_colors(len(info.labels))]
        info.unknown_value = self.segmenter.config.unknown_value
        info.model = self.segmenter.description
        self.info_pub.publish(info)

    # ---------------------------------------------------------------- worker
    def _run_worker(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                while self._slot is None and self._pending_labels is None and not self._stop.is_set():
                    self._lock.wait(timeout=0.1)
                frame, self._slot = self._slot, None
            try:
                self._apply_pending_labels()
                if frame is not None and not self._stop.is_set():
                    self._process(*frame)
            except Exception as error:  # the node never dies on a frame or a label set
                if self._stop.is_set() or not self.context.ok():
                    return  # shutting down: publishers may already be invalid
                self.counters.failed += 1
                self.get_logger().error(f"worker step failed: {type(error).__name__}: {error}",
                                        throttle_duration_sec=1.0)

    def _process(self, msg, receive_time: float) -> None:
        try:
            if isinstance(msg, CompressedImage):
                rgb = compressed_to_rgb(msg, max_pixels=self.node_config.max_image_pixels)
            else:
                rgb = image_to_rgb(msg, max_pixels=self.node_config.max_image_pixels)
        except ImageConversionError as error:
            self.counters.rejected_frames += 1
            self.get_logger().error(f"frame rejected: {error}", throttle_duration_sec=1.0)
            return
        if self.segmenter.label_set is None:
            self.get_logger().warning("no labels set: frame not segmented; publish labels on 'labels' or "
                                   "'~/label_query' or set the labels parameter", throttle_duration_sec=5.0)
            return
        want_confidences = self.confidence_pub.get_subscription_count() > 0
        start = time.perf_counter()
        result = self.segmenter.segment(rgb, return_confidences=want_confidences)
        inference_s = time.perf_counter() - start
        header = msg.header
        self._latest_header = header
        encoding = "mono8" if result.mask.dtype == np.uint8 else "mono16"
        self.mask_pub.publish(mask_to_image_msg(result.mask, header, encoding))
        if self.overlay_pub.get_subscription_count() > 0:
            colors = label_colors(len(result.labels))
            blended = overlay(rgb, result.mask, colors, self.node_config.overlay_alpha) \
                if result.mask.shape == rgb.shape[:2] else _resized_overlay(rgb, result.mask, colors,
                                                                            self.node_config.overlay_alpha)
            self.overlay_pub.publish(rgb_to_image_msg(blended, header))
        if want_confidences:
            maps = self._confidence_type()
            maps.header = header
            maps.labels = result.labels
            maps.maps = [float_map_to_image_msg(c, header) for c in result.confidences]
            self.confidence_pub.publish(maps)
        if self._camera_info is not None:
            height, width = result.mask.shape
            info = scale_camera_info(self._camera_info, width, height)
            info.header = header
            self.camera_info_pub.publish(info)
        self.counters.processed += 1
        _push(self.counters.inference_s, inference_s)
        _push(self.counters.end_to_end_s, time.perf_counter() - receive_time)

    # ----------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        counters = self.counters
        problems = counters.rejected_frames + counters.failed + counters.rejected_queries + counters.rejected_camera_info
        new_problems = problems - self._diagnostics_seen[0]
        new_processed = counters.processed - self._diagnostics_seen[1]
        self._diagnostics_seen = (problems, counters.processed)
        status = DiagnosticStatus(name=f"{self.get_fully_qualified_name()}: segmentation",
                                  hardware_id=str(self.segmenter.device))
        if self.segmenter.label_set is None:
            status.level, status.message = DiagnosticStatus.WARN, "waiting for labels"
        elif new_problems and not new_processed:
            status.level, status.message = DiagnosticStatus.ERROR, "input rejected or failing, nothing processed"
        elif new_problems:
            status.level, status.message = DiagnosticStatus.WARN, "some input rejected or failing"
        else:
            status.level, status.message = DiagnosticStatus.OK, "running"
        values = {
            "frames_in": counters.frames_in, "processed": counters.processed, "dropped": counters.dropped,
            "rejected_frames": counters.rejected_frames, "rejected_queries": counters.rejected_queries,
            "rejected_camera_info": counters.rejected_camera_info, "failed": counters.failed,
            "inference_ms_mean": _mean_ms(counters.inference_s), "end_to_end_ms_mean": _mean_ms(counters.end_to_end_s),
            "labels": ", ".join(self.segmenter.labels), "device": str(self.segmenter.device),
            "model": self.segmenter.description,
        }
        status.values = [KeyValue(key=key, value=str(value)) for key, value in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

    def destroy_node(self) -> None:
        if not hasattr(self, "_worker"):  # construction failed half-way
            return super().destroy_node()
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._worker.is_alive():
            self._worker.join(timeout=10.0)
        if self._worker.is_alive():
            self.get_logger().warning("worker still busy after 10 s; shutting down without it")
        super().destroy_node()


def _resized_overlay(rgb, mask, colors, alpha):
    from PIL import Image as PilImage

    resized = np.asarray(PilImage.fromarray(rgb).resize((mask.shape[1], mask.shape[0]), PilImage.BILINEAR))
    return overlay(resized, mask, colors, alpha)


def _label_list(value) -> List[str]:
    """The labels parameter's value as a list of names; ValueError names a wrong type."""
    if value is None:
        return []
    if isinstance(value, str):
        return parse_label_text(value)
    if isinstance(value, (list, tuple)) and all(isinstance(label, str) for label in value):
        return list(value)
    raise ValueError(f"labels must be a string array (or 'door, chair'), got {value!r}")


def _push(window: list, value: float, size: int = 100) -> None:
    window.append(value)
    if len(window) > size:
        del window[0]


def _mean_ms(window: list) -> str:
    return f"{1000.0 * sum(window) / len(window):.1f}" if window else "n/a"


def main(args=None) -> int:
    return run_node(LsegNode, "lseg_node", args, start_errors=(WeightsError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
