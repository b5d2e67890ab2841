"""Outputs within the memory budget: banded upsampling equals one-shot upsampling, confidence
maps shrink (and say so) past half the budget, and peak memory holds at the accepted limits."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lseg_ros.config import SegmenterConfig
from lseg_ros.label_maps import LabelRules, OutputPlan, classify_bands, plan_outputs, upsampled_bands
from lseg_ros.segmenter import Segmenter

from helpers import TEST_DEVICE

MB = 1024 * 1024


def _work(labels, rows, columns):
    """Work bytes that fit bands of rows x columns of ``labels`` float32 maps (6 live tensors)."""
    return labels * rows * columns * 4 * 6


@pytest.mark.parametrize("logits_size, out_size, work, kind", [
    ((12, 17), (100, 130), _work(6, 100, 130), "one call"),
    ((12, 17), (100, 130), _work(6, 100, 7) + 2 * 6 * 12 * 130 * 4, "column bands"),  # non-integer factor
    ((12, 17), (100, 130), _work(6, 100, 1) + 2 * 6 * 12 * 130 * 4, "column bands"),  # narrow bands
    ((12, 17), (100, 130), _work(6, 3, 130), "row bands"),  # the width pass takes over half the work
    ((12, 17), (100, 130), 1, "row bands"),  # one row at a time
    ((40, 30), (23, 19), _work(6, 4, 19), "row bands"),  # downsampling
    ((40, 30), (23, 19), _work(6, 23, 3) + 6 * 40 * 19 * 4 * 2, "column bands"),
    ((5, 5), (5, 5), _work(6, 2, 5), "column bands"),  # same size
    ((5, 5), (5, 5), _work(6, 2, 5) // 2, "row bands"),
])
def test_bands_cover_the_output_once_and_equal_one_shot_bilinear_upsampling(logits_size, out_size, work, kind):
    logits = torch.randn(6, *logits_size, generator=torch.Generator().manual_seed(0))
    expected = F.interpolate(logits[None], size=out_size, mode="bilinear", align_corners=False)[0]
    stitched = torch.full_like(expected, float("nan"))
    covered = torch.zeros(out_size, dtype=torch.int32)
    bands = list(upsampled_bands(logits, out_size, work))
    for region, band in bands:
        stitched[(slice(None),) + region] = band
        covered[region] += 1
    assert (covered == 1).all()
    torch.testing.assert_close(stitched, expected, rtol=0, atol=1e-5)
    full_height = all(region[0] == slice(0, out_size[0]) for region, _ in bands)
    full_width = all(region[1] == slice(0, out_size[1]) for region, _ in bands)
    assert (full_height, full_width, len(bands) > 1) == {"one call": (True, True, False),
                                                         "column bands": (True, False, True),
                                                         "row bands": (False, True, True)}[kind]


def test_plan_keeps_confidences_within_half_the_budget():
    budget = 64 * MB
    plan = plan_outputs(255, (224, 224), (4096, 4096), budget)
    assert plan.work_bytes == budget // 2
    height, width = plan.confidence_size
    assert 255 * height * width * 4 <= budget // 2 and height == width
    assert plan.confidence_scale == pytest.approx(height / 4096)
    small = plan_outputs(10, (30, 40), (480, 640), 512 * MB)
    assert small.confidence_size == (480, 640) and small.confidence_scale == 1.0


@pytest.mark.parametrize("work", [6 * 40 * 300 * 400 * 4, 6 * 40 * 300 * 9 * 4 + 40 * 24 * 400 * 4 * 2,
                                  6 * 40 * 9 * 400 * 4], ids=["one call", "column bands", "row bands"])
def test_banded_mask_thresholds_and_confidences_equal_the_one_shot_computation(work):
    logits = torch.randn(40, 24, 32, generator=torch.Generator().manual_seed(1)) * 3
    thresholds = torch.full((40,), 0.2)
    plan = OutputPlan((300, 400), (300, 400), work)  # full-size maps
    mask, confidences = classify_bands(logits, plan, LabelRules(40, thresholds=thresholds, below_value=255),
                                       torch.uint8, True)
    reference = F.interpolate(logits[None], size=(300, 400), mode="bilinear", align_corners=False)[0].softmax(0)
    np.testing.assert_allclose(confidences, reference.numpy(), atol=1e-5)
    best, index = reference.max(0)
    expected = torch.where(best < 0.2, torch.full_like(index, 255), index).to(torch.uint8)
    assert (mask == expected).float().mean() > 0.9999
    assert (expected == 255).any() and (expected != 255).any()


def test_confidences_past_half_the_budget_come_at_a_reduced_resolution_that_is_recorded():
    segmenter = Segmenter(SegmenterConfig(model="lseg-test-tiny-ViT", pretrained="random", device=TEST_DEVICE,
                                          short_side=64, memory_budget_mb=16, labels=[]))
    segmenter.set_labels([f"label {i}" for i in range(40)])
    image = np.random.default_rng(3).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    result = segmenter.segment(image)
    assert result.mask.shape == (600, 800)
    labels, height, width = result.confidences.shape
    assert labels == 40 and result.confidences.nbytes <= 8 * MB
    assert result.confidence_scale == pytest.approx(height / 600) and abs(width - 800 * result.confidence_scale) <= 2
    np.testing.assert_allclose(result.confidences.sum(0), 1.0, atol=1e-5)
    segmenter.config.memory_budget_mb = 1024  # the same model with room for full-size maps
    full = segmenter.segment(image)
    assert full.confidences.shape == (40, 600, 800) and full.confidence_scale == 1.0
    assert (full.mask == result.mask).mean() > 0.9999  # the mask is always full size
    shrunk = F.interpolate(torch.from_numpy(full.confidences)[None], size=(height, width), mode="bilinear")[0]
    assert float((shrunk - torch.from_numpy(result.confidences)).abs().mean()) < 0.01  # same maps, smaller


_PEAK_RSS = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from lseg_ros.config import SegmenterConfig
    from lseg_ros.segmenter import Segmenter

    side, labels, budget = (int(value) for value in sys.argv[1:4])
    segmenter = Segmenter(SegmenterConfig(backend="lseg", model="lseg_tiny", pretrained="random", device="cpu",
                                          short_side=64, max_long_side=64, unknown_value=65535,
                                          memory_budget_mb=budget, labels=[]))
    segmenter.set_labels([f"label {i}" for i in range(labels)])
    segmenter.segment(np.zeros((64, 64, 3), np.uint8))  # warm up allocators and lazy state
    frame = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = segmenter.segment(frame, return_confidences=True)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"extra_mb": (after - before) / 1024, "mask": list(result.mask.shape),
                      "confidences": list(result.confidences.shape), "scale": result.confidence_scale}))
""")


