"""Low-resolution label logits -> full-resolution mask and confidence maps, within a memory budget.

The logits of one image are small ([N, h, w] at the model's resolution); the outputs are
not: N full-resolution float32 maps of a 4096x4096 frame with 255 labels take 17 GB. So
the upsampling is done in bands (of columns, or of rows when needed; see
:func:`upsampled_bands`) whose work fits in half of ``budget_bytes``, and the confidence
maps are returned at full resolution only when they fit in the other half; otherwise both
sides are scaled down by the same factor (the caller records the size). The bands give
what resizing the whole map at once gives (:func:`resize_logits`: the backend's own
upsample, e.g. LSeg's x2 with ``align_corners=True``, then one bilinear
``align_corners=False`` resize); when everything fits, that is what runs.

Memory held at once: one band's work (at most half the budget), the mask and the
confidence maps (at most half the budget), whatever the frame size and label count.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

#: float32 tensors of a band's size alive at once while it is classified (interpolated
#: values, gathered source rows in row bands, the blend, the softmax and its temporaries)
_BAND_TENSORS = 6
_FLOAT_BYTES = 4


@dataclass(frozen=True)
class OutputPlan:
    """How one image's outputs are computed within the budget."""

    out_size: Tuple[int, int]  # (H, W) of the mask
    confidence_size: Tuple[int, int]  # (Hc, Wc) of the confidence maps; == out_size when they fit
    work_bytes: int  # for one band's work

    @property
    def confidence_scale(self) -> float:
        """Confidence map size / mask size (1.0 at full resolution)."""
        return self.confidence_size[0] / self.out_size[0]


