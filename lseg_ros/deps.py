"""Start-up check for the Python packages the engine needs that rosdep cannot install.

torch, torchvision, open_clip_torch and safetensors have no usable rosdep keys (and torch
must match the platform's CUDA: JetPack's build on a Jetson), so a ROS user may start the
node without them. They then get one line naming what to install, not a
ModuleNotFoundError traceback. `torch_build_summary` names the torch build the node runs
on (a PyPI torch pulled over JetPack's shows here as "CUDA usable: no").
"""
from __future__ import annotations

import importlib
import sys

#: (module imported, pip package that provides it)
ENGINE_PACKAGES = (("torch", "torch"), ("torchvision", "torchvision"), ("open_clip", "open_clip_torch"),
                   ("timm", "timm"), ("safetensors", "safetensors"))


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
              f"them with pip ('pip install {names}'; on a Jetson, torch and torchvision built for your "
              f"JetPack, not PyPI's); see docs/install.md", file=sys.stderr)
        raise SystemExit(2)


def torch_build_summary(torch_module=None) -> str:
    """One line naming the torch build and whether CUDA is usable, e.g.
    'torch 2.5.0a0+nv24.08 (CUDA 12.6, CUDA usable: yes, device Orin)'.

    ``torch_module`` defaults to the imported torch (a stand-in can be passed for tests).
    Never raises: a CUDA query that fails is reported as the reason CUDA is not usable.
    """
    if torch_module is None:
        try:
            import torch as torch_module
        except ImportError as error:
            return f"torch not installed ({error})"
    version = getattr(torch_module, "__version__", "unknown")
    build_info = getattr(torch_module, "version", None)
    hip = getattr(build_info, "hip", None)
    cuda = getattr(build_info, "cuda", None)
    if hip:
        build = f"ROCm {hip}"
    elif cuda:
        build = f"CUDA {cuda}"
    else:
        return f"torch {version} (cpu build, CUDA usable: no)"
    try:
        usable = bool(torch_module.cuda.is_available())
        detail = (f"device {torch_module.cuda.get_device_name(0)}" if usable
                  else "no CUDA device or driver found")
    except Exception as error:  # a broken driver or a build for another platform
        usable, detail = False, f"{type(error).__name__}: {error}".splitlines()[0]
    return f"torch {version} ({build}, CUDA usable: {'yes' if usable else 'no'}, {detail})"
