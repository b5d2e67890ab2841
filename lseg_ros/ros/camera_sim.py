"""``camera_sim``: a small camera simulator publishing ``image`` and ``camera_info``.

Sources (parameter ``source``):
  scenes          generated labelled scenes (lseg_ros.data.scenes), deterministic per seed,
                  with their depth on ``depth`` (registered to the image, as RealSense's
                  aligned_depth_to_color; same header) unless depth_encoding is none
  /path/to/dir    every .png/.jpg/.jpeg/.bmp in the folder, sorted
  /path/to/file   an animated GIF/APNG/TIFF read with Pillow, or any video OpenCV can
                  read when opencv-python is installed
Frames loop until ``max_frames`` (0 = forever) have been published at ``rate`` Hz.
"""
from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from ..config import setting, field_docs, from_dict
from .runner import run_node
from .conversions import metres_to_depth_msg, rgb_to_image_msg

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class CameraSimConfig:
    source: str = setting("scenes | a folder of images | an animated image or video file.", "scenes")
    rate: float = setting("Frames per second.", 5.0)
    width: int = setting("Output width for generated scenes (files keep their size).", 320)
    height: int = setting("Output height for generated scenes.", 240)
    seed: int = setting("Seed of the generated scenes.", 0)
    max_frames: int = setting("Stop publishing after this many frames; 0 = forever.", 0)
    frame_id: str = setting("frame_id of the published headers.", "camera_optical_frame")
    horizontal_fov_deg: float = setting("Horizontal field of view of the pinhole camera_info.", 60.0)
    qos: str = setting("Publisher QoS: reliable (matches every subscriber) | sensor_data (best effort).", "reliable")
    depth_encoding: str = setting("Depth of generated scenes on `depth`: 16UC1 (millimetres, as RealSense) | "
                                  "32FC1 (metres) | none (no depth).", "16UC1")

    def validate(self) -> "CameraSimConfig":
        if not self.rate > 0:
            raise ValueError(f"camera_sim: rate={self.rate!r} must be > 0 frames per second")
        if self.width < 8 or self.height < 8:
            raise ValueError(f"camera_sim: size {self.width}x{self.height} must be at least 8x8")
        if self.qos not in ("reliable", "sensor_data"):
            raise ValueError(f"camera_sim: qos={self.qos!r}; accepted: reliable, sensor_data")
        if self.depth_encoding not in ("16UC1", "32FC1", "none"):
            raise ValueError(f"camera_sim: depth_encoding={self.depth_encoding!r}; accepted: 16UC1, 32FC1, none")
        return self


def frame_source(config: CameraSimConfig) -> Iterator[Tuple[np.ndarray, Optional[np.ndarray], Optional[object]]]:
    """Endless (RGB uint8 frame, ground-truth mask or None, :class:`~lseg_ros.data.scenes.SceneGeometry`
    or None) from the configured source."""
    if config.source == "scenes":
        from ..data.scenes import generate_scene_stream

        return generate_scene_stream(config.seed, (config.height, config.width), fov_deg=config.horizontal_fov_deg)
    path = Path(config.source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"camera_sim: no {'/'.join(IMAGE_SUFFIXES)} images in folder {str(path)!r}")
        return itertools.cycle([(_read_rgb(p), None, None) for p in files])
    if path.is_file():
        return itertools.cycle([(frame, None, None) for frame in _read_video(path)])
    raise ValueError(f"camera_sim: source {config.source!r} is neither 'scenes', a folder nor a file")


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image as PilImage

    with PilImage.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _read_video(path: Path) -> Iterator[np.ndarray]:
    from PIL import Image as PilImage, ImageSequence, UnidentifiedImageError

    try:
        with PilImage.open(path) as image:
            frames = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]
        return iter(frames)
    except UnidentifiedImageError:
        pass
    try:
        import cv2  # optional: only for real video files
    except ImportError:
        raise ValueError(f"camera_sim: {str(path)!r} is not an image Pillow can read and OpenCV "
                         "(pip install opencv-python-headless) is not installed for video files") from None
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(bgr[:, :, ::-1].copy())
    if not frames:
        raise ValueError(f"camera_sim: no frames could be read from {str(path)!r}")
    return iter(frames)


