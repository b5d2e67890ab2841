"""Confusion-matrix metrics, checked against values computed by hand."""
import math

import numpy as np
import pytest
import torch

from lseg_ros.metrics import ConfusionMatrix, harmonic_mean


def two_class_confusion():
    """target 0 0 0 1 1 1 1 1 / pred 0 0 1 1 1 1 0 1.
    class 0: TP 2, FN 1, FP 1 -> IoU 2/4; class 1: TP 4, FN 1, FP 1 -> IoU 4/6."""
    target = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    pred = np.array([0, 0, 1, 1, 1, 1, 0, 1])
    matrix = ConfusionMatrix(num_classes=2)
    matrix.update(pred, target)
    return matrix


def test_perfect_prediction_gives_miou_and_accuracy_of_one():
    target = np.random.default_rng(0).integers(0, 4, (16, 16))
    matrix = ConfusionMatrix(4)
    matrix.update(target, target)
    assert matrix.miou() == 1.0 and matrix.pixel_accuracy() == 1.0
    assert matrix.mean_accuracy() == 1.0


def test_known_confusion_gives_hand_computed_iou_and_accuracies():
    matrix = two_class_confusion()
    assert matrix.matrix.tolist() == [[2, 1], [1, 4]]
    assert np.allclose(matrix.iou(), [2 / 4, 4 / 6])
    assert math.isclose(matrix.miou(), (2 / 4 + 4 / 6) / 2)
    assert math.isclose(matrix.pixel_accuracy(), 6 / 8)
    assert math.isclose(matrix.mean_accuracy(), (2 / 3 + 4 / 5) / 2)


def test_ignored_target_pixels_do_not_count():
    matrix = ConfusionMatrix(2, ignore_index=255)
    matrix.update(np.array([0, 1, 1, 0]), np.array([0, 1, 255, 255]))
    assert matrix.total == 2 and matrix.miou() == 1.0


def test_prediction_outside_the_classes_counts_as_wrong_but_as_no_false_positive():
    matrix = ConfusionMatrix(2)
    matrix.update(np.array([0, -1, 1, 9]), np.array([0, 0, 1, 1]))
    # class 0: TP 1, FN 1 (the -1), FP 0 -> 1/2; same for class 1
    assert np.allclose(matrix.iou(), [0.5, 0.5])
    assert math.isclose(matrix.pixel_accuracy(), 0.5)


def test_class_absent_from_prediction_and_target_has_nan_iou_and_is_left_out_of_miou():
    matrix = ConfusionMatrix(3)
    matrix.update(np.array([0, 1]), np.array([0, 1]))
    assert np.isnan(matrix.iou()[2]) and matrix.miou() == 1.0


def test_updates_accumulate_and_accept_torch_tensors():
    matrix = ConfusionMatrix(2)
    matrix.update(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 0, 1]))
    matrix.update(np.array([1, 1, 0, 1]), np.array([1, 1, 1, 1]))
    assert matrix.matrix.tolist() == [[2, 1], [1, 4]]


def test_target_class_outside_range_is_rejected_naming_the_value():
    with pytest.raises(ValueError, match=r"\[5\] outside 0\.\.1"):
        ConfusionMatrix(2).update(np.array([0, 1]), np.array([0, 5]))


def test_mismatched_shapes_are_rejected_naming_both():
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        ConfusionMatrix(2).update(np.zeros(3, int), np.zeros(2, int))


def test_summary_names_per_class_iou():
    summary = two_class_confusion().summary(["floor", "wall"])
    assert summary["per_class_iou"] == pytest.approx({"floor": 0.5, "wall": 4 / 6})
    assert summary["miou"] == pytest.approx(7 / 12)
    assert summary["pixel_accuracy"] == pytest.approx(0.75)
    assert "hiou" not in summary


def test_summary_splits_seen_and_unseen_classes_with_harmonic_mean():
    # three classes, perfect on classes 0 and 1 except: 2 pixels of class 2 predicted 1
    target = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 0, 1, 1, 1, 1, 2, 2])
    matrix = ConfusionMatrix(3)
    matrix.update(pred, target)
    # IoU: class 0 = 1; class 1 = 2/4; class 2 = 2/4
    summary = matrix.summary(["floor", "wall", "cup"], unseen={2})
    assert summary["miou_seen"] == pytest.approx((1 + 0.5) / 2)
    assert summary["miou_unseen"] == pytest.approx(0.5)
    assert summary["hiou"] == pytest.approx(2 * 0.75 * 0.5 / (0.75 + 0.5))


def test_summary_rejects_wrong_number_of_names_and_unknown_unseen_index():
    matrix = two_class_confusion()
    with pytest.raises(ValueError, match="got 3 class names for a 2-class"):
        matrix.summary(["a", "b", "c"])
    with pytest.raises(ValueError, match=r"\[4\]"):
        matrix.summary(["a", "b"], unseen=[4])


def test_harmonic_mean_of_zero_and_zero_is_zero():
    assert harmonic_mean(0.0, 0.0) == 0.0 and math.isnan(harmonic_mean(float("nan"), 1.0))


def test_empty_matrix_reports_nan_without_warnings():
    with np.errstate(all="raise"):
        assert math.isnan(ConfusionMatrix(3).miou())
        assert math.isnan(ConfusionMatrix(3).pixel_accuracy())