def plan_outputs(labels: int, logits_size: Tuple[int, int], out_size: Tuple[int, int],
                 budget_bytes: int, confidence_scale: float = 1.0) -> OutputPlan:
    """Confidence size and band work for ``labels`` maps of ``logits_size`` -> ``out_size``:
    half the budget for the confidence maps, half for the work of one band. The maps are at
    ``confidence_scale`` x the output size (rounded down to whole pixels), or smaller when
    that does not fit in their half."""
    height, width = out_size
    scale = min(1.0, float(confidence_scale))
    full_bytes = labels * height * width * _FLOAT_BYTES
    if full_bytes * scale * scale > budget_bytes // 2:
        scale = math.sqrt((budget_bytes // 2) / full_bytes)
    if scale >= 1.0:
        confidence_size = (height, width)
    else:
        confidence_size = (max(1, int(height * scale)), max(1, int(width * scale)))
    return OutputPlan(out_size, confidence_size, budget_bytes // 2)


Region = Tuple[slice, slice]


def resize_logits(logits: torch.Tensor, size: Tuple[int, int], pre_scale: int = 1) -> torch.Tensor:
    """Label logits [..., N, h, w] at ``size``, the reference way: first the backend's own
    upsample by ``pre_scale`` (bilinear, ``align_corners=True``: LSeg's ``output_conv``),
    then bilinear with ``align_corners=False`` to ``size`` (skipped when already there)."""
    squeeze = logits.dim() == 3
    values = logits[None] if squeeze else logits
    if pre_scale > 1:
        values = F.interpolate(values, size=(values.shape[-2] * pre_scale, values.shape[-1] * pre_scale),
                               mode="bilinear", align_corners=True)
    if tuple(values.shape[-2:]) != tuple(size):
        values = F.interpolate(values, size=tuple(size), mode="bilinear", align_corners=False)
    return values[0] if squeeze else values


def upsampled_bands(logits: torch.Tensor, out_size: Tuple[int, int], work_bytes: int,
                    pre_scale: int = 1) -> Iterator[Tuple[Region, torch.Tensor]]:
    """(region (rows, columns), values [N, rows, columns]) covering
    ``resize_logits(logits, out_size, pre_scale)`` for ``logits`` [N, h, w], each band's
    work within ``work_bytes``.

    Column bands (the usual case): the logits are resized along the width once
    ([N, h, W], small), then each band of columns along the height with ``F.interpolate``
    (bilinear is separable: the same weights as the 2D resize). When even the width pass
    does not fit (huge label counts at huge widths), row bands: each output row blends its
    source rows with PyTorch's source-index and weight rules."""
    labels, in_height, _ = logits.shape
    height, width = out_size
    band_bytes_per_line = labels * _FLOAT_BYTES * _BAND_TENSORS
    if band_bytes_per_line * height * width <= work_bytes:
        yield (slice(0, height), slice(0, width)), resize_logits(logits, out_size, pre_scale)
        return
    # the width pass's result, plus the backend's upsampled logits it is made from (when any)
    middle = pre_scale if pre_scale > 1 else 0
    along_width_bytes = labels * in_height * (width + middle * logits.shape[2]) * _FLOAT_BYTES
    columns = (work_bytes - along_width_bytes) // (labels * _FLOAT_BYTES * (_BAND_TENSORS * height
                                                                          + middle * in_height))
    if along_width_bytes <= work_bytes // 2 and columns >= 1:
        along_width = _resize_width(logits, width, pre_scale)  # [N, h, W]
        for x0 in range(0, width, columns):
            x1 = min(width, x0 + columns)
            yield (slice(0, height), slice(x0, x1)), _resize_height(along_width[:, :, x0:x1], height, pre_scale)
        return
    yield from _row_bands(logits, out_size, work_bytes, pre_scale)


def _resize_width(values: torch.Tensor, width: int, pre_scale: int) -> torch.Tensor:
    """[N, h, w] -> [N, h, width]: both resize steps along the width only (along the height,
    same-size bilinear is the identity, exactly)."""
    rows = values.shape[1]
    if pre_scale > 1:
        values = F.interpolate(values[None], size=(rows, values.shape[2] * pre_scale), mode="bilinear",
                               align_corners=True)[0]
    if values.shape[2] != width:
        values = F.interpolate(values[None], size=(rows, width), mode="bilinear", align_corners=False)[0]
    return values


def _resize_height(values: torch.Tensor, height: int, pre_scale: int) -> torch.Tensor:
    """[N, h, c] -> [N, height, c]: both resize steps along the height only."""
    columns = values.shape[2]
    if pre_scale > 1:
        values = F.interpolate(values[None], size=(values.shape[1] * pre_scale, columns), mode="bilinear",
                               align_corners=True)[0]
    if values.shape[1] != height:
        values = F.interpolate(values[None], size=(height, columns), mode="bilinear", align_corners=False)[0]
    return values


def bilinear_source_rows(in_size: int, out_size: int, device=None, align_corners: bool = False):
    """(i0, i1, weight of i1) per output index, as PyTorch's bilinear has them."""
    index = torch.arange(out_size, dtype=torch.float32)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        source = index * torch.tensor(scale, dtype=torch.float32)
    else:
        scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
        source = ((index + 0.5) * scale - 0.5).clamp_min(0.0)
    first = source.floor().long().clamp_max(in_size - 1)
    second = (first + 1).clamp_max(in_size - 1)
    weight = (source - first.float()).clamp(0.0, 1.0)
    return first.to(device), second.to(device), weight.to(device)


def _blend(rows: torch.Tensor, first, second, weight) -> torch.Tensor:
    blend = weight[:, None]  # [b, 1]
    return rows[:, first] * (1.0 - blend) + rows[:, second] * blend


def _row_bands(logits: torch.Tensor, out_size: Tuple[int, int], work_bytes: int, pre_scale: int):
    labels, in_height, _ = logits.shape
    height, width = out_size
    middle_height = in_height * pre_scale  # rows after the backend's own upsample
    source_rows_per_row = middle_height / height  # > 1 when the output is smaller than the logits
    rows_per_band = int(max(1, work_bytes // (labels * width * _FLOAT_BYTES
                                              * (_BAND_TENSORS + 2 * source_rows_per_row))))
    first, second, weight = bilinear_source_rows(middle_height, height, logits.device)
    if pre_scale > 1:
        first_in, second_in, weight_in = bilinear_source_rows(in_height, middle_height, logits.device,
                                                              align_corners=True)
    for y0 in range(0, height, rows_per_band):
        y1 = min(height, y0 + rows_per_band)
        top, bottom = int(first[y0]), int(second[y1 - 1]) + 1  # middle rows this band reads
        if pre_scale > 1:
            top_in, bottom_in = int(first_in[top]), int(second_in[bottom - 1]) + 1  # logits rows read
            rows = _resize_width(logits[:, top_in:bottom_in], width, pre_scale)  # [N, rows, W]
            middle = _blend(rows, first_in[top:bottom] - top_in, second_in[top:bottom] - top_in,
                            weight_in[top:bottom])  # [N, bottom - top, W]
        else:
            middle = _resize_width(logits[:, top:bottom], width, 1)
        band = _blend(middle, first[y0:y1] - top, second[y0:y1] - top, weight[y0:y1])  # [N, b, W]
        yield (slice(y0, y1), slice(0, width)), band


@dataclass(frozen=True)
class LabelRules:
    """How one image's name logits become labels: the papers' post-processing.

    ``name_groups`` [M] maps each query name to its label (None: one name per label): the
    softmax runs over every name, then each label takes its best name's probability (as
    NACLIP, SCLIP and ClearCLIP do with their class-name files). ``thresholds`` [N]: a pixel
    whose best label probability is below its label's threshold gets ``below_value``
    (unknown_value, or the background label). ``area_threshold`` (SCLIP): labels other than
    ``area_exempt`` predicted on less than this fraction of the pixels not predicted as
    ``area_exempt`` are dropped (probability 0), so their pixels take the next best label."""

    num_labels: int
    name_groups: Optional[torch.Tensor] = None
    thresholds: Optional[torch.Tensor] = None
    below_value: int = 255
    area_threshold: float = 0.0
    area_exempt: int = -1


