"""Output-stage benchmark: the ``postprocess`` stage of ``Segmenter.segment()`` (logits ->
mask and confidence maps at the frame's size, within ``memory_budget_mb``).

    python benchmarks/bench_outputs.py                       # 10 labels @ 640x480, 100 labels @ 1920x1080
    python benchmarks/bench_outputs.py --budget-mb 128

Uses the tiny test ViT (the stage's cost depends on the label count and the output size,
not on the backbone). Prints one JSON object: median milliseconds of the stage over
``--frames`` frames (after 2 warm-up frames), mask only and with confidences, and the
confidence scale the budget gave.
"""
from __future__ import annotations

import argparse
import json
import statistics

import numpy as np
import torch

from lseg_ros.config import SegmenterConfig
from lseg_ros.segmenter import Segmenter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--budget-mb", type=int, default=SegmenterConfig().memory_budget_mb)
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {"budget_mb": args.budget_mb, "threads": torch.get_num_threads(), "cases": {}}
    for labels, (height, width) in ((10, (480, 640)), (100, (1080, 1920))):
        segmenter = Segmenter(SegmenterConfig(model="lseg-test-tiny-ViT", pretrained="random", device="cpu",
                                              short_side=224, max_long_side=448, memory_budget_mb=args.budget_mb,
                                              labels=[]))
        segmenter.set_labels([f"label {i}" for i in range(labels)])
        frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        case = {}
        for confidences in (False, True):
            times, result = [], None
            for _ in range(args.frames + 2):
                result = segmenter.segment(frame, return_confidences=confidences)
                times.append(result.timings["postprocess"])
            key = "with_confidences" if confidences else "mask_only"
            case[f"{key}_ms"] = round(1000 * statistics.median(times[2:]), 1)
            if confidences:
                case["confidence_scale"] = round(result.confidence_scale, 3)
        report["cases"][f"{labels} labels @ {width}x{height}"] = case
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
