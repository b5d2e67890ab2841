"""``lseg-export``: the image side of a backend as an ONNX graph, verified against torch.

    lseg-export --config config/lseg.yaml --height 480 --width 640 --out lseg_480x640.onnx

The graph maps normalized images [B, 3, h, w] (a dynamic batch axis) to pixel embeddings
[B, D, h', w'] for the model-input size that ``--height`` x ``--width`` frames get under the
config (``input_resize``, ``short_side``, ...), or for one sliding window when the config
merges windows as logits (dense_clip ``window`` with ``window_merge: logits``). Shapes are
static: export once per camera frame size. Precomputed per-size tables (the resized
positional embedding, NACLIP's Gaussian prior) are stored in the graph as constants.

Then it runs the graph with ONNX Runtime on the CPU against the torch forward on the same
inputs, prints the largest embedding difference and the share of equal mask pixels on
generated scenes, and writes ``<out>.yaml`` beside the graph: the config with
``runtime: onnxruntime`` and ``onnx_model`` set (lseg-segment --config, Python), and
``<out minus .onnx>.params.yaml``, the node's parameters file (``params_file:=``). The exit
code is 1 when the masks agree on fewer than ``--min-agreement`` pixels.

The text side is not exported: labels change at run time and are encoded by torch (cached).
"""
from __future__ import annotations

import argparse
import copy as _copy
import dataclasses
import inspect
import json
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import nn

from .build import use_onnx_image_side
from .config import SegmenterConfig, add_config_arguments, config_from_args
from .runtime import INPUT_NAME, META_PREFIX, OUTPUT_NAME, image_side_fingerprint

#: labels of the verification masks when the config has none
VERIFY_LABELS = ["floor", "wall", "door", "chair", "table", "person", "window", "plant", "shelf", "box"]
DEFAULT_OPSET = 17
#: ONNX opsets --opset accepts: 14 (the attention ops' floor) to the TorchScript exporter's newest
OPSETS = (14, 20)
#: largest --height / --width in pixels (an 8K frame fits; a typo like 100000 would trace a
#: graph for a 100000-pixel frame and allocate tens of GiB)
MAX_FRAME_SIDE = 8192
#: torch.onnx.export's TorchScript exporter: chosen by dynamo=False from torch 2.5 on (where the
#: keyword exists; later torch makes dynamo the default), the only exporter before
_TORCHSCRIPT_EXPORTER = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


class _ImageSide(nn.Module):
    """The forward to export as a module (the exporter traces modules)."""

    def __init__(self, forward, backend: nn.Module) -> None:
        super().__init__()
        self.backend = backend  # registers the weights
        self._forward = forward

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._forward(images).float()


