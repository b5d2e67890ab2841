"""Building an engine from its settings, apart from running it (:class:`lseg_ros.segmenter.Segmenter`
runs what these build, as segment-anything's SamPredictor runs what build_sam built):

    runtime = resolve_runtime(config)          device, precision, threads; speed settings checked
    side = build_image_side(config, runtime)   the backend on the device and the image side as the
                                               frame path calls it: plain, int8-quantized, compiled,
                                               CUDA-graphed or an exported ONNX graph

Backends themselves come from the registry (:func:`lseg_ros.models.build_backend`).
:func:`use_onnx_image_side` is the one place an exported graph replaces the torch image side
(the node's ``runtime: onnxruntime`` and lseg-export's verification both use it).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List

import torch

from .acceleration import (PRECISIONS, CudaGraphForward, apply_mha_fastpath, apply_threads, quantize_image_side,
                           resolve_memory_format, resolve_mha_fastpath, resolve_precision)
from .config import SegmenterConfig
from .models import build_backend
from .models.base import SegmentationBackend
from .weights import check_finite


def resolve_device(name: str) -> torch.device:
    """The torch device a ``device`` setting names (auto: CUDA when usable, else the CPU);
    ValueError for one that does not exist here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"invalid device {name!r}; accepted: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use device:=cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} does not exist; {torch.cuda.device_count()} CUDA device(s) visible")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r}; accepted: auto, cpu, cuda, cuda:N")
    return device


@dataclass
class Runtime:
    """Where and how an engine runs, with every "auto" resolved for this machine."""

    device: torch.device
    precision: str  # fp32 | fp16 | bf16
    dtype: torch.dtype
    num_threads: int
    mha_fastpath: bool
    #: problems with the settings that do not stop the engine (the node logs them)
    warnings: List[str] = field(default_factory=list)


def resolve_runtime(config: SegmenterConfig) -> Runtime:
    """Device, precision, torch threads and the attention fast path for ``config`` (applied to
    this process: threads and fast path are global in torch); ValueError for speed settings
    that cannot go together here."""
    device = resolve_device(config.device)
    precision, warning = resolve_precision(config.precision, device)
    problems = []
    if warning:
        problems.append(warning)
        warnings.warn(warning, RuntimeWarning, stacklevel=3)
    if config.quantize == "int8" and (device.type != "cpu" or precision != "fp32"):
        raise ValueError(f"quantize 'int8' runs on the CPU in fp32 (torch.ao dynamic quantization); got device "
                         f"{device} with precision {precision}: use quantize none there")
    if config.compile == "cuda_graphs" and device.type != "cuda":
        raise ValueError(f"compile 'cuda_graphs' needs CUDA, device is {device}; use compile none or torch")
    if config.runtime == "onnxruntime" and (config.compile != "none" or config.quantize != "none"):
        raise ValueError(f"runtime onnxruntime runs the exported graph as it is: compile {config.compile!r} and "
                         f"quantize {config.quantize!r} apply to the torch runtime only; set them to none")
    threads = apply_threads(config.num_threads)
    fastpath = resolve_mha_fastpath(config.mha_fastpath, device)
    apply_mha_fastpath(fastpath)
    return Runtime(device, precision, PRECISIONS[precision], threads, fastpath, problems)


@dataclass
class ImageSide:
    """A built backend and the image side the frame path calls: ``image_forward`` (images
    [B, 3, h, w] -> embeddings [B, D, h', w'], the whole input) and ``window_forward`` (one
    sliding window)."""

    backend: SegmentationBackend
    image_forward: Callable
    window_forward: Callable
    memory_format: torch.memory_format
    #: linear layers converted to int8 (quantize: int8)
    quantized: int = 0
    #: torch parameters dropped because another runtime runs the image side
    released_parameters: int = 0

    def settings(self, runtime: Runtime, config: SegmenterConfig) -> Dict[str, object]:
        """What each speed setting became on this device ("auto" resolved), for logs and diagnostics."""
        return {"device": str(runtime.device), "precision": runtime.precision, "num_threads": runtime.num_threads,
                "mha_fastpath": "on" if runtime.mha_fastpath else "off",
                "memory_format": "channels_last" if self.memory_format == torch.channels_last else "contiguous",
                "quantize": f"int8 ({self.quantized} linear layers)" if self.quantized else "none",
                "compile": config.compile,
                "runtime": f"onnxruntime ({self.image_forward.providers[0]})"
                if config.runtime == "onnxruntime" else config.runtime}


def build_image_side(config: SegmenterConfig, runtime: Runtime) -> ImageSide:
    """The backend ``config`` names, with its weights, frozen, on ``runtime``'s device and
    dtype, and its image side as configured (memory format, int8, torch.compile, CUDA graphs
    or an exported graph)."""
    backend = build_backend(config)
    if config.input_resize == "mmseg" and not backend.drops_partial_patches:
        raise ValueError(f"input_resize 'mmseg' needs a backend that takes inputs of any size (dense_clip); "
                         f"backend {config.backend!r} needs patch multiples: use input_resize 'snap'")
    check_finite(backend, config.pretrained)
    backend.requires_grad_(False)
    backend = backend.to(runtime.device, runtime.dtype).eval()
    memory_format = resolve_memory_format(config.memory_format, backend, runtime.device)
    if memory_format == torch.channels_last:
        backend.to(memory_format=torch.channels_last)
    quantized = quantize_image_side(backend) if config.quantize == "int8" else 0
    side = ImageSide(backend, backend, backend.dense_embeddings if backend.window else backend, memory_format,
                     quantized)
    if config.compile == "torch":
        side.image_forward = torch.compile(side.image_forward, dynamic=False)
        if side.window_forward is not backend:
            side.window_forward = torch.compile(side.window_forward, dynamic=False)
        else:
            side.window_forward = side.image_forward
    elif config.compile == "cuda_graphs":
        side.image_forward = CudaGraphForward(side.image_forward)
        side.window_forward = CudaGraphForward(side.window_forward)
    if config.runtime == "onnxruntime":
        use_onnx_image_side(side, config.onnx_model, runtime.device, backend,
                            tensorrt_cache_dir=config.tensorrt_cache_dir, num_threads=config.num_threads,
                            fp16=runtime.precision == "fp16")
        # the torch weights only the image side uses are not needed any more (device memory)
        side.released_parameters = backend.release_image_side()
        if runtime.device.type == "cuda":
            torch.cuda.empty_cache()
    return side


def use_onnx_image_side(holder, onnx_path, device: torch.device, backend: SegmentationBackend, *,
                        tensorrt_cache_dir: str = "", num_threads: int = 0, fp16: bool = False):
    """Make ``holder`` (an :class:`ImageSide` or a Segmenter) run its image side from the graph
    ``onnx_path`` with ONNX Runtime: ``image_forward`` and ``window_forward`` both become the
    graph (one forward at one input size: the whole input or one sliding window, the same
    computation at that size), checked against ``backend``'s weights. Returns the graph."""
    from .runtime import OnnxImageSide  # optional dependency: pip install lseg_ros[onnx]

    graph = OnnxImageSide(onnx_path, device, backend=backend, tensorrt_cache_dir=tensorrt_cache_dir,
                          num_threads=num_threads, fp16=fp16)
    holder.image_forward = holder.window_forward = graph
    return graph
