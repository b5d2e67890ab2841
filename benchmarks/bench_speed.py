"""Speed settings against a baseline on the same frames: time per frame, ratio, and how many
mask pixels agree with the baseline (a faster setting must say what it costs).

    python benchmarks/bench_speed.py                                     # ViT-B-16 448x592, the CPU wins
    python benchmarks/bench_speed.py --backend lseg --model lseg_vitb32_384 --short-side 384
    python benchmarks/bench_speed.py --variant fp16:precision=fp16 --variant graphs:compile=cuda_graphs,precision=fp16
    python benchmarks/bench_speed.py --variant onnx:runtime=onnxruntime      # the baseline exported (lseg-export)

Each variant is a name and config fields (``name:field=value,field=value``) over the
baseline (``--set``/``--precision``/...); every variant gets its own Segmenter with the same
random weights (seeded), and the calls are interleaved frame by frame. Frames are smooth
random images (blurred noise), so masks have regions rather than per-pixel noise. Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench_args import add_model_arguments, add_setting_arguments, setting_overrides
from lseg_ros.acceleration import cpu_has_native_bf16
from lseg_ros.config import SegmenterConfig, with_overrides
from lseg_ros.export import export_image_side
from lseg_ros.segmenter import Segmenter

LABELS = ["floor", "wall", "door", "chair", "table", "person", "window", "ceiling", "plant", "cabinet"]
CPU_VARIANTS = ["fastpath_on:mha_fastpath=on", "fastpath_off:mha_fastpath=off", "channels_last:memory_format=channels_last",
                "int8:quantize=int8", "bf16:precision=bf16", "one_thread:num_threads=1"]


def smooth_frames(count: int, height: int, width: int, seed: int = 0) -> list:
    """Blurred random color fields: regions a few tens of pixels across."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand((count, 3, max(2, height // 32), max(2, width // 32)), generator=generator)
    frames = F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)
    return list((frames * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())


def parse_variant(text: str) -> tuple:
    name, _, fields = text.partition(":")
    overrides = {}
    for item in filter(None, fields.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--variant {text!r}: expected name:field=value,field=value")
        overrides[key.strip()] = value.strip()
    return name, overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser)
    add_setting_arguments(parser)
    parser.set_defaults(width=592)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--labels", type=int, default=10)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:FIELD=VALUE,...",
                        help=f"default on the CPU: {' '.join(CPU_VARIANTS)}")
    args = parser.parse_args()

    base = SegmenterConfig(backend=args.backend, model=args.model, pretrained=args.pretrained, device=args.device,
                           precision=args.precision, short_side=args.short_side, labels=(LABELS * 10)[:args.labels])
    base = with_overrides(base, setting_overrides(args)).validate()
    variants = [parse_variant(text) for text in (args.variant or CPU_VARIANTS)]
    threads = torch.get_num_threads()
    segmenters = {}
    exported = tempfile.TemporaryDirectory(prefix="bench_speed_onnx_")
    for name, overrides in [("baseline", {})] + variants:
        if overrides.get("runtime") == "onnxruntime" and not overrides.get("onnx_model"):
            # the baseline's image side, exported for this frame size (same seeded weights)
            overrides["onnx_model"] = str(Path(exported.name) / f"{name}.onnx")
            export_image_side(segmenters["baseline"][0], args.height, args.width, Path(overrides["onnx_model"]))
        torch.manual_seed(0)
        segmenters[name] = (Segmenter(with_overrides(base, overrides).validate()), overrides)
    frames = smooth_frames(args.frames + args.warmup, args.height, args.width)
    times = {name: [] for name in segmenters}
    masks = {name: [] for name in segmenters}
    for index, frame in enumerate(frames):
        for name, (segmenter, overrides) in segmenters.items():
            # the process-wide settings (threads, fast path) are re-applied for each variant
            torch.set_num_threads(int(overrides.get("num_threads", 0)) or threads)
            fastpath = segmenter.settings["mha_fastpath"] == "on"
            torch.backends.mha.set_fastpath_enabled(fastpath)
            start = time.perf_counter()
            result = segmenter.segment(frame, return_confidences=False)
            if index >= args.warmup:
                times[name].append(time.perf_counter() - start)
                masks[name].append(result.mask)
    baseline = statistics.median(times["baseline"])
    report = {"model": segmenters["baseline"][0].description, "device": str(segmenters["baseline"][0].device),
              "cpu_native_bf16": cpu_has_native_bf16(), "image": [args.height, args.width],
              "model_input": list(segmenters["baseline"][0].model_input(frames[:1]).shape[-2:]),
              "baseline_settings": segmenters["baseline"][0].settings, "frames": args.frames, "variants": {}}
    for name, (segmenter, overrides) in segmenters.items():
        median = statistics.median(times[name])
        agreement = float(np.mean([(a == b).mean() for a, b in zip(masks[name], masks["baseline"])]))
        report["variants"][name] = {"overrides": overrides, "ms": round(median * 1000, 1),
                                    "ratio_to_baseline": round(median / baseline, 3),
                                    "mask_agreement": round(agreement, 5)}
    report.update({"torch": torch.__version__, "threads": threads, "machine": platform.machine()})
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
