"""segment() time against the number of labels, per model: the cost of lmseg's cost-volume
aggregation (its spatial Swin blocks run once per label) next to cosine-matching models.

    python benchmarks/bench_labels.py                                   # the four default models
    python benchmarks/bench_labels.py --labels 1 8 --repeats 5 --models lmseg_sam_b lseg_vitl

Models (random weights: the speed is the weights'), each at its own input size for a
``--width`` x ``--height`` frame:

* ``lmseg_sam_b``: lmseg head aggregation, ``lmseg_vitb16_sam_b`` (CLIP ViT-B/16 + SAM ViT-B at
  384x384, CAT-Seg B's aggregator)
* ``catseg_b``: ``catseg_vitb16_384`` (CAT-Seg B: the same without SAM)
* ``catseg_b_top32``: the same with ``lmseg.max_aggregated_labels: 32``
* ``lmseg_cosine``: lmseg head cosine, ``lmseg_vitb16_sam_b`` (the earlier decoder)
* ``lseg_vitl``: ``lseg_vitl16_384`` (LSeg's released model, short side 384)
* ``lseg_vitb``: ``lseg_vitb16_384``

Label sets are encoded before timing (a label switch's text cost is bench_text.py's). Frames
alternate between the models, so each label count's figures for all models come from the same
minutes of a shared machine. Prints one JSON line per (model, labels): median seconds of the
whole ``segment()`` and of its backbone and classify stages, then a summary table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from lseg_ros.config import LMSegConfig, SegmenterConfig
from lseg_ros.segmenter import Segmenter

MODELS = {
    "lmseg_sam_b": dict(backend="lmseg", model="lmseg_vitb16_sam_b"),
    "catseg_b": dict(backend="lmseg", model="catseg_vitb16_384"),
    "catseg_b_top32": dict(backend="lmseg", model="catseg_vitb16_384",
                           lmseg=LMSegConfig(max_aggregated_labels=32)),
    "lmseg_cosine": dict(backend="lmseg", model="lmseg_vitb16_sam_b", lmseg=LMSegConfig(head="cosine"),
                         short_side=384),
    "lseg_vitl": dict(backend="lseg", model="lseg_vitl16_384", short_side=384),
    "lseg_vitb": dict(backend="lseg", model="lseg_vitb16_384", short_side=384),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["lmseg_sam_b", "catseg_b", "lmseg_cosine", "lseg_vitl"],
                        choices=sorted(MODELS))
    parser.add_argument("--labels", nargs="+", type=int, default=[1, 8, 32, 150])
    parser.add_argument("--repeats", type=int, default=3, help="timed frames per model and label count")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    names = [f"object {index}" for index in range(max(args.labels))]
    engines = {}
    for model in args.models:
        started = time.perf_counter()
        engines[model] = Segmenter(SegmenterConfig(**dict(MODELS[model], pretrained="random", device=args.device,
                                                          attribute_prompts="off")))
        print(json.dumps({"model": model, "description": engines[model].description,
                          "load_s": round(time.perf_counter() - started, 1)}), flush=True)
    frame = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    rows = []
    for count in args.labels:
        label_sets = {model: engine.prepare_labels(names[:count]) for model, engine in engines.items()}
        times = {model: {"total": [], "backbone": [], "classify": []} for model in engines}
        for engine, label_set in zip(engines.values(), label_sets.values()):  # warm-up at this label count
            engine.use_labels(label_set)
            engine.segment(frame)
        for _ in range(args.repeats):
            for model, engine in engines.items():
                engine.use_labels(label_sets[model])
                result = engine.segment(frame)
                for stage in times[model]:
                    times[model][stage].append(result.timings.get(stage, float("nan")))
        for model in engines:
            row = {"model": model, "labels": count, "repeats": args.repeats,
                   **{f"{stage}_s": round(statistics.median(values), 4) for stage, values in times[model].items()}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\nsegment() seconds (median of {args.repeats}), {args.width}x{args.height} frame, "
          f"{args.threads} threads, {args.device}")
    print("labels | " + " | ".join(args.models))
    for count in args.labels:
        cells = [next(r for r in rows if r["model"] == m and r["labels"] == count) for m in args.models]
        print(f"{count} | " + " | ".join(f"{c['total_s']:.3f} (classify {c['classify_s']:.3f})" for c in cells))


if __name__ == "__main__":
    main()
