"""The small LSeg model shipped with the package, trained here on generated scenes.

It knows only the classes of :mod:`lseg_ros.data.scenes` ("red disk", "checkerboard", ...)
and exists so that the demo and the end-to-end tests show correct masks offline. For real
scenes use real weights (``pretrained:=openai`` with dense_clip, or the LSeg checkpoint).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from .config import SegmenterConfig

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEMO_CONFIG = WEIGHTS_DIR / "scenes_lseg_tiny.yaml"
DEMO_WEIGHTS = WEIGHTS_DIR / "scenes_lseg_tiny.safetensors"


#: the ViL-Seg model trained here from captioned scenes alone (no masks)
VILSEG_CONFIG = WEIGHTS_DIR / "scenes_vilseg_tiny.yaml"
VILSEG_WEIGHTS = WEIGHTS_DIR / "scenes_vilseg_tiny.safetensors"


def demo_model_config(**overrides) -> Optional[SegmenterConfig]:
    """The shipped model's inference config (weights path filled in), or None if not shipped."""
    return _shipped(DEMO_CONFIG, DEMO_WEIGHTS, overrides)


def vilseg_model_config(**overrides) -> Optional[SegmenterConfig]:
    """The shipped ViL-Seg model's inference config (weights path filled in), or None."""
    return _shipped(VILSEG_CONFIG, VILSEG_WEIGHTS, overrides)


def _shipped(config_path: Path, weights_path: Path, overrides) -> Optional[SegmenterConfig]:
    if not (config_path.is_file() and weights_path.is_file()):
        return None
    config = SegmenterConfig.from_yaml(config_path)
    config.pretrained = str(weights_path)
    for name, value in overrides.items():
        setattr(config, name, value)
    return config.validate()
