"""``lseg-eval``: mIoU, pixel accuracy and per-class IoU of any backend on any dataset.

    lseg-eval --dataset generic --root scenes/ --split val --config lseg_ros/weights/scenes_lseg_tiny.yaml
    lseg-eval --dataset ade20k --root ADEChallengeData2016 --backend lseg --model lseg_vitl16_384 \\
        --pretrained demo_e200.ckpt --multi-scale --window 480 --stride 320 --out eval_ade

The label set is the dataset's prompt names: the class-name files the training-free papers
evaluate with, synonyms included (``--class-names sclip`` by default, ``clearclip``, or
``plain`` for one display name per class); ``--label-names`` replaces them, one per class
in order (``;`` between a class's synonyms). Single scale runs the engine's own
``Segmenter.segment``; ``--multi-scale``
(LSeg's scales 0.5 ... 1.75) or ``--scales``, ``--flip`` and ``--window`` average softmax
probabilities at the label resolution. ``--unseen a,b`` adds seen/unseen mIoU and hIoU.

The core is testable without a model: :func:`evaluate_predictions` scores given
(prediction, ground truth) pairs; :func:`predict_probabilities` is the multi-scale path.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .deps import require_engine_packages

require_engine_packages("lseg-eval")  # one line instead of a ModuleNotFoundError traceback
import torch  # noqa: E402
import torch.nn.functional as F

from .config import add_config_arguments, config_from_args, flatten
from .data.datasets import DATASETS
from .label_maps import LabelRules, label_probabilities, resize_logits
from .metrics import ConfusionMatrix
from .preprocess import model_input_size, to_model_input
from .profiles import get_profile
from .validation import parse_label_text

#: LSeg's multi-scale evaluation scales
LSEG_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


# ---------------------------------------------------------------- scoring core
def evaluate_predictions(pairs: Iterable[Tuple[np.ndarray, np.ndarray]], class_names: Sequence[str],
                         ignore_index: int = 255, unseen: Optional[Sequence[str]] = None) -> dict:
    """Scores (predicted mask, ground-truth mask) pairs; returns ConfusionMatrix.summary()
    (miou, pixel_accuracy, mean_accuracy, per_class_iou; with ``unseen`` class names also
    miou_seen, miou_unseen, hiou) plus ``images`` and ``pixels`` counted."""
    confusion = ConfusionMatrix(len(class_names), ignore_index)
    images = 0
    for prediction, target in pairs:
        confusion.update(np.asarray(prediction).astype(np.int64), target)
        images += 1
    unseen_indices = class_indices(unseen, class_names) if unseen else None
    summary = confusion.summary(class_names, unseen_indices)
    summary.update(images=images, pixels=confusion.total)
    return summary


def class_indices(names: Sequence[str], class_names: Sequence[str]) -> List[int]:
    """Indices of ``names`` in ``class_names``; ValueError names any unknown one."""
    unknown = [name for name in names if name not in class_names]
    if unknown:
        raise ValueError(f"unknown class name(s) {unknown}; accepted: {list(class_names)}")
    return [list(class_names).index(name) for name in names]


# ------------------------------------------------------------ multi-scale path
@torch.inference_mode()
def predict_probabilities(segmenter, image: np.ndarray, scales: Sequence[float] = (1.0,),
                          flip: bool = False, window: int = 0, stride: int = 0) -> torch.Tensor:
    """Probabilities [N, H, W] of the segmenter's labels for one RGB image (softmax over
    every name, each label's best name, as ``segment`` has them),
    averaged over ``scales`` (factors on the configured model input size) and, with
    ``flip``, horizontal flips; each at the image resolution. ``window`` > 0 slides a
    window of that many model-input pixels (``stride`` apart) over large inputs."""
    config, backend = segmenter.config, segmenter.backend
    height, width = image.shape[:2]
    label_set = segmenter.label_set
    rules = LabelRules(len(label_set.names), label_set.name_groups)  # synonyms: each label's best name
    probabilities = None
    for scale in scales:
        size = model_input_size(height, width, max(1, round(config.short_side * scale)),
                                max(1, round(config.max_long_side * scale)), backend.input_multiple)
        model_input = to_model_input([image], size, backend.image_mean, backend.image_std,
                                     segmenter.device, segmenter.dtype)  # [1, 3, h, w]
        for flipped in ((False, True) if flip else (False,)):
            view = model_input.flip(-1) if flipped else model_input
            logits = window_logits(segmenter, view, window, stride)  # [1, N, h, w] at model-input size
            logits = logits.flip(-1) if flipped else logits
            logits = resize_logits(logits.float(), (height, width))
            view_probabilities = label_probabilities(logits[0], rules)  # [N, H, W]
            probabilities = view_probabilities if probabilities is None else probabilities + view_probabilities
    return probabilities / (len(scales) * (2 if flip else 1))


def window_logits(segmenter, model_input: torch.Tensor, window: int = 0, stride: int = 0) -> torch.Tensor:
    """Label logits [1, N, h, w] at model-input resolution (:meth:`Segmenter.input_logits`):
    with ``window`` > 0 and a larger input, the references' sliding window (``stride`` default
    2/3 of the window); otherwise the segmenter's own path (which may slide the backend's
    configured window)."""
    return segmenter.input_logits(model_input, window=window, stride=stride)


#: lang-seg's evaluation sizes (test_lseg.py --base-size 520 --crop-size 480) and scales
#: (test_lseg.py: Cityscapes 0.75 ... 2.25, the others 0.5 ... 1.75)
LSEG_BASE_SIZE, LSEG_CROP_SIZE = 520, 480
LSEG_CITYSCAPES_SCALES = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25)


@torch.inference_mode()
def lseg_multiscale_logits(segmenter, image: np.ndarray, scales: Sequence[float] = LSEG_SCALES,
                           flip: bool = True, base_size: int = LSEG_BASE_SIZE,
                           crop_size: int = LSEG_CROP_SIZE) -> torch.Tensor:
    """Summed logits [M, H, W] over the label set's names of one image, as lang-seg's ``MultiEvalModule.forward``
    (additional_utils/encoding_models.py, isl-org/lang-seg@bb00b21) computes them: per scale,
    the normalized image resized (bilinear, align_corners=True) to a long side of
    ceil(base_size x scale); inputs no larger than the crop are padded with black to the
    crop, larger ones cut into crop-sized windows 2/3 of a crop apart (the last ones padded,
    not shifted), window logits averaged; with ``flip`` each network output adds that of the
    mirrored input; each scale's logits resized back (align_corners=True) and summed."""
    backend = segmenter.backend
    height, width = image.shape[:2]
    x = to_model_input([image], (height, width), backend.image_mean, backend.image_std,
                       segmenter.device, segmenter.dtype)  # [1, 3, H, W], no resize
    black = torch.tensor([-m / s for m, s in zip(backend.image_mean, backend.image_std)],
                         device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    labels = segmenter.label_set.label_embeddings

    def pad(img):  # pad_image: bottom/right to at least crop x crop, with black
        rows, cols = img.shape[-2:]
        if rows >= crop_size and cols >= crop_size:
            return img
        padded = black.expand(1, 3, max(rows, crop_size), max(cols, crop_size)).clone()
        padded[..., :rows, :cols] = img
        return padded

    def network(img):  # module_inference: LSegNet.forward (logits at input size), plus the flip
        def once(view):
            return segmenter.input_logits(view, labels)
        out = once(img)
        return out + once(img.flip(-1)).flip(-1) if flip else out

    stride = int(crop_size * 2.0 / 3.0)
    scores = torch.zeros((1, labels.shape[0], height, width), device=x.device)
    for scale in scales:
        long_size = int(math.ceil(base_size * scale))
        if height > width:
            rows, cols = long_size, int(1.0 * width * long_size / height + 0.5)
            short_size = cols
        else:
            rows, cols = int(1.0 * height * long_size / width + 0.5), long_size
            short_size = rows
        current = F.interpolate(x, size=(rows, cols), mode="bilinear", align_corners=True)
        if long_size <= crop_size:
            outputs = network(pad(current))[..., :rows, :cols]
        else:
            padded = pad(current) if short_size < crop_size else current
            padded_rows, padded_cols = padded.shape[-2:]
            outputs = torch.zeros((1, labels.shape[0], padded_rows, padded_cols), device=x.device)
            count = torch.zeros((1, 1, padded_rows, padded_cols), device=x.device)
            for idh in range(int(math.ceil(1.0 * (padded_rows - crop_size) / stride)) + 1):
                for idw in range(int(math.ceil(1.0 * (padded_cols - crop_size) / stride)) + 1):
                    h0, w0 = idh * stride, idw * stride
                    h1, w1 = min(h0 + crop_size, padded_rows), min(w0 + crop_size, padded_cols)
                    output = network(pad(padded[..., h0:h1, w0:w1]))
                    outputs[..., h0:h1, w0:w1] += output[..., :h1 - h0, :w1 - w0]
                    count[..., h0:h1, w0:w1] += 1
            outputs = (outputs / count)[..., :rows, :cols]
        scores += F.interpolate(outputs, size=(height, width), mode="bilinear", align_corners=True)
    return scores[0]


def predict_mask(segmenter, image: np.ndarray, scales: Sequence[float] = (1.0,), flip: bool = False,
                 window: int = 0, stride: int = 0, protocol: str = "single") -> np.ndarray:
    """[H, W] label indices; single scale without flip or window is exactly ``segment``;
    ``protocol`` "lseg_multiscale" is :func:`lseg_multiscale_logits` over ``scales``."""
    if protocol == "lseg_multiscale":
        best_name = lseg_multiscale_logits(segmenter, image, scales, flip).argmax(0)
        groups = segmenter.label_set.name_groups  # synonyms: the label of the best name
        return (best_name if groups is None else groups[best_name]).cpu().numpy()
    if tuple(scales) == (1.0,) and not flip and window <= 0:
        return segmenter.segment(image, return_confidences=False).mask
    return predict_probabilities(segmenter, image, scales, flip, window, stride).argmax(0).cpu().numpy()


def iter_predictions(segmenter, dataset, scales: Sequence[float] = (1.0,), flip: bool = False,
                     window: int = 0, stride: int = 0, max_images: int = 0,
                     progress: bool = False,
                     protocol: str = "single") -> Iterator[Tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """(index, image, predicted mask, ground truth) for the dataset's samples (untransformed)."""
    count = len(dataset) if max_images <= 0 else min(max_images, len(dataset))
    indices = range(count)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="evaluating", unit="image", leave=False)
    for index in indices:
        image, target = dataset.load(index)
        yield index, image, predict_mask(segmenter, image, scales, flip, window, stride, protocol), target


def evaluate_segmenter(segmenter, dataset, scales: Sequence[float] = (1.0,), flip: bool = False,
                       window: int = 0, stride: int = 0, max_images: int = 0,
                       unseen: Optional[Sequence[str]] = None, progress: bool = False,
                       label_names: Optional[Sequence[str]] = None) -> dict:
    """Scores the segmenter's predictions with ``label_names`` (default: the dataset's prompt
    names, label i for class i) as its label set; see :func:`evaluate_predictions`."""
    label_names = list(label_names or dataset.prompt_names)
    if len(label_names) != dataset.num_classes:
        raise ValueError(f"{len(label_names)} label names for {dataset.num_classes} classes")
    if segmenter.labels != label_names:
        segmenter.set_labels(label_names)
    pairs = ((pred, target) for _, _, pred, target in
             iter_predictions(segmenter, dataset, scales, flip, window, stride, max_images, progress))
    return evaluate_predictions(pairs, dataset.class_names, dataset.ignore_index, unseen)


# --------------------------------------------------------------------- reports
def write_report(out: Path, summary: dict, info: dict) -> None:
    """metrics.json, report.md and per_class_iou.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({**summary, **info}, indent=2, default=str))
    lines = [f"# Evaluation: {info.get('dataset', '')}", "",
             f"- model: {info.get('model', '')}",
             f"- images: {summary['images']}, pixels: {summary['pixels']}",
             f"- inference: {info.get('inference', '')}",
             f"- time: {info.get('seconds', 0):.1f} s ({info.get('seconds_per_image', 0):.3f} s/image)", "",
             "| metric | value |", "|---|---|"]
    for key in ("miou", "pixel_accuracy", "mean_accuracy", "miou_seen", "miou_unseen", "hiou"):
        if key in summary:
            lines.append(f"| {key} | {summary[key]:.4f} |")
    unseen = set(info.get("unseen") or [])
    lines += ["", "| class | IoU |", "|---|---|"]
    for name, iou in summary["per_class_iou"].items():
        lines.append(f"| {name}{' (unseen)' if name in unseen else ''} | {iou:.4f} |")
    lines += ["", "## Configuration", "", "```yaml"]
    lines += [f"{key}: {value}" for key, value in info.get("config", {}).items()]
    lines += ["```", ""]
    (out / "report.md").write_text("\n".join(lines))
    plot_per_class_iou(summary["per_class_iou"], out / "per_class_iou.png", unseen)


def plot_per_class_iou(per_class_iou: dict, path: Path, unseen=frozenset()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(per_class_iou)
    values = [0.0 if np.isnan(v) else v for v in per_class_iou.values()]
    figure, axes = plt.subplots(figsize=(max(4.0, 0.35 * len(names) + 1.5), 3.5))
    colors = ["tab:orange" if name in unseen else "tab:blue" for name in names]
    axes.bar(range(len(names)), values, color=colors)
    axes.set_xticks(range(len(names)))
    axes.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    axes.set_ylim(0, 1)
    axes.set_ylabel("IoU")
    axes.set_title(f"per-class IoU (mIoU {np.nanmean(list(per_class_iou.values())):.3f})")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def save_overlay(path: Path, image: np.ndarray, prediction: np.ndarray, target: np.ndarray,
                 labels: Sequence[str]) -> None:
    """Image | prediction overlay | ground-truth overlay, with a legend."""
    from PIL import Image

    from .viz import add_legend, label_colors, overlay

    colors = label_colors(len(labels))
    gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
    row = np.concatenate([image, gap, overlay(image, prediction, colors), gap,
                          overlay(image, np.where(target < 0, len(labels), target), colors)], axis=1)
    Image.fromarray(add_legend(row, labels, colors)).save(path)


# ------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lseg-eval", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="generic", help="dataset kind: " + " | ".join(sorted(DATASETS)))
    parser.add_argument("--root", type=Path, required=True, help="dataset root folder")
    parser.add_argument("--split", default="val", help="dataset split (generic: 'all' for every image)")
    parser.add_argument("--config", type=Path, help="SegmenterConfig YAML (e.g. lseg_ros/weights/*.yaml)")
    parser.add_argument("--out", type=Path, default=Path("lseg_eval"), help="output folder")
    parser.add_argument("--class-names", default=None, choices=("sclip", "clearclip", "maskclip", "lseg", "plain"),
                        help="label texts: the references' class-name files (sclip: SCLIP's and NACLIP's, with "
                             "synonyms; clearclip; maskclip; lseg) or the plain class names; default: the "
                             "profile's (sclip for robot)")
    parser.add_argument("--label-names", default="",
                        help="comma-separated label texts replacing the class names (';' between synonyms)")
    parser.add_argument("--scales", default="1.0", help="comma-separated input scales")
    parser.add_argument("--multi-scale", action="store_true", help=f"LSeg's scales {LSEG_SCALES} with flip")
    parser.add_argument("--flip", action="store_true", help="also average horizontally flipped inputs")
    parser.add_argument("--window", type=int, default=0, help="sliding-window size in model-input pixels")
    parser.add_argument("--stride", type=int, default=0, help="sliding-window stride (default 2/3 window)")
    parser.add_argument("--unseen", default="", help="comma-separated unseen class names (zero-shot split)")
    parser.add_argument("--max-images", type=int, default=0, help="evaluate only the first N images")
    parser.add_argument("--overlays", type=int, default=4, help="number of overlay PNGs to write")
    add_config_arguments(parser)
    return parser


def _dataset_label_names(dataset, kind: str, source: str) -> List[str]:
    """The dataset's label texts for ``--class-names``: the references' file where there is
    one for the dataset, else (and for 'plain') its class names."""
    from .data.datasets import REFERENCE_NAME_FILES, DatasetError, load_reference_names

    if source == "plain" or kind not in REFERENCE_NAME_FILES:
        return list(dataset.class_names)
    try:
        return load_reference_names(kind, source)
    except DatasetError as error:
        print(f"lseg-eval: {error}; using the dataset's class names", file=sys.stderr)
        return list(dataset.class_names)


def _names(text: str) -> List[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .data import build_dataset
    from .segmenter import Segmenter
    from .weights import WeightsError

    try:
        config = config_from_args(args, dataset=args.dataset)  # a profile brings its settings for the dataset
        profile = get_profile(config.profile)
        dataset = build_dataset(args.dataset, args.root, args.split)
        label_names = parse_label_text(args.label_names) or _dataset_label_names(
            dataset, args.dataset, args.class_names or profile.names)
        if len(label_names) != dataset.num_classes:
            raise ValueError(f"--label-names gives {len(label_names)} names for {dataset.num_classes} classes")
        unseen = _names(args.unseen)
        class_indices(unseen, dataset.class_names)
        scales = LSEG_SCALES if args.multi_scale else tuple(float(s) for s in _names(args.scales))
        protocol = profile.evaluation
        if protocol == "lseg_multiscale":
            scales = LSEG_CITYSCAPES_SCALES if args.dataset == "cityscapes" else LSEG_SCALES
        config.labels = []
        segmenter = Segmenter(config)
        segmenter.set_labels(label_names)
    except (ValueError, OSError, WeightsError) as error:
        print(f"lseg-eval: {error}", file=sys.stderr)
        return 2
    flip = args.flip or args.multi_scale or protocol == "lseg_multiscale"
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    def scored():
        for index, image, prediction, target in iter_predictions(segmenter, dataset, scales, flip, args.window,
                                                                 args.stride, args.max_images, progress=True,
                                                                 protocol=protocol):
            if index < args.overlays:
                stem = Path(dataset.samples[index][0]).stem
                save_overlay(args.out / f"overlay_{stem}.png", image, prediction, target, dataset.class_names)
            yield prediction, target

    summary = evaluate_predictions(scored(), dataset.class_names, dataset.ignore_index, unseen or None)
    seconds = time.perf_counter() - start
    inference = (f"profile {profile.name} ({profile.source or 'lseg_ros'}), protocol {protocol}, "
                 f"scales {list(scales)}, flip {flip}, window {args.window}, stride {args.stride}")
    info = dict(dataset=f"{dataset.name} ({args.root}, split {args.split})", model=segmenter.description,
                inference=inference, unseen=unseen, seconds=seconds,
                seconds_per_image=seconds / max(1, summary["images"]), config=flatten(config))
    write_report(args.out, summary, info)
    print(f"lseg-eval: mIoU {summary['miou']:.4f}, pixel accuracy {summary['pixel_accuracy']:.4f} "
          f"on {summary['images']} images; report in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
