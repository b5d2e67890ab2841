"""lseg_node's outputs. One camera's (:class:`CameraOutputs`): its publishers, what its
subscribers want of a frame, and publishing a frame's result on them (the mapping outputs
included); the shared ``~/label_info`` (:class:`LabelInfoOutput`).

The node makes one :class:`CameraOutputs` per camera stream at configure. For each frame the
worker asks :meth:`CameraOutputs.wanted` once (before the forward, so that nothing is
computed for outputs without subscribers), then :meth:`CameraOutputs.publish` sends every
output of the result, each stamped with the frame's header.
"""
from __future__ import annotations

from typing import List

import numpy as np
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import ColorRGBA, Header

from ..geometry import Intrinsics, labelled_points, points_stride
from ..objects import find_objects
from ..stamps import stamp_ns
from ..validation import shorten, split_synonyms
from ..viz import label_colors, overlay
from .cameras import CameraFrame, CameraStream, WantedOutputs
from .conversions import (depth_image_to_metres, feature_map_msg, float_map_to_image_msg, mask_to_image_msg,
                          object_array_msg, object_markers, rgb_to_image_msg, scale_camera_info, semantic_cloud_msg,
                          xyz_cloud_msg)

#: depth of the latched ~/label_info history (label sets of recent masks for late subscribers)
LABEL_INFO_HISTORY = 10


