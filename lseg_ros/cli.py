"""``lseg-segment``: segment image files with free-text labels.

    lseg-segment kitchen.jpg hall.png --labels "door, chair, floor" --out out/
    lseg-segment *.jpg --config config/lseg.yaml --backend lseg --pretrained demo_e200.ckpt

Every config field is also an option under its own name (``--backend``, ``--pretrained``,
``--dense_clip.mode``, ...). Per image it writes ``<stem>_mask.png`` (label indices),
``<stem>_overlay.png`` (colors + legend) and, with ``--confidence-maps``, one heatmap per
label; ``labels.json`` records the label order, colors and unknown value.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import add_config_arguments, config_from_args
from .images import pil_to_rgb
from .viz import add_legend, heatmap, label_colors, overlay


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lseg-segment", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path, help="image files to segment")
    parser.add_argument("--config", type=Path, help="YAML config file (config/lseg.yaml layout)")
    parser.add_argument("--out", type=Path, default=Path("lseg_out"), help="output folder")
    parser.add_argument("--confidence-maps", action="store_true", help="also write per-label heatmaps")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    add_config_arguments(parser)
    return parser


def read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return pil_to_rgb(ImageOps.exif_transpose(image))  # as a viewer shows it; 16 bits -> top 8
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise ValueError(f"cannot read image {str(path)!r}: {error}") from None


def write_outputs(out_dir: Path, stem: str, image: np.ndarray, result, colors, alpha: float,
                  confidence_maps: bool) -> None:
    mask = result.mask
    Image.fromarray(mask if mask.dtype == np.uint8 else mask.astype(np.uint16)).save(out_dir / f"{stem}_mask.png")
    blended = add_legend(overlay(image, mask, colors, alpha), result.labels, colors)
    Image.fromarray(blended).save(out_dir / f"{stem}_overlay.png")
    if confidence_maps and result.confidences is not None:
        for index, label in enumerate(result.labels):
            safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:60]
            Image.fromarray(heatmap(result.confidences[index])).save(out_dir / f"{stem}_conf_{index:02d}_{safe}.png")


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except (ValueError, OSError) as error:
        print(f"lseg-segment: {error}", file=sys.stderr)
        return 2
    from .deps import require_engine_packages

    require_engine_packages("lseg-segment")
    from .segmenter import Segmenter
    from .weights import WeightsError

    if config.pretrained == "random":
        print("lseg-segment: WARNING: pretrained=random -- the model has random weights; "
              "masks are meaningless (use for tests and benchmarks only)", file=sys.stderr)
    try:
        segmenter = Segmenter(config)
    except (ValueError, WeightsError) as error:
        print(f"lseg-segment: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    colors = label_colors(len(segmenter.labels))
    (args.out / "labels.json").write_text(json.dumps({
        "labels": segmenter.labels, "colors": colors, "unknown_value": config.unknown_value,
        "model": segmenter.description}, indent=2))

    from tqdm import tqdm

    failures = 0
    for path in tqdm(args.images, desc="segmenting", unit="image", disable=len(args.images) < 2):
        try:
            image = read_rgb(path)
            result = segmenter.segment(image, return_confidences=args.confidence_maps)
            write_outputs(args.out, path.stem, image, result, colors, args.alpha, args.confidence_maps)
        except ValueError as error:
            failures += 1
            tqdm.write(f"lseg-segment: skipping {str(path)!r}: {error}", file=sys.stderr)
    done = len(args.images) - failures
    print(f"lseg-segment: {done} of {len(args.images)} images written to {args.out}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
