"""One camera's share of lseg_node: its input buffer, pairing state, outputs and counters.

lseg_node serves one camera (topics ``image``, ``~/mask``, ...) or, with the ``cameras``
parameter, several (``front/image``, ``~/front/mask``, ...). Either way the node holds a
list of :class:`CameraStream`; the single camera is the stream with the empty name. The
worker takes the newest frame of every stream that has one and segments them in one
batched forward (:class:`~lseg_ros.ros.worker.FrameWorker`); each result goes out on its own stream's
publishers, stamped with its own frame's header.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..stamps import StampBuffer

#: every per-camera output, ``~/<output>`` (one camera) or ``~/<name>/<output>`` (several)
CAMERA_OUTPUTS = ("mask", "overlay", "confidence", "confidence_image", "camera_info", "points", "obstacle_points",
                  "objects", "markers", "embeddings")


@dataclass
class Counters:
    frames_in: int = 0
    processed: int = 0
    dropped: int = 0
    rejected_frames: int = 0
    rejected_queries: int = 0
    refused_calls: int = 0  # of rejected_queries: refused and answered to their caller (no health problem)
    failed: int = 0
    rejected_camera_info: int = 0
    superseded_label_sets: int = 0
    depth_in: int = 0
    depth_matched: int = 0
    depth_unmatched: int = 0  # frames that wanted depth, with depth arriving, but none within depth_slop
    rejected_depth: int = 0
    embeddings_due: int = 0  # processed frames counted towards embeddings_every_n
    inference_s: List[float] = field(default_factory=list)
    end_to_end_s: List[float] = field(default_factory=list)

    def input_problems(self) -> int:
        """Frames, camera_info and depth rejected, and failed steps: what makes a camera's
        diagnostics WARN or ERROR."""
        return self.rejected_frames + self.failed + self.rejected_camera_info + self.rejected_depth


@dataclass
class CameraStream:
    """The state of one camera. ``name`` is "" for the node's single camera (no ``cameras``
    parameter): its topics are then exactly ``image`` and ``~/mask``, without a prefix."""

    name: str
    counters: Counters  # the node's own Counters for the single camera, one per camera otherwise
    depth: StampBuffer  # (stamp, depth Image) of the newest depth messages
    publishers: Dict[str, Any] = field(default_factory=dict)  # CAMERA_OUTPUTS -> rclpy Publisher
    outputs: Any = None  # its CameraOutputs (outputs.py: publishes its results), made at configure
    slot: Optional[tuple] = None  # (msg, receive_time) of the newest unprocessed frame (the node's lock)
    camera_info: Any = None  # the newest valid CameraInfo
    image_sub: Any = None
    subscriptions: list = field(default_factory=list)  # image, camera_info, depth (activate / deactivate)
    frequency: Any = None  # FrequencyCheck of the image input (made at activate)
    stamps: Any = None  # StampCheck of the image input
    last_frame_at: float = 0.0  # time.monotonic() of the last frame (activation counts as one)
    diagnostics_seen: tuple = (0, 0, 0, 0)  # (problems, processed, depth unmatched, matched) at the last one

    def input_topic(self, topic: str) -> str:
        """The relative input topic: ``image`` for the single camera, ``<name>/image`` otherwise."""
        return f"{self.name}/{topic}" if self.name else topic

    def output_topic(self, topic: str) -> str:
        """The node's private output ``topic`` ("~/mask") of this camera: ``~/mask`` for the
        single camera, ``~/<name>/mask`` otherwise."""
        if not topic.startswith("~/"):
            raise ValueError(f"camera output topic {topic!r}: expected a private topic, ~/<output>")
        return f"~/{self.name}/{topic[2:]}" if self.name else topic

    @property
    def log_prefix(self) -> str:
        """What log lines about this camera start with ("" for the single camera)."""
        return f"camera {self.name}: " if self.name else ""

    def put(self, frame: tuple) -> bool:
        """Put ``frame`` in the one-slot buffer; True when it replaced one (a dropped frame).
        The caller holds the node's frame lock."""
        replaced = self.slot is not None
        self.slot = frame
        return replaced

    def take(self) -> Optional[tuple]:
        """The waiting frame, leaving the slot empty (the caller holds the frame lock)."""
        frame, self.slot = self.slot, None
        return frame

    def subscribed(self, output: str) -> bool:
        return self.publishers[output].get_subscription_count() > 0


@dataclass
class CameraFrame:
    """A frame taken from a stream's slot and converted: what the batched forward segments."""

    stream: CameraStream
    header: Any  # std_msgs/Header of the source image: every output of it carries it
    rgb: Any  # HxWx3 uint8
    receive_time: float  # time.perf_counter() on arrival (end-to-end latency)


@dataclass
class WantedOutputs:
    """What one camera's subscribers want from its frame's result."""

    confidence_maps: bool = False
    confidence_image: bool = False
    spatial: set = field(default_factory=set)  # points, obstacles, objects (depth-based, see _publish_spatial)
    embeddings: bool = False

    @property
    def confidences(self) -> bool:
        return self.confidence_maps or self.confidence_image or bool(self.spatial & {"points", "objects"})
