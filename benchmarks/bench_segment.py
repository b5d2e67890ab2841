"""Engine benchmark: backbone forward alone vs the full ``Segmenter.segment()`` on the same frames.

    python benchmarks/bench_segment.py                      # ViT-B-16, short side 448, random weights
    python benchmarks/bench_segment.py --backend lseg --model lseg_vitb16_384
    python benchmarks/bench_segment.py --batch 8 --precision fp16          # frames/s at batch 8
    python benchmarks/bench_segment.py --cameras 4          # 4 frames in one batch vs 4 segment() calls
    python benchmarks/bench_segment.py --compile cuda_graphs --precision auto
    python benchmarks/bench_segment.py --runtime onnxruntime --onnx-model model.onnx

Prints one JSON object. The timings are taken in the same run, interleaved call by call,
so the ratios are robust to a noisy machine; absolute times are only comparable on one machine.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from bench_args import add_model_arguments, add_setting_arguments, setting_overrides
from lseg_ros.config import SegmenterConfig, with_overrides
from lseg_ros.segmenter import Segmenter

LABELS = ["floor", "wall", "door", "chair", "table", "person", "window", "ceiling", "plant", "cabinet"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser)
    add_setting_arguments(parser)
    parser.add_argument("--frames", type=int, default=8, help="timed calls per measurement")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--labels", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1, help="frames per segment() call")
    parser.add_argument("--cameras", type=int, default=0,
                        help="also time N frames batched in one call against N single-frame calls")
    args = parser.parse_args()

    config = SegmenterConfig(backend=args.backend, model=args.model, pretrained=args.pretrained,
                             device=args.device, precision=args.precision, short_side=args.short_side,
                             labels=(LABELS * 10)[:args.labels])
    config = with_overrides(config, setting_overrides(args)).validate()
    build_start = time.perf_counter()
    segmenter = Segmenter(config)
    build_s = time.perf_counter() - build_start
    rng = np.random.default_rng(0)
    count = max(args.batch, args.cameras, 1)
    frames = [rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8) for _ in range(count)]
    synchronize = torch.cuda.synchronize if segmenter.device.type == "cuda" else (lambda: None)
    batch = frames[:args.batch]
    model_input = segmenter.model_input(batch)

    def backbone_only():
        synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            segmenter.image_forward(model_input)
        synchronize()
        return time.perf_counter() - start

    def full(images, confidences=True):
        start = time.perf_counter()
        segmenter.segment(images if len(images) > 1 else images[0], return_confidences=confidences)
        return time.perf_counter() - start

    def one_by_one(images):
        start = time.perf_counter()
        for image in images:
            segmenter.segment(image, return_confidences=False)
        return time.perf_counter() - start

    for _ in range(args.warmup):
        backbone_only(), full(batch)
        if args.cameras:
            full(frames[:args.cameras], False), one_by_one(frames[:args.cameras])
    backbone_s, segment_s, mask_only_s, cameras_batched_s, cameras_sequential_s = [], [], [], [], []
    for _ in range(args.frames):
        backbone_s.append(backbone_only())
        segment_s.append(full(batch))
        mask_only_s.append(full(batch, False))
        if args.cameras:
            cameras_batched_s.append(full(frames[:args.cameras], False))
            cameras_sequential_s.append(one_by_one(frames[:args.cameras]))
    median = statistics.median
    report = {
        "model": segmenter.description, "device": str(segmenter.device),
        "device_name": torch.cuda.get_device_name(segmenter.device) if segmenter.device.type == "cuda"
        else platform.processor() or platform.machine(),
        "settings": segmenter.settings, "image": [args.height, args.width],
        "model_input": list(model_input.shape[-2:]), "labels": len(config.labels), "batch": args.batch,
        "calls": args.frames, "build_s": round(build_s, 3),
        "backbone_forward_s": round(median(backbone_s), 4),
        "segment_s": round(median(segment_s), 4),
        "segment_mask_only_s": round(median(mask_only_s), 4),
        "frames_per_s_mask_only": round(args.batch / median(mask_only_s), 2),
        "ratio_segment_to_backbone": round(median(segment_s) / median(backbone_s), 3),
        "ratio_mask_only_to_backbone": round(median(mask_only_s) / median(backbone_s), 3),
    }
    if args.cameras:
        report.update({
            "cameras": args.cameras,
            "cameras_batched_s": round(median(cameras_batched_s), 4),
            "cameras_sequential_s": round(median(cameras_sequential_s), 4),
            "ratio_batched_to_sequential": round(median(cameras_batched_s) / median(cameras_sequential_s), 3),
        })
    report.update({"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()})
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
