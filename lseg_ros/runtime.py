"""The exported image side run by ONNX Runtime (``runtime: onnxruntime``).

``lseg-export`` (:mod:`lseg_ros.export`) writes a backend's image side -- normalized images
[B, 3, h, w] to pixel embeddings [B, D, h', w'] -- as an ONNX graph for one model-input size
(a dynamic batch axis), with metadata that says what it was exported from. :class:`OnnxImageSide`
runs such a graph in place of the torch forward: the Segmenter's text side, label cache,
classification and post-processing stay in torch, so masks come out the same way.

Execution providers, best first, among those the installed onnxruntime has: TensorRT (engines
cached in ``tensorrt_cache_dir``; fp16 when the Segmenter's precision is fp16), CUDA, CPU. A
CUDA Segmenter needs a GPU provider (``pip install onnxruntime-gpu``): it never falls back to
the CPU silently. On CUDA the graph reads the torch input and writes the torch output in place
(I/O binding on torch's current stream): no host round trip.

onnxruntime is an optional dependency: ``pip install lseg_ros[onnx]``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

#: graph input and output names, and the metadata keys lseg-export writes
INPUT_NAME, OUTPUT_NAME = "images", "pixel_embeddings"
META_PREFIX = "lseg_ros."
#: the relative tolerance of the weights fingerprint (sums computed on another device or in
#: another order differ in the last bits; different weights differ by far more)
FINGERPRINT_RTOL = 1e-4

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("runtime onnxruntime needs the onnxruntime package: pip install lseg_ros[onnx] "
                          "(onnxruntime-gpu for the CUDA and TensorRT providers)") from None
    return onnxruntime


def image_side_fingerprint(modules: Sequence[nn.Module]) -> List[List[float]]:
    """[[sum, sum of squares], ...] over the image side's parameters and buffers in float64, in
    module order: says whether a graph was exported from these weights (different weights give
    different sums; the same weights on another device differ by ~1e-12 relative)."""
    rows = []
    for module in modules:
        for _, tensor in sorted(module.state_dict().items()):
            if not torch.is_tensor(tensor) or not tensor.is_floating_point():
                continue
            values = tensor.detach().to(torch.float64)
            rows.append([float(values.sum()), float(values.square().sum())])
    return rows


def fingerprints_match(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> bool:
    if len(a) != len(b):
        return False
    if not a:
        return True
    first, second = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = np.maximum(np.abs(first), np.abs(second)).max(axis=0) + 1e-12  # per column: sums, squares
    return bool(np.all(np.abs(first - second) <= FINGERPRINT_RTOL * scale))


def onnx_providers(device: torch.device, available: Sequence[str], tensorrt_cache_dir: str = "",
                   fp16: bool = False, stream: Optional[int] = None) -> List[Tuple[str, Dict[str, str]]]:
    """[(provider, options), ...] for a Segmenter on ``device``, best first, among ``available``
    (onnxruntime.get_available_providers()). On the CPU: the CPU provider. On CUDA: TensorRT, then
    CUDA, then the CPU for the nodes they cannot run; ValueError when neither GPU provider exists."""
    if device.type != "cuda":
        return [("CPUExecutionProvider", {})]
    index = str(device.index or 0)
    shared = {"device_id": index}
    if stream is not None:  # run on torch's stream: no synchronization between the two
        shared.update(has_user_compute_stream="1", user_compute_stream=str(stream))
    chosen = []
    if "TensorrtExecutionProvider" in available:
        options = dict(shared, trt_fp16_enable="1" if fp16 else "0")
        if tensorrt_cache_dir:
            Path(tensorrt_cache_dir).mkdir(parents=True, exist_ok=True)
            options.update(trt_engine_cache_enable="1", trt_engine_cache_path=str(tensorrt_cache_dir),
                           trt_timing_cache_enable="1", trt_timing_cache_path=str(tensorrt_cache_dir))
        chosen.append(("TensorrtExecutionProvider", options))
    if "CUDAExecutionProvider" in available:
        chosen.append(("CUDAExecutionProvider", dict(shared)))
    if not chosen:
        raise ValueError(f"runtime onnxruntime on {device}: this onnxruntime has no GPU execution provider "
                         f"(available: {', '.join(available)}); install onnxruntime-gpu, or use device cpu")
    return chosen + [("CPUExecutionProvider", {})]


def read_metadata(path: str) -> Dict[str, str]:
    """The lseg_ros metadata of an exported graph (keys without the prefix)."""
    onnxruntime = import_onnxruntime()
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return _metadata(session)


def _metadata(session) -> Dict[str, str]:
    custom = session.get_modelmeta().custom_metadata_map
    return {key[len(META_PREFIX):]: value for key, value in custom.items() if key.startswith(META_PREFIX)}


class OnnxImageSide:
    """Callable like the backend's forward (images [B, 3, h, w] -> embeddings [B, D, h', w']),
    run by ONNX Runtime from the file ``path`` written by lseg-export.

    ``backend`` (the torch backend built from the same config) is checked against the graph's
    metadata: same backend description and image-side weights (fingerprint), so a graph is never
    run with a text side it was not made with. ``kind`` says which forward the graph replaces:
    "image" (the whole input) or "window" (one sliding window, dense_clip window_merge logits)."""

    def __init__(self, path: str, device: torch.device, backend: Optional[nn.Module] = None,
                 tensorrt_cache_dir: str = "", num_threads: int = 0, fp16: bool = False) -> None:
        onnxruntime = import_onnxruntime()
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise ValueError(f"onnx_model {str(path)!r} is not a file; export one with lseg-export --config "
                             f"<yaml> --height H --width W --out model.onnx")
        self.device = torch.device(device)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads > 0:
            options.intra_op_num_threads = int(num_threads)
        stream = torch.cuda.current_stream(self.device).cuda_stream if self.device.type == "cuda" else None
        providers = onnx_providers(self.device, onnxruntime.get_available_providers(), tensorrt_cache_dir, fp16,
                                   stream)
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), options,
                                                        providers=[name for name, _ in providers],
                                                        provider_options=[opts for _, opts in providers])
        except Exception as error:  # onnxruntime raises its own types (InvalidGraph, Fail, ...)
            raise ValueError(f"onnx_model {str(self.path)!r} cannot be loaded by onnxruntime: "
                             f"{type(error).__name__}: {error}") from None
        #: the providers the session really uses, best first
        self.providers = self.session.get_providers()
        self.metadata = _metadata(self.session)
        if not self.metadata:
            raise ValueError(f"onnx_model {str(self.path)!r} has no lseg_ros metadata: export it with lseg-export")
        self.kind = self.metadata.get("kind", "image")
        self.input_size = (int(self.metadata["input_height"]), int(self.metadata["input_width"]))
        if backend is not None:
            self.check_backend(backend)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in outputs] != [OUTPUT_NAME]:
            raise ValueError(f"onnx_model {str(self.path)!r}: expected input {INPUT_NAME!r} and output "
                             f"{OUTPUT_NAME!r}, got {[i.name for i in inputs]} -> {[o.name for o in outputs]}")
        # (D, h', w'): the batch is dynamic, and the graph may not name the rest as numbers
        self._output_tail = tuple(int(side) for side in json.loads(self.metadata.get("output_shape", "[]")))
        self._binding_device = self.device.type == "cuda" and self.providers[0] in GPU_PROVIDERS

    def check_backend(self, backend: nn.Module) -> None:
        """ValueError unless the graph was exported from ``backend``'s architecture and weights."""
        described = self.metadata.get("backend_description", "")
        if described != backend.description:
            raise ValueError(f"onnx_model {str(self.path)!r} was exported from {described!r}, but the config "
                             f"builds {backend.description!r}: export it again from this config")
        stored = json.loads(self.metadata.get("fingerprint", "[]"))
        if not fingerprints_match(stored, image_side_fingerprint(backend.image_side_modules())):
            raise ValueError(f"onnx_model {str(self.path)!r} was exported from other weights than "
                             f"{backend.description!r} has: export it again from this config")

    def __repr__(self) -> str:
        return (f"OnnxImageSide({str(self.path)!r}, {self.kind} {self.input_size[0]}x{self.input_size[1]}, "
                f"{self.providers[0]})")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        size = tuple(images.shape[-2:])
        if size != self.input_size:
            frame = f"{self.metadata.get('frame_height', '?')}x{self.metadata.get('frame_width', '?')}"
            raise ValueError(f"onnx_model {self.path.name!r} was exported for {frame} frames ({self.kind} input "
                             f"{self.input_size[0]}x{self.input_size[1]}), got a model input of {size[0]}x{size[1]}: "
                             f"export it again for this camera's frame size (lseg-export --height --width)")
        images = images.to(torch.float32).contiguous()
        if not self._binding_device:
            array = images.cpu().numpy()
            embeddings = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0]
            return torch.from_numpy(embeddings).to(self.device)
        # on the GPU: bind torch's buffers, nothing goes through the host
        index = images.device.index or 0
        output = torch.empty((images.shape[0],) + self._output_tail, dtype=torch.float32, device=images.device)
        binding = self.session.io_binding()
        binding.bind_input(INPUT_NAME, "cuda", index, np.float32, tuple(images.shape), images.data_ptr())
        binding.bind_output(OUTPUT_NAME, "cuda", index, np.float32, tuple(output.shape), output.data_ptr())
        self.session.run_with_iobinding(binding)
        return output