def label_probabilities(band: torch.Tensor, rules: LabelRules, keep: Optional[torch.Tensor] = None) -> torch.Tensor:
    """[N, ...] label probabilities of name logits ``band`` [M, ...]: softmax over names, the
    best name of each label, labels not in ``keep`` ([N] bool) zeroed."""
    probabilities = band.softmax(dim=0)
    if rules.name_groups is not None:
        index = rules.name_groups.view(-1, *([1] * (band.dim() - 1))).expand_as(probabilities)
        grouped = probabilities.new_zeros((rules.num_labels,) + tuple(band.shape[1:]))
        probabilities = grouped.scatter_reduce_(0, index, probabilities, reduce="amax", include_self=True)
    if keep is not None:
        probabilities = probabilities * keep.view(-1, *([1] * (band.dim() - 1))).to(probabilities.dtype)
    return probabilities


def kept_by_area(counts: torch.Tensor, rules: LabelRules) -> torch.Tensor:
    """[N] bool: labels that survive SCLIP's area filter given per-label pixel ``counts`` [N]
    of the unfiltered prediction (the exempt label always does; without an exempt label the
    largest label always does, so that every pixel keeps a label)."""
    counts = counts.to(torch.float64)
    candidates = torch.ones_like(counts, dtype=torch.bool)
    if rules.area_exempt >= 0:
        candidates[rules.area_exempt] = False
    total = counts[candidates].sum()
    keep = (counts > rules.area_threshold * total) | ~candidates
    if rules.area_exempt < 0:
        keep[int(counts.argmax())] = True
    return keep


def classify_bands(logits: torch.Tensor, plan: OutputPlan, rules: LabelRules, mask_dtype: torch.dtype,
                   want_confidences: bool, pre_scale: int = 1,
                   confidence_dtype: torch.dtype = torch.float32) -> Tuple[torch.Tensor, Optional[np.ndarray]]:
    """(mask [H, W] on logits' device, confidences [N, Hc, Wc] numpy of ``confidence_dtype``
    (float32 or float16, converted on the device before the copy) or None) of one image's
    name ``logits`` [M, h, w] (float32), resized as :func:`resize_logits` with ``pre_scale``
    and turned into labels by ``rules`` (:class:`LabelRules`). With synonyms a label's
    confidence is its best name's probability, so the maps need not sum to 1."""
    numpy_dtype = np.float16 if confidence_dtype == torch.float16 else np.float32
    height, width = plan.out_size
    keep = None
    if rules.area_threshold > 0:  # a first, mask-only pass counts each label's pixels
        counts = torch.zeros(rules.num_labels, dtype=torch.int64, device=logits.device)
        for _, band in upsampled_bands(logits, plan.out_size, plan.work_bytes, pre_scale):
            counts += torch.bincount(_best_labels(band, rules).flatten(), minlength=rules.num_labels)
        keep = kept_by_area(counts, rules)
    mask = torch.empty((height, width), dtype=mask_dtype, device=logits.device)
    confidences = None
    full_confidences = want_confidences and plan.confidence_size == plan.out_size
    if full_confidences:
        confidences = np.empty((rules.num_labels, height, width), dtype=numpy_dtype)
    for region, band in upsampled_bands(logits, plan.out_size, plan.work_bytes, pre_scale):
        if full_confidences or rules.thresholds is not None or keep is not None:
            probabilities = label_probabilities(band, rules, keep)  # [N, rows, columns]
            best, index = probabilities.max(dim=0)  # [rows, columns]
            if full_confidences:
                confidences[(slice(None),) + region] = probabilities.to(confidence_dtype).cpu().numpy()
            del probabilities
        else:
            best, index = None, _best_labels(band, rules)
        del band
        if rules.thresholds is not None:
            index = torch.where(best < rules.thresholds[index], torch.full_like(index, rules.below_value), index)
        mask[region] = index.to(mask_dtype)
    if want_confidences and not full_confidences:
        confidences = reduced_confidences(logits, plan, pre_scale, rules, keep, confidence_dtype)
    return mask, confidences


def _best_labels(band: torch.Tensor, rules: LabelRules) -> torch.Tensor:
    """The label of each pixel's best name (the argmax of the label probabilities: the best
    label holds the best name), without the softmax."""
    index = band.max(dim=0).indices  # (argmax over dim 0 is several times slower on the CPU)
    return index if rules.name_groups is None else rules.name_groups[index]


def reduced_confidences(logits: torch.Tensor, plan: OutputPlan, pre_scale: int = 1,
                        rules: Optional[LabelRules] = None, keep: Optional[torch.Tensor] = None,
                        confidence_dtype: torch.dtype = torch.float32) -> np.ndarray:
    """Label confidences [N, Hc, Wc] of name ``logits`` [M, h, w] at the plan's reduced size."""
    rules = rules or LabelRules(logits.shape[0])
    height, width = plan.confidence_size
    numpy_dtype = np.float16 if confidence_dtype == torch.float16 else np.float32
    confidences = np.empty((rules.num_labels, height, width), dtype=numpy_dtype)
    for region, band in upsampled_bands(logits, plan.confidence_size, plan.work_bytes, pre_scale):
        probabilities = label_probabilities(band, rules, keep)
        confidences[(slice(None),) + region] = probabilities.to(confidence_dtype).cpu().numpy()
    return confidences
