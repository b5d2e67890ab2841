"""Segmentation metrics from an accumulated confusion matrix (no ROS, numpy only).

Rows are ground-truth classes, columns predicted classes. Pixels whose target is
``ignore_index`` are skipped; predictions outside ``0..num_classes-1`` (for example an
'unknown' value) count as wrong for their target class and as nobody's false positive.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np


def _as_numpy(values) -> np.ndarray:
    if hasattr(values, "detach"):  # torch.Tensor, on any device
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


class ConfusionMatrix:
    """Accumulates pixel counts over any number of ``update(pred, target)`` calls."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        # [K, K + 1]: last column counts predictions outside 0..K-1
        self._counts = np.zeros((self.num_classes, self.num_classes + 1), dtype=np.int64)

    @property
    def matrix(self) -> np.ndarray:
        """[K, K] counts: matrix[target, pred]."""
        return self._counts[:, :self.num_classes]

    @property
    def total(self) -> int:
        """Number of counted (non-ignored) pixels."""
        return int(self._counts.sum())

    def reset(self) -> None:
        self._counts[:] = 0

    def update(self, pred, target) -> None:
        """Adds a batch: ``pred`` and ``target`` are integer arrays/tensors of one shape."""
        pred, target = _as_numpy(pred), _as_numpy(target)
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {pred.shape} must equal target shape {target.shape}")
        for name, values in (("pred", pred), ("target", target)):
            if not np.issubdtype(values.dtype, np.integer):
                raise ValueError(
                    f"{name} must hold integer class indices, got dtype {values.dtype}")
        pred, target = pred.reshape(-1).astype(np.int64), target.reshape(-1).astype(np.int64)
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]
        bad = (target < 0) | (target >= self.num_classes)
        if bad.any():
            raise ValueError(
                f"target holds class indices {sorted(set(target[bad].tolist()))[:10]} outside "
                f"0..{self.num_classes - 1} that are not ignore_index {self.ignore_index}")
        pred = np.where((pred < 0) | (pred >= self.num_classes), self.num_classes, pred)
        width = self.num_classes + 1
        counts = np.bincount(target * width + pred, minlength=self.num_classes * width)
        self._counts += counts.reshape(self.num_classes, width)

    def _true_positives(self) -> np.ndarray:
        return np.diag(self.matrix).astype(np.float64)

    def iou(self) -> np.ndarray:
        """[K] intersection over union; NaN for classes absent from pred and target."""
        true_pos = self._true_positives()
        target_total = self._counts.sum(axis=1)  # includes out-of-range predictions
        pred_total = self.matrix.sum(axis=0)
        union = (target_total + pred_total - true_pos).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, true_pos / union, np.nan)

    def miou(self) -> float:
        return _nanmean(self.iou())

    def pixel_accuracy(self) -> float:
        total = self.total
        return float(self._true_positives().sum() / total) if total else float("nan")

    def class_accuracy(self) -> np.ndarray:
        """[K] recall per class; NaN for classes absent from the target."""
        target_total = self._counts.sum(axis=1).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(target_total > 0, self._true_positives() / target_total, np.nan)

    def mean_accuracy(self) -> float:
        return _nanmean(self.class_accuracy())

    def summary(self, class_names: Sequence[str],
                unseen: Optional[Iterable[int]] = None) -> dict:
        """miou, pixel_accuracy, mean_accuracy, per_class_iou {name: iou}; with
        ``unseen`` class indices also miou_seen, miou_unseen and their harmonic mean
        hiou (zero-shot evaluation)."""
        if len(class_names) != self.num_classes:
            raise ValueError(f"got {len(class_names)} class names for a {self.num_classes}-class "
                             "confusion matrix; pass one name per class")
        iou = self.iou()
        result = {
            "miou": _nanmean(iou),
            "pixel_accuracy": self.pixel_accuracy(),
            "mean_accuracy": self.mean_accuracy(),
            "per_class_iou": {name: float(v) for name, v in zip(class_names, iou)},
        }
        if unseen is not None:
            unseen = sorted(set(int(i) for i in unseen))
            outside = [i for i in unseen if not 0 <= i < self.num_classes]
            if outside:
                raise ValueError(f"unseen class indices {outside} are outside "
                                 f"0..{self.num_classes - 1}")
            is_unseen = np.zeros(self.num_classes, dtype=bool)
            is_unseen[unseen] = True
            seen_miou, unseen_miou = _nanmean(iou[~is_unseen]), _nanmean(iou[is_unseen])
            result.update(miou_seen=seen_miou, miou_unseen=unseen_miou,
                          hiou=harmonic_mean(seen_miou, unseen_miou))
        return result


def harmonic_mean(a: float, b: float) -> float:
    """2ab / (a + b); 0 when both are 0, NaN when either is NaN."""
    if np.isnan(a) or np.isnan(b):
        return float("nan")
    return 0.0 if a + b == 0 else float(2 * a * b / (a + b))
