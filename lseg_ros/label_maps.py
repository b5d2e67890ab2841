"""Low-resolution label logits -> full-resolution mask and confidence maps, within a memory budget.

The logits of one image are small ([N, h, w] at the model's resolution); the outputs are
not: N full-resolution float32 maps of a 4096x4096 frame with 255 labels take 17 GB. So
the upsampling is done in bands (of columns, or of rows when needed; see
:func:`upsampled_bands`) whose work fits in half of ``budget_bytes``, and the confidence
maps are returned at full resolution only when they fit in the other half; otherwise both
sides are scaled down by the same factor (the caller records the size). The bands give
what one ``F.interpolate(mode="bilinear", align_corners=False)`` of the whole map gives;
when everything fits, that one call is it.

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
                 budget_bytes: int) -> OutputPlan:
    """Confidence size and band work for ``labels`` maps of ``logits_size`` -> ``out_size``:
    half the budget for the confidence maps, half for the work of one band."""
    height, width = out_size
    full_bytes = labels * height * width * _FLOAT_BYTES
    if full_bytes <= budget_bytes // 2:
        confidence_size = (height, width)
    else:
        scale = math.sqrt((budget_bytes // 2) / full_bytes)
        confidence_size = (max(1, int(height * scale)), max(1, int(width * scale)))
    return OutputPlan(out_size, confidence_size, budget_bytes // 2)


Region = Tuple[slice, slice]


def upsampled_bands(logits: torch.Tensor, out_size: Tuple[int, int],
                    work_bytes: int) -> Iterator[Tuple[Region, torch.Tensor]]:
    """(region (rows, columns), values [N, rows, columns]) covering ``logits`` [N, h, w]
    bilinearly resized to ``out_size``, each band's work within ``work_bytes``.

    Column bands (the usual case): the logits are interpolated along the width once
    ([N, h, W], small), then each band of columns along the height with ``F.interpolate``,
    which gives exactly what one 2D call gives. When even the width pass does not fit
    (huge label counts at huge widths), row bands: each output row blends its two source
    rows with PyTorch's source-index and weight rule."""
    labels, in_height, _ = logits.shape
    height, width = out_size
    band_bytes_per_line = labels * _FLOAT_BYTES * _BAND_TENSORS
    if band_bytes_per_line * height * width <= work_bytes:
        yield (slice(0, height), slice(0, width)), _resize(logits, out_size)
        return
    along_width_bytes = labels * in_height * width * _FLOAT_BYTES
    columns = (work_bytes - along_width_bytes) // (band_bytes_per_line * height)
    if along_width_bytes <= work_bytes // 2 and columns >= 1:
        along_width = _resize(logits, (in_height, width))  # [N, h, W]; exact: no blend along the height
        for x0 in range(0, width, columns):
            x1 = min(width, x0 + columns)
            yield (slice(0, height), slice(x0, x1)), _resize(along_width[:, :, x0:x1], (height, x1 - x0))
        return
    yield from _row_bands(logits, out_size, work_bytes)


def _resize(values: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    return F.interpolate(values[None], size=size, mode="bilinear", align_corners=False)[0]


def bilinear_source_rows(in_size: int, out_size: int, device=None):
    """(i0, i1, weight of i1) per output index, as PyTorch's bilinear (align_corners=False) has them."""
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    source = ((torch.arange(out_size, dtype=torch.float32) + 0.5) * scale - 0.5).clamp_min(0.0)
    first = source.floor().long().clamp_max(in_size - 1)
    second = (first + 1).clamp_max(in_size - 1)
    weight = (source - first.float()).clamp(0.0, 1.0)
    return first.to(device), second.to(device), weight.to(device)


def _row_bands(logits: torch.Tensor, out_size: Tuple[int, int], work_bytes: int):
    labels, in_height, _ = logits.shape
    height, width = out_size
    source_rows_per_row = in_height / height  # > 1 when the output is smaller than the logits
    rows_per_band = int(max(1, work_bytes // (labels * width * _FLOAT_BYTES * (_BAND_TENSORS + source_rows_per_row))))
    first, second, weight = bilinear_source_rows(in_height, height, logits.device)
    for y0 in range(0, height, rows_per_band):
        y1 = min(height, y0 + rows_per_band)
        top, bottom = int(first[y0]), int(second[y1 - 1]) + 1  # source rows this band reads
        rows = _resize(logits[:, top:bottom], (bottom - top, width))  # [N, rows, W]: along the width only
        blend = weight[y0:y1, None]  # [b, 1]
        band = rows[:, first[y0:y1] - top] * (1.0 - blend) + rows[:, second[y0:y1] - top] * blend  # [N, b, W]
        yield (slice(y0, y1), slice(0, width)), band


def classify_bands(logits: torch.Tensor, plan: OutputPlan, thresholds: Optional[torch.Tensor],
                   unknown_value: int, mask_dtype: torch.dtype,
                   want_confidences: bool) -> Tuple[torch.Tensor, Optional[np.ndarray]]:
    """(mask [H, W] on logits' device, confidences [N, Hc, Wc] float32 numpy or None) of one
    image's ``logits`` [N, h, w] (float32). Pixels whose best softmax confidence is below
    their label's threshold get ``unknown_value`` (``thresholds`` None: no thresholding)."""
    labels = logits.shape[0]
    height, width = plan.out_size
    mask = torch.empty((height, width), dtype=mask_dtype, device=logits.device)
    confidences = None
    full_confidences = want_confidences and plan.confidence_size == plan.out_size
    if full_confidences:
        confidences = np.empty((labels, height, width), dtype=np.float32)
    for region, band in upsampled_bands(logits, plan.out_size, plan.work_bytes):
        if full_confidences or thresholds is not None:
            probabilities = band.softmax(dim=0)  # [N, rows, columns]
            best, index = probabilities.max(dim=0)  # [rows, columns]
            if full_confidences:
                confidences[(slice(None),) + region] = probabilities.cpu().numpy()
            del probabilities
        else:
            best, index = band.max(dim=0)  # (argmax over dim 0 is several times slower on the CPU)
        del band
        if thresholds is not None:
            index = torch.where(best < thresholds[index], torch.full_like(index, unknown_value), index)
        mask[region] = index.to(mask_dtype)
    if want_confidences and not full_confidences:
        confidences = reduced_confidences(logits, plan)
    return mask, confidences


def reduced_confidences(logits: torch.Tensor, plan: OutputPlan) -> np.ndarray:
    """Softmax confidences [N, Hc, Wc] of ``logits`` [N, h, w] at the plan's reduced size."""
    labels = logits.shape[0]
    height, width = plan.confidence_size
    confidences = np.empty((labels, height, width), dtype=np.float32)
    for region, band in upsampled_bands(logits, plan.confidence_size, plan.work_bytes):
        confidences[(slice(None),) + region] = band.softmax(dim=0).cpu().numpy()
    return confidences
