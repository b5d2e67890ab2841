"""Segmentation backends (registered by name) and their common interface."""
from .base import SegmentationBackend, available_backends, build_backend, register_backend

__all__ = ["SegmentationBackend", "available_backends", "build_backend", "register_backend"]
