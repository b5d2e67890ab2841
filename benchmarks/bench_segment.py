"""Engine benchmark: backbone forward alone vs the full ``Segmenter.segment()`` on the same frames.

    python benchmarks/bench_segment.py                      # ViT-B-16, short side 448, random weights
    python benchmarks/bench_segment.py --backend lseg --model lseg_vitb16_384

Prints one JSON object. Both timings are taken in the same run, interleaved frame by frame,
so the ratio is robust to a noisy machine; absolute times are only comparable on one machine.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from bench_args import add_model_arguments
from lseg_ros.config import SegmenterConfig
from lseg_ros.preprocess import model_input_size, to_model_input
from lseg_ros.segmenter import Segmenter

LABELS = ["floor", "wall", "door", "chair", "table", "person", "window", "ceiling", "plant", "cabinet"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--labels", type=int, default=10)
    args = parser.parse_args()

    config = SegmenterConfig(backend=args.backend, model=args.model, pretrained=args.pretrained,
                             device=args.device, precision=args.precision, short_side=args.short_side,
                             labels=(LABELS * 10)[:args.labels])
    build_start = time.perf_counter()
    segmenter = Segmenter(config)
    build_s = time.perf_counter() - build_start
    backend = segmenter.backend
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8) for _ in range(args.frames)]
    size = model_input_size(args.height, args.width, config.short_side, config.max_long_side, backend.input_multiple)
    synchronize = torch.cuda.synchronize if segmenter.device.type == "cuda" else (lambda: None)

    def backbone_only(frame):
        model_input = to_model_input([frame], size, backend.image_mean, backend.image_std,
                                     segmenter.device, segmenter.dtype)
        synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            backend(model_input)
        synchronize()
        return time.perf_counter() - start

    def full(frame, confidences):
        start = time.perf_counter()
        segmenter.segment(frame, return_confidences=confidences)
        return time.perf_counter() - start

    for frame in frames[:args.warmup]:
        backbone_only(frame), full(frame, True)
    backbone_s, segment_s, segment_mask_only_s = [], [], []
    for frame in frames:
        backbone_s.append(backbone_only(frame))
        segment_s.append(full(frame, True))
        segment_mask_only_s.append(full(frame, False))
    median = statistics.median
    print(json.dumps({
        "model": segmenter.description, "device": str(segmenter.device), "precision": args.precision,
        "image": [args.height, args.width], "model_input": list(size), "labels": len(config.labels),
        "frames": args.frames, "build_s": round(build_s, 3),
        "backbone_forward_s": round(median(backbone_s), 4),
        "segment_s": round(median(segment_s), 4),
        "segment_mask_only_s": round(median(segment_mask_only_s), 4),
        "ratio_segment_to_backbone": round(median(segment_s) / median(backbone_s), 3),
        "ratio_mask_only_to_backbone": round(median(segment_mask_only_s) / median(backbone_s), 3),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
    }, indent=2))


if __name__ == "__main__":
    main()
