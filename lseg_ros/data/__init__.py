"""Segmentation data: dataset readers, augmentation and synthetic scenes (no ROS)."""
from .datasets import (
    DATASETS,
    DatasetError,
    SegmentationDataset,
    build_dataset,
    load_class_names,
    load_reference_names,
)
from .transforms import EvalTransform, TrainTransform

_SCENE_NAMES = ("SCENE_CLASSES", "generate_scene", "generate_scene_stream",
                "write_generic_dataset")


def __getattr__(name):
    # Lazy so that `python -m lseg_ros.data.scenes` does not import scenes twice.
    if name in _SCENE_NAMES:
        from . import scenes

        return getattr(scenes, name)
    raise AttributeError(f"module 'lseg_ros.data' has no attribute {name!r}")


__all__ = [
    "DATASETS",
    "DatasetError",
    "EvalTransform",
    "SCENE_CLASSES",
    "SegmentationDataset",
    "TrainTransform",
    "build_dataset",
    "generate_scene",
    "generate_scene_stream",
    "load_class_names",
    "load_reference_names",
    "write_generic_dataset",
]