@pytest.mark.slow
@pytest.mark.parametrize("side, labels, budget_mb", [
    (4096, 32, 256),   # a frame at max_image_pixels (4096 x 4096): 2.1 GB of full-size maps
    (1024, 255, 128),  # max_labels: 2.1 GB of logits plus softmax before the budget existed
], ids=["4096x4096 frame", "255 labels"])
def test_peak_memory_of_one_frame_stays_within_the_budget_at_the_accepted_limits(side, labels, budget_mb):
    done = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(side), str(labels), str(budget_mb)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["mask"] == [side, side] and report["confidences"][0] == labels and report["scale"] < 1
    # the budget, plus converting the frame to a float model input (~16 bytes per pixel), plus slack
    allowed = budget_mb + 16 * side * side / MB + 64
    assert report["extra_mb"] < allowed, report


def _lseg_reference(logits, out_size):
    """LSeg's resize written out: output_conv (x2 bilinear, align_corners=True), then bilinear."""
    height, width = logits.shape[-2:]
    doubled = F.interpolate(logits[None], size=(2 * height, 2 * width), mode="bilinear", align_corners=True)
    return F.interpolate(doubled, size=out_size, mode="bilinear", align_corners=False)[0]


@pytest.mark.parametrize("logits_size, out_size, work", [
    ((12, 17), (100, 130), _work(6, 100, 130)),  # one call
    ((12, 17), (100, 130), _work(6, 100, 7) + 4 * 6 * 12 * 170 * 4),  # column bands
    ((12, 17), (100, 130), _work(6, 3, 130)),  # row bands
    ((12, 17), (100, 130), 1),  # one row at a time
    ((12, 17), (24, 34), 1),  # exactly the x2 size: the second resize is skipped
    ((40, 30), (23, 19), _work(6, 4, 19)),  # downsampling after the x2
    ((40, 30), (23, 19), _work(6, 23, 3) + 4 * 6 * 40 * 60 * 4),
])
def test_bands_with_the_backends_x2_step_equal_lseg_output_conv_then_bilinear(logits_size, out_size, work):
    logits = torch.randn(6, *logits_size, generator=torch.Generator().manual_seed(2))
    expected = _lseg_reference(logits, out_size)
    stitched = torch.full_like(expected, float("nan"))
    for region, band in upsampled_bands(logits, out_size, work, pre_scale=2):
        stitched[(slice(None),) + region] = band
    torch.testing.assert_close(stitched, expected, rtol=0, atol=1e-5)
    # the step matters: a direct align_corners=False resize differs
    direct = F.interpolate(logits[None], size=out_size, mode="bilinear", align_corners=False)[0]
    assert float((direct - expected).abs().max()) > 1e-2


def test_band_kinds_with_the_x2_step_are_all_exercised():
    logits = torch.randn(6, 12, 17)
    kinds = set()
    for work in (_work(6, 100, 130), _work(6, 100, 7) + 4 * 6 * 12 * 170 * 4, _work(6, 3, 130)):
        bands = [region for region, _ in upsampled_bands(logits, (100, 130), work, pre_scale=2)]
        kinds.add((bands[0][0] == slice(0, 100), bands[0][1] == slice(0, 130), len(bands) > 1))
    assert kinds == {(True, True, False), (True, False, True), (False, True, True)}