class LabelInfoOutput:
    """~/label_info (SegmentationInfo, latched with history: a late subscriber still gets the
    label sets of recent masks): published with the first frame segmented with a new label
    set, before that frame's outputs, or when an empty set pauses segmentation. ``node``'s
    ``segmenter`` (read at each message) gives the model and unknown value."""

    def __init__(self, node, publisher) -> None:
        from ..msg import SegmentationInfo

        self.node, self._info_type = node, SegmentationInfo
        latched = QoSProfile(depth=LABEL_INFO_HISTORY, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self.publisher = publisher(SegmentationInfo, "~/label_info", latched)
        self.generation = 0  # label set of the last message

    def publish(self, header, labels: List[str], generation: int) -> None:
        info = self._info_type()
        info.header = header
        info.generation = generation
        info.labels = list(labels)
        info.colors = [ColorRGBA(r=r / 255.0, g=g / 255.0, b=b / 255.0, a=1.0)
                       for r, g, b in label_colors(len(info.labels))]
        info.unknown_value = self.node.segmenter.config.unknown_value
        info.model = self.node.segmenter.description
        self.publisher.publish(info)
        self.generation = generation

    def publish_cleared(self, generation: int) -> None:
        """The empty label set (nothing is segmented: no frame to stamp it with, so now)."""
        header = Header()
        header.stamp = self.node.get_clock().now().to_msg()
        self.publish(header, [], generation)


class CameraOutputs:
    """The outputs of ``stream``: ``~/mask`` ... for the single camera, ``~/<name>/mask`` ...
    for several. ``node`` is the lseg node (its ``segmenter`` and ``_log``), ``config`` its
    NodeConfig (read at each frame: overlay_alpha and obstacle_labels change at run time),
    ``make_publisher(msg_type, topic, qos)`` makes a publisher the node destroys at cleanup."""

    def __init__(self, node, stream: CameraStream, config, make_publisher) -> None:
        from visualization_msgs.msg import MarkerArray

        from ..msg import ConfidenceMaps, FeatureMap, Object, ObjectArray

        self.node, self.stream, self.config = node, stream, config
        self._confidence_type, self._feature_map_type = ConfidenceMaps, FeatureMap
        self._object_types = (ObjectArray, Object)

        def publisher(msg_type, topic: str, qos):
            return make_publisher(msg_type, stream.output_topic(topic), qos)  # ~/<name>/mask with several cameras

        stream.publishers = {
            "mask": publisher(Image, "~/mask", 10),
            "overlay": publisher(Image, "~/overlay", 10),
            "confidence": publisher(ConfidenceMaps, "~/confidence", 2),  # large: few queued
            # rviz cannot show ConfidenceMaps: the best label's probability per pixel, as an image
            "confidence_image": publisher(Image, "~/confidence_image", 2),
            "camera_info": publisher(CameraInfo, "~/camera_info", 10),
            # mapping and navigation outputs (each computed only while subscribed)
            "points": publisher(PointCloud2, "~/points", 2),
            "obstacle_points": publisher(PointCloud2, "~/obstacle_points", 2),
            "objects": publisher(ObjectArray, "~/objects", 10),
            "markers": publisher(MarkerArray, "~/markers", 10),
            "embeddings": publisher(FeatureMap, "~/embeddings", 2),
        }

    def wanted(self) -> WantedOutputs:
        """The outputs that have subscribers (counts the frame towards embeddings_every_n)."""
        stream = self.stream
        wanted = WantedOutputs(confidence_maps=stream.subscribed("confidence"),
                               confidence_image=stream.subscribed("confidence_image"),
                               spatial=self._wanted_spatial())
        if stream.subscribed("embeddings"):
            wanted.embeddings = stream.counters.embeddings_due % self.config.embeddings_every_n == 0
            stream.counters.embeddings_due += 1
        return wanted

    def _wanted_spatial(self) -> set:
        """The depth-based outputs that have subscribers: points, obstacles, objects (also for markers)."""
        stream, wanted = self.stream, set()
        if stream.subscribed("points"):
            wanted.add("points")
        if stream.subscribed("obstacle_points") and self.config.obstacle_labels:
            wanted.add("obstacles")
        if stream.subscribed("objects") or stream.subscribed("markers"):
            wanted.add("objects")
        return wanted

    def publish(self, frame: CameraFrame, wanted: WantedOutputs, result) -> None:
        """The outputs of ``result``, each stamped with the frame's header."""
        stream, header, rgb, publishers = self.stream, frame.header, frame.rgb, self.stream.publishers
        alpha = self.config.overlay_alpha
        encoding = "mono8" if result.mask.dtype == np.uint8 else "mono16"
        publishers["mask"].publish(mask_to_image_msg(result.mask, header, encoding))
        if stream.subscribed("overlay"):
            colors = label_colors(len(result.labels))
            blended = overlay(rgb, result.mask, colors, alpha) if result.mask.shape == rgb.shape[:2] else \
                _resized_overlay(rgb, result.mask, colors, alpha)
            publishers["overlay"].publish(rgb_to_image_msg(blended, header))
        # the best label's probability per pixel (HxW at the confidence maps' size), computed once
        best = result.confidences.max(axis=0) if result.confidences is not None and \
            (wanted.confidence_image or wanted.spatial) else None
        if wanted.confidence_image:  # 32FC1, at the confidence maps' size (see ConfidenceMaps.scale)
            publishers["confidence_image"].publish(float_map_to_image_msg(best, header))
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
            segmenter = self.node.segmenter
            publishers["embeddings"].publish(feature_map_msg(
                self._feature_map_type, result.embeddings, header, segmenter.description, result.embedding_scale,
                segmenter.logit_scale))
        if wanted.spatial:
            self._publish_spatial(wanted.spatial, result, rgb, header, camera_info, best)

    # ------------------------------------------------------- mapping outputs
    def _paired_depth(self, header, camera_info) -> tuple:
        """(depth in metres, color intrinsics) for this frame, or (None, None): no depth within
        depth_slop (counted when depth is arriving), no camera_info, or a bad depth image."""
        stream, config, log = self.stream, self.config, self.node._log
        counters, prefix = stream.counters, stream.log_prefix
        if counters.depth_in == 0:
            return None, None  # no depth published: the node runs without 3D outputs
        depth_msg = stream.depth.nearest(stamp_ns(header.stamp), config.depth_slop)
        if depth_msg is None:
            counters.depth_unmatched += 1
            log("warning", f"{prefix}no depth image within depth_slop={config.depth_slop:g} s of "
                f"frame {header.stamp.sec}.{header.stamp.nanosec:09d}: no 3D outputs for it (depth and "
                "color stamps too far apart, or depth slower than color)", throttle=10.0, key=stream.name)
            return None, None
        counters.depth_matched += 1
        if camera_info is None:
            log("warning", f"{prefix}depth received but no camera_info yet: 3D outputs need the color "
                "camera's intrinsics (remap camera_info)", throttle=10.0, key=stream.name)
            return None, None
        try:
            depth_m = depth_image_to_metres(depth_msg, max_pixels=config.max_image_pixels)
            intrinsics = Intrinsics.from_k(camera_info.k, camera_info.width, camera_info.height)
        except ValueError as error:  # ImageConversionError too
            counters.rejected_depth += 1
            log("error", f"{prefix}depth rejected: {error}", throttle=1.0, key=stream.name)
            return None, None
        return depth_m, intrinsics

    def _publish_spatial(self, wanted: set, result, rgb, header, camera_info, best) -> None:
        """points, obstacle_points, objects and markers of a frame (``best``: the best label's
        probability per pixel, or None)."""
        nc, stream, publishers, log = self.config, self.stream, self.stream.publishers, self.node._log
        depth_m, intrinsics = self._paired_depth(header, camera_info)
        if depth_m is not None and wanted & {"points", "obstacles"}:
            include_unknown = "points" in wanted and nc.points_include_unknown
            stride = points_stride(result.mask.shape, nc.points_stride, nc.max_points)
            if stride != nc.points_stride:
                log("info", f"{stream.log_prefix}a {result.mask.shape[1]}x{result.mask.shape[0]} mask at "
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
                    log("warning", f"obstacle_labels {shorten(missing, 200)} are not in the label set "
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


def _resized_overlay(rgb, mask, colors, alpha):
    from PIL import Image as PilImage

    resized = np.asarray(PilImage.fromarray(rgb).resize((mask.shape[1], mask.shape[0]), PilImage.BILINEAR))
    return overlay(resized, mask, colors, alpha)