@contextmanager
def _plain_attention():
    """nn.MultiheadAttention's fused eval kernel has no ONNX form: trace the plain path."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    previous = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(previous)


def export_plan(segmenter, height: int, width: int) -> Dict[str, object]:
    """What to export for ``height`` x ``width`` frames: {'kind': 'image' | 'window', 'input_size': (h, w)}."""
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    model_input = segmenter.model_input([frame])
    window, _ = segmenter.backend_window(model_input)
    size = tuple(int(side) for side in model_input.shape[-2:])
    if window:
        return {"kind": "window", "input_size": (min(window, size[0]), min(window, size[1]))}
    return {"kind": "image", "input_size": size}


def export_image_side(segmenter, height: int, width: int, out: Path, opset: int = DEFAULT_OPSET,
                      config: Optional[SegmenterConfig] = None) -> Dict[str, object]:
    """Write the image side of ``segmenter`` (runtime torch, fp32, no compile or quantization) for
    ``height`` x ``width`` frames to ``out``; returns the plan with the metadata written."""
    import onnx

    if segmenter.config.runtime != "torch" or segmenter.precision != "fp32" or segmenter.config.quantize != "none" \
            or segmenter.config.compile != "none":
        raise ValueError("export from a torch runtime Segmenter in fp32 without compile or quantize (got runtime "
                         f"{segmenter.config.runtime}, precision {segmenter.precision}, quantize "
                         f"{segmenter.config.quantize}, compile {segmenter.config.compile})")
    plan = export_plan(segmenter, height, width)
    forward = segmenter.window_forward if plan["kind"] == "window" else segmenter.image_forward
    module = _ImageSide(forward, segmenter.backend).eval()
    example = torch.zeros((1, 3) + tuple(plan["input_size"]), dtype=torch.float32, device=segmenter.device)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), _plain_attention(), warnings.catch_warnings():
        # shapes are fixed per export, on purpose: the tracer's warnings say exactly that
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: no onnxscript needed
        # fills the per-size tables, which become constants; and gives the output's size
        reference = module(example.to(memory_format=segmenter.memory_format))
        torch.onnx.export(module, (example,), str(out), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          opset_version=opset, do_constant_folding=True, **_TORCHSCRIPT_EXPORTER)
    backend = segmenter.backend
    metadata = {"kind": plan["kind"], "input_height": str(plan["input_size"][0]),
                "input_width": str(plan["input_size"][1]),
                "output_shape": json.dumps([int(side) for side in reference.shape[1:]]), "frame_height": str(height), "frame_width": str(width),
                "backend_description": backend.description, "text_model_id": backend.text_model_id,
                "fingerprint": json.dumps(image_side_fingerprint(backend.image_side_modules())),
                "torch_version": torch.__version__}
    if config is not None:
        metadata["config"] = json.dumps(config.to_dict())
    model = onnx.load(str(out), load_external_data=False)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, value
    model.producer_name = "lseg_ros"
    onnx.save(model, str(out))
    return dict(plan, metadata=metadata)


def verification_frames(height: int, width: int, count: int = 2, seed: int = 0) -> List[np.ndarray]:
    """Generated scenes (textured floors and walls, objects with edges) at the frame size."""
    from .data.scenes import generate_scene

    rng = np.random.default_rng(seed)
    return [generate_scene(rng, (height, width))[0] for _ in range(count)]


def verify_export(segmenter, onnx_segmenter, frames: List[np.ndarray], labels: List[str]) -> Dict[str, float]:
    """Torch against ONNX Runtime on ``frames``: the largest absolute difference of the image
    side's outputs (relative to their largest magnitude too) and the share of equal mask pixels."""
    plan_kind = onnx_segmenter.image_forward.kind
    max_abs = max_ref = 0.0
    equal = total = 0
    reference_set = segmenter.prepare_labels(labels)
    onnx_set = onnx_segmenter.prepare_labels(labels)
    with torch.no_grad():
        for frame in frames:
            model_input = segmenter.model_input([frame])
            if plan_kind == "window":
                size = onnx_segmenter.image_forward.input_size
                model_input = model_input[..., :size[0], :size[1]]
            expected = segmenter.window_forward(model_input) if plan_kind == "window" else \
                segmenter.image_forward(model_input)
            got = onnx_segmenter.image_forward(model_input)
            max_abs = max(max_abs, float((expected.float() - got.float()).abs().max()))
            max_ref = max(max_ref, float(expected.float().abs().max()))
            reference = segmenter._segment([frame], reference_set, False, None, False)[0].mask
            mask = onnx_segmenter._segment([frame], onnx_set, False, None, False)[0].mask
            equal += int((reference == mask).sum())
            total += reference.size
    return {"max_abs_diff": max_abs, "max_rel_diff": max_abs / max(max_ref, 1e-12), "mask_agreement": equal / total}


def with_onnx_image_side(segmenter, onnx_path: Path):
    """A shallow copy of ``segmenter`` (same backend, text side and settings) whose image side
    runs ``onnx_path`` with ONNX Runtime on its device."""
    copy = _copy.copy(segmenter)
    use_onnx_image_side(copy, onnx_path, segmenter.device, segmenter.backend, num_threads=segmenter.config.num_threads)
    return copy


def write_config(config: SegmenterConfig, onnx_path: Path) -> Path:
    """``<onnx_path>.yaml``: ``config`` with runtime onnxruntime and onnx_model beside it."""
    import yaml

    data = config.to_dict()
    data.update(runtime="onnxruntime", onnx_model=onnx_path.name, compile="none", quantize="none")
    if data.get("pretrained") and data["pretrained"] != "random" and Path(data["pretrained"]).is_file():
        data["pretrained"] = str(Path(data["pretrained"]).resolve())
    path = onnx_path.with_suffix(".yaml")
    header = (f"# written by lseg-export: the image side runs {onnx_path.name} with ONNX Runtime;\n"
              f"# the text side loads `pretrained` as before (the graph checks it has the same weights)\n")
    path.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def write_params_file(config: SegmenterConfig, onnx_path: Path, node_name: str = "lseg_node") -> Path:
    """``<onnx_path minus .onnx>.params.yaml``: the node's parameters file (``params_file:=``) for
    ``config`` with runtime onnxruntime; files as absolute paths (the node's working directory
    is the launch's)."""
    from .config import flatten
    from .config import write_params_file as write_layout

    values = flatten(config)
    values.update(runtime="onnxruntime", onnx_model=str(onnx_path.resolve()), compile="none", quantize="none")
    for name in ("pretrained", "tensorrt_cache_dir"):
        if values.get(name) and Path(values[name]).exists():
            values[name] = str(Path(values[name]).resolve())
    path = onnx_path.with_suffix(".params.yaml")
    header = (f"# written by lseg-export: lseg_node parameters running {onnx_path.name} with ONNX Runtime\n"
              f"#   ros2 launch lseg_ros lseg.launch.py params_file:={path.name}\n")
    return write_layout(path, values, node_name, header)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lseg-export", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", type=Path, help="YAML config file (config/lseg.yaml layout)")
    parser.add_argument("--height", type=int, required=True, help=f"camera frame height in pixels (at most {MAX_FRAME_SIDE})")
    parser.add_argument("--width", type=int, required=True, help=f"camera frame width in pixels (at most {MAX_FRAME_SIDE})")
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write (and <out>.yaml), in an existing folder")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset ({OPSETS[0]} to {OPSETS[1]})")
    parser.add_argument("--verify-frames", type=int, default=2, help="generated scenes compared; 0 = no check")
    parser.add_argument("--min-agreement", type=float, default=0.99,
                        help="exit 1 when fewer mask pixels than this share agree with torch")
    add_config_arguments(parser)
    return parser


