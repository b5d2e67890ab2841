"""Text-encoding cost benchmark: what ~/encode_text and set_labels cost per prompt, and one
large request's time and peak memory.

    python benchmarks/bench_text.py                              # 4096 texts of 250 characters
    python benchmarks/bench_text.py --texts 100 --what texts     # a request within the limit
    python benchmarks/bench_text.py --texts 255 --what labels    # a node-sized label set

Uses the tiny test ViT with the dense_clip backend (80 ImageNet templates per text) on the
CPU. Prints one JSON object: the cost of one batch of ``batch_size`` prompts (seconds, RSS
growth), then the request's outcome (encoded or refused), its wall time and the process's
peak RSS growth over the model-loaded baseline. Run each request in its own process (peak
RSS only grows).
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from lseg_ros.config import SegmenterConfig
from lseg_ros.segmenter import Segmenter


def peak_rss_mb() -> float:
    """The process's peak resident set size so far, MB (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=4096)
    parser.add_argument("--chars", type=int, default=250)
    parser.add_argument("--what", choices=("texts", "labels"), default="texts",
                        help="texts: Segmenter.encode_texts (~/encode_text); labels: set_labels")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    segmenter = Segmenter(SegmenterConfig(backend="dense_clip", model="lseg-test-tiny-ViT", pretrained="random",
                                          device="cpu", labels=["door"]))
    encoder = segmenter.label_encoder
    texts = [(f"{index} " + "object with a long description " * 10)[:args.chars] for index in range(args.texts)]

    batch = [f"warm {index} " + texts[0] for index in range(encoder.batch_size)][:encoder.batch_size]
    encoder._encode_prompts(batch)  # warm-up
    before_rss = peak_rss_mb()
    started = time.perf_counter()
    encoder._encode_prompts([f"batch {index} " + texts[0] for index in range(encoder.batch_size)])
    batch_s = time.perf_counter() - started
    baseline = peak_rss_mb()
    figures = {"templates": len(encoder.templates), "batch_size": encoder.batch_size,
               "batch_s": round(batch_s, 3), "per_prompt_ms": round(1000 * batch_s / encoder.batch_size, 3),
               "batch_rss_growth_mb": round(baseline - before_rss, 1),
               "request": f"{args.texts} {args.what} of {args.chars} characters",
               "prompts": len(texts) * len(encoder.templates),
               "limits": {"max_text_prompts": getattr(segmenter, "max_text_prompts", None),
                          "max_label_prompts": getattr(segmenter, "max_label_prompts", None)}}
    started = time.perf_counter()
    try:
        if args.what == "texts":
            segmenter.encode_texts(texts)
        else:
            segmenter.set_labels(texts)
        figures["outcome"] = "encoded"
    except ValueError as error:
        figures["outcome"] = f"refused: {error}"
    figures["request_s"] = round(time.perf_counter() - started, 3)
    figures["request_peak_rss_growth_mb"] = round(peak_rss_mb() - baseline, 1)
    figures["cache_entries"] = len(encoder)
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
