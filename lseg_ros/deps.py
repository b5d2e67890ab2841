"""Start-up check for the Python packages the engine needs that rosdep cannot install.

torch, open_clip_torch and safetensors have no rosdep keys (and torch must match the
platform's CUDA: JetPack's build on a Jetson), so a ROS user may start the node without
them. They then get one line naming what to install, not a ModuleNotFoundError traceback.
"""
from __future__ import annotations

import importlib
import sys

#: (module imported, pip package that provides it)
ENGINE_PACKAGES = (("torch", "torch"), ("open_clip", "open_clip_torch"), ("timm", "timm"),
                   ("safetensors", "safetensors"))


def missing_packages(packages=ENGINE_PACKAGES):
    """[(pip package, import error)] for each package that cannot be imported."""
    missing = []
    for module, package in packages:
        try:
            importlib.import_module(module)
        except ImportError as error:
            missing.append((package, error))
    return missing


def require_engine_packages(program: str, packages=ENGINE_PACKAGES) -> None:
    """Exit with code 2 and one line on stderr when an engine package is missing."""
    missing = missing_packages(packages)
    if missing:
        names = " ".join(package for package, _ in missing)
        print(f"{program}: cannot start: Python package(s) {names} not installed ({missing[0][1]}); install "
              f"them with pip ('pip install {names}'; on a Jetson, torch from NVIDIA's build for your JetPack); "
              f"see the README's setup section", file=sys.stderr)
        raise SystemExit(2)