def pinhole_camera_info(width: int, height: int, fov_deg: float) -> CameraInfo:
    """The CameraInfo of :func:`lseg_ros.data.scenes.pinhole_k` (the generated depth's camera)."""
    from ..data.scenes import pinhole_k

    k = pinhole_k(width, height, fov_deg)
    focal = k[0]
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.d = [0.0] * 5
    info.k = k
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [focal, 0.0, width / 2, 0.0, 0.0, focal, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


class CameraSim(Node):
    def __init__(self, node_name: str = "camera_sim", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        for name, (_, default, doc) in field_docs(CameraSimConfig).items():
            self.declare_parameter(name, default)
        values = {name: self.get_parameter(name).value for name in field_docs(CameraSimConfig)}
        self.config = from_dict(CameraSimConfig, values, source="camera_sim parameters").validate()
        self.frames = frame_source(self.config)
        qos = qos_profile_sensor_data if self.config.qos == "sensor_data" else QoSProfile(depth=1)
        self.image_pub = self.create_publisher(Image, "image", qos)
        self.info_pub = self.create_publisher(CameraInfo, "camera_info", qos)
        self.depth_pub = self.create_publisher(Image, "depth", qos) \
            if self.config.depth_encoding != "none" and self.config.source == "scenes" else None
        self.published = 0
        #: ground-truth masks of generated scenes by header stamp (ns), newest 100
        self.ground_truth: Dict[int, np.ndarray] = {}
        #: their SceneGeometry by header stamp (ns), newest 100
        self.geometry: Dict[int, object] = {}
        self.done = False
        self.create_timer(1.0 / self.config.rate, self.publish_next)
        self.get_logger().info(self.startup_line())

    def startup_line(self) -> str:
        """What this camera publishes: topics, source, size, rate, frame count."""
        topics = [pub.topic_name for pub in (self.image_pub, self.info_pub, self.depth_pub) if pub is not None]
        size = f"{self.config.width}x{self.config.height}" if self.config.source == "scenes" else "files' own size"
        frames = f"{self.config.max_frames} frames" if self.config.max_frames else "until stopped"
        return (f"camera_sim publishing {', '.join(topics)} ({self.config.qos}): source {self.config.source}, "
                f"{size}, {self.config.rate:g} Hz, {frames}")

    def publish_next(self) -> None:
        if self.config.max_frames and self.published >= self.config.max_frames:
            self.done = True
            return
        self.publish_frame(*next(self.frames))

    def publish_frame(self, rgb: np.ndarray, ground_truth: Optional[np.ndarray] = None,
                      geometry: Optional[object] = None) -> int:
        """Publish one frame (depth first, then camera_info, then the image) stamped now; its
        stamp in ns."""
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.config.frame_id)
        image = rgb_to_image_msg(rgb, header)
        info = pinhole_camera_info(rgb.shape[1], rgb.shape[0], self.config.horizontal_fov_deg)
        info.header = header
        if self.depth_pub is not None and geometry is not None:  # first: a node pairing by stamp has it
            self.depth_pub.publish(metres_to_depth_msg(geometry.depth, header, self.config.depth_encoding))
        self.info_pub.publish(info)
        self.image_pub.publish(image)
        self.published += 1
        key = header.stamp.sec * 10**9 + header.stamp.nanosec
        for store, value in ((self.ground_truth, ground_truth), (self.geometry, geometry)):
            if value is not None:
                store[key] = value
                if len(store) > 100:
                    store.pop(next(iter(store)))
        return key


def main(args=None) -> int:
    return run_node(CameraSim, "camera_sim", args)


if __name__ == "__main__":
    sys.exit(main())
