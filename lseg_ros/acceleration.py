"""Per-device speed settings of the engine, each decided from a measurement (docs/performance.md).

* :func:`resolve_precision` -- ``precision: auto``: fp16 on CUDA, fp32 on the CPU. bf16 on a
  CPU without native bf16 arithmetic (AVX512-BF16 or AMX) is emulated: warned about.
* :func:`apply_threads` -- ``num_threads`` (torch's intra-op threads; process-wide).
* :func:`resolve_mha_fastpath` -- ``nn.MultiheadAttention``'s fused eval-mode kernel
  (``aten::_native_multi_head_attention``), which open_clip's blocks take: off on the CPU,
  where the plain path (linear layers + scaled_dot_product_attention) measured faster, on
  for CUDA (PyTorch's default). Process-wide, like the thread count.
* :func:`resolve_memory_format` -- channels_last for conv-heavy backends (LSeg's DPT
  decoder) on the CPU.
* :func:`quantize_image_side` -- optional dynamic int8 of the image side's linear layers (CPU).
* :class:`CudaGraphForward` -- ``compile: cuda_graphs``: the backend forward captured once
  per input shape and replayed.

Every choice is reported in :attr:`Segmenter.settings` (what ``auto`` became), and the
node logs it at start.
"""
from __future__ import annotations

import warnings
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

#: precision names -> dtypes
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (AVX512-BF16 or AMX); without it
    torch emulates bf16 matmuls and convolutions (measured 8-14x slower than fp32 on a
    Zen 3 EPYC)."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    checks = [check for check in checks if check is not None]
    if checks:
        return any(bool(check()) for check in checks)
    try:  # older torch: read the flags
        with open("/proc/cpuinfo", "r", encoding="ascii", errors="replace") as stream:
            flags = stream.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(name: str, device: torch.device) -> Tuple[str, Optional[str]]:
    """(precision actually used, a warning or None) for ``precision`` on ``device``.

    ``auto``: fp16 on CUDA (half the memory traffic; masks checked equal to fp32 by the
    CUDA test run), fp32 on the CPU (bf16 changes masks at label boundaries, and is
    emulated on most robot CPUs). ValueError for fp16 on the CPU (no fast kernels)."""
    if name == "auto":
        return ("fp16" if device.type == "cuda" else "fp32"), None
    if name == "fp16" and device.type == "cpu":
        raise ValueError("precision 'fp16' needs CUDA; on the CPU use fp32 or bf16 (or auto)")
    if name == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        return name, ("precision 'bf16' on this CPU is emulated (no AVX512-BF16 or AMX instructions): measured "
                      "8-14x slower than fp32 on such a CPU; use precision fp32 (or auto)")
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision 'bf16' is not supported by {torch.cuda.get_device_name(device)}; "
                         "use fp16 (or auto)")
    return name, None


def apply_threads(num_threads: int) -> int:
    """Set torch's intra-op thread count when ``num_threads`` > 0 (process-wide); the count in use."""
    if num_threads > 0 and torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)
    return torch.get_num_threads()


def resolve_mha_fastpath(setting: str, device: torch.device) -> bool:
    """Whether ``nn.MultiheadAttention``'s fused fast path is to be enabled: ``on``/``off``,
    or ``auto``: off on the CPU (the dense_clip ViT-B-16 forward took 0.82-0.93x the time
    without it, identical masks; it also blocks ONNX export), on for CUDA."""
    if setting == "auto":
        return device.type == "cuda"
    return setting == "on"


def apply_mha_fastpath(enabled: bool) -> None:
    """Process-wide switch (torch >= 2.3; a no-op before, where the fast path is always on)."""
    mha = getattr(torch.backends, "mha", None)
    if mha is not None and hasattr(mha, "set_fastpath_enabled"):
        mha.set_fastpath_enabled(enabled)


def resolve_memory_format(setting: str, backend: nn.Module, device: torch.device) -> torch.memory_format:
    """``channels_last``/``contiguous``, or ``auto``: channels_last for a conv-heavy backend
    (``backend.conv_heavy``: LSeg's DPT decoder, 0.83x the time on the CPU, identical
    masks) on the CPU; contiguous otherwise (ViTs gain nothing; CUDA not measured yet)."""
    if setting == "channels_last":
        return torch.channels_last
    if setting == "contiguous":
        return torch.contiguous_format
    if backend.conv_heavy and device.type == "cpu":
        return torch.channels_last
    return torch.contiguous_format


def quantize_image_side(backend: nn.Module) -> int:
    """Dynamic int8 quantization (weights int8, activations quantized per batch) of the
    linear layers of the backend's image side, in place; the text side stays float so label
    embeddings do not change. Returns how many layers were quantized. CPU only."""
    from torch.ao.quantization import quantize_dynamic

    count = 0
    for module in backend.image_side_modules():
        count += sum(1 for child in module.modules() if type(child) is nn.Linear)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao's notice that it moves to torchao
            quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return count


class CudaGraphForward:
    """``forward`` captured as a CUDA graph per input shape (at most ``max_shapes``), replayed
    with the input copied into the captured buffer. Shapes beyond the limit run eagerly.
    The returned tensor is the graph's output buffer: the next call overwrites it, which is
    fine for the segmenter (it consumes the embeddings before the next frame)."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], max_shapes: int = 2) -> None:
        self.forward = forward
        self.max_shapes = max_shapes
        self.graphs: Dict[tuple, tuple] = {}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.device.type != "cuda":
            return self.forward(images)
        key = (tuple(images.shape), images.dtype)
        entry = self.graphs.get(key)
        if entry is None:
            if len(self.graphs) >= self.max_shapes:
                return self.forward(images)
            entry = self.graphs[key] = self._capture(images)
        graph, static_input, static_output = entry
        static_input.copy_(images)
        graph.replay()
        return static_output

    def _capture(self, images: torch.Tensor) -> tuple:
        static_input = images.clone()
        stream = torch.cuda.Stream(device=images.device)
        stream.wait_stream(torch.cuda.current_stream(images.device))
        with torch.cuda.stream(stream):  # warm-up iterations outside the graph, as PyTorch advises
            for _ in range(3):
                self.forward(static_input)
        torch.cuda.current_stream(images.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_output = self.forward(static_input)
        return graph, static_input, static_output