def _argument_problem(args: argparse.Namespace) -> Optional[str]:
    """What is wrong with the command line's values (one line), or None."""
    if args.height < 1 or args.width < 1:
        return f"--height and --width must be positive, got {args.height}x{args.width}"
    if args.height > MAX_FRAME_SIDE or args.width > MAX_FRAME_SIDE:
        return f"--height and --width must be at most {MAX_FRAME_SIDE} pixels, got {args.height}x{args.width}"
    if not OPSETS[0] <= args.opset <= OPSETS[1]:
        return f"--opset {args.opset} is not supported; accepted: {OPSETS[0]} to {OPSETS[1]}"
    if args.verify_frames < 0:
        return f"--verify-frames must be >= 0 (0 = no check), got {args.verify_frames}"
    if not 0.0 <= args.min_agreement <= 1.0:
        return f"--min-agreement must be in [0, 1], got {args.min_agreement}"
    if args.out.suffix != ".onnx":
        return f"--out {str(args.out)!r} should end in .onnx"
    folder = args.out.expanduser().parent
    if not folder.is_dir():
        return f"--out folder {str(folder)!r} does not exist (or is not a folder); create it first"
    return None


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    problem = _argument_problem(args)
    if problem:
        print(f"lseg-export: {problem}", file=sys.stderr)
        return 2
    try:
        config = config_from_args(args)
    except (ValueError, OSError) as error:
        print(f"lseg-export: {error}", file=sys.stderr)
        return 2
    from .deps import require_engine_packages

    require_engine_packages("lseg-export")
    from .segmenter import Segmenter
    from .weights import WeightsError

    # export in fp32 on the CPU: the graph is device-independent; the runtime picks the provider
    torch_config = dataclasses.replace(config, runtime="torch", onnx_model="", device="cpu", precision="fp32",
                                       compile="none", quantize="none", warmup_height=0, warmup_width=0, labels=[])
    try:
        segmenter = Segmenter(torch_config)
        plan = export_image_side(segmenter, args.height, args.width, args.out, args.opset, config=config)
    except (ValueError, WeightsError) as error:
        print(f"lseg-export: {error}", file=sys.stderr)
        return 2
    size = plan["input_size"]
    print(f"lseg-export: wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB): {segmenter.description}, "
          f"{plan['kind']} input {size[0]}x{size[1]} for {args.height}x{args.width} frames, opset {args.opset}")
    yaml_path, params_path = write_config(config, args.out), write_params_file(config, args.out)
    print(f"lseg-export: wrote {yaml_path} (config, runtime onnxruntime) and {params_path} (lseg_node params_file)")
    if args.verify_frames <= 0:
        return 0
    onnx_segmenter = with_onnx_image_side(segmenter, args.out)
    labels = list(config.labels) or VERIFY_LABELS
    figures = verify_export(segmenter, onnx_segmenter, verification_frames(args.height, args.width,
                                                                            args.verify_frames), labels)
    print(f"lseg-export: ONNX Runtime (CPU) against torch on {args.verify_frames} generated "
          f"{args.height}x{args.width} scenes, {len(labels)} labels: max |diff| {figures['max_abs_diff']:.2e} "
          f"({figures['max_rel_diff']:.2e} of the largest value), mask agreement "
          f"{100 * figures['mask_agreement']:.3f}%")
    if figures["mask_agreement"] < args.min_agreement:
        print(f"lseg-export: mask agreement below --min-agreement {args.min_agreement}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
