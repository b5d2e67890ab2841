"""lseg_ros: language-driven semantic segmentation for ROS 2.

The core (config, models, text cache, segmentation, training, evaluation, CLI) imports
no rclpy; the ROS layer lives in :mod:`lseg_ros.ros`. ``lseg_ros.msg`` holds the
generated message classes once the interfaces are built.
"""
# The generated message package (lseg_ros.msg) may be installed in another directory
# named lseg_ros (a colcon install space or the virtual environment); let both merge.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"

from .config import SegmenterConfig  # noqa: E402


def __getattr__(name):
    # Lazy so that importing lseg_ros.config or lseg_ros.msg does not import torch models.
    if name == "Segmenter":
        from .segmenter import Segmenter

        return Segmenter
    raise AttributeError(f"module 'lseg_ros' has no attribute {name!r}")


__all__ = ["Segmenter", "SegmenterConfig", "__version__"]
