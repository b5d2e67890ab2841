"""The engine's speed settings (lseg_ros.acceleration and the Segmenter's frame path): each one
is checked against the plain path on the same frames, so a faster setting cannot quietly
change what the robot sees. Run with LSEG_TEST_DEVICE=cuda for the CUDA-only parts."""
from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from lseg_ros import acceleration
from lseg_ros.config import SegmenterConfig
from lseg_ros.data.scenes import generate_scene, scene_rng
from lseg_ros.demo_model import demo_model_config
from lseg_ros.segmenter import Segmenter

from helpers import TEST_DEVICE, needs_cuda

TINY = dict(backend="dense_clip", model="lseg-test-tiny-ViT", pretrained="random", short_side=64,
            labels=["floor", "wall", "door"])


def tiny_config(**fields) -> SegmenterConfig:
    return SegmenterConfig(**{"device": TEST_DEVICE, **TINY, **fields})


def tiny(**fields) -> Segmenter:
    """A tiny random dense_clip segmenter; the same random weights every time."""
    torch.manual_seed(0)
    return Segmenter(tiny_config(**fields))


@pytest.fixture(scope="module")
def scenes():
    return [generate_scene(scene_rng(4242, index), (96, 128))[0] for index in range(3)]


@pytest.fixture(scope="module")
def demo_config():
    config = demo_model_config(device=TEST_DEVICE)
    assert config is not None
    return config


@pytest.fixture(autouse=True)
def restore_process_settings():
    """The fast-path switch and the thread count are process-wide: put them back."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    threads = torch.get_num_threads()
    yield
    torch.backends.mha.set_fastpath_enabled(fastpath)
    torch.set_num_threads(threads)


def masks(segmenter, frames, **kwargs):
    return [segmenter.segment(frame, **kwargs) for frame in frames]


# ------------------------------------------------------------------ precision
def test_auto_precision_is_fp16_on_cuda_and_fp32_on_the_cpu():
    assert acceleration.resolve_precision("auto", torch.device("cpu")) == ("fp32", None)
    assert acceleration.resolve_precision("auto", torch.device("cuda")) == ("fp16", None)
    segmenter = tiny(precision="auto")
    expected = "fp16" if segmenter.device.type == "cuda" else "fp32"
    assert segmenter.settings["precision"] == expected and segmenter.precision == expected


def test_bf16_on_a_cpu_without_native_bf16_is_warned_about_with_the_reason(monkeypatch):
    monkeypatch.setattr(acceleration, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="emulated.*AVX512-BF16 or AMX"):
        segmenter = tiny(device="cpu", precision="bf16")
    assert "emulated" in segmenter.warnings[0]
    monkeypatch.setattr(acceleration, "cpu_has_native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tiny(device="cpu", precision="bf16").warnings == []


def test_fp16_on_the_cpu_is_refused_naming_the_alternatives():
    with pytest.raises(ValueError, match="'fp16' needs CUDA.*fp32 or bf16"):
        tiny(device="cpu", precision="fp16")


# ------------------------------------------------------- process-wide settings
def test_mha_fastpath_auto_is_off_on_the_cpu_and_both_paths_give_the_same_masks(scenes):
    plain = tiny(device="cpu", mha_fastpath="auto")
    assert plain.settings["mha_fastpath"] == "off" and not torch.backends.mha.get_fastpath_enabled()
    without = masks(plain, scenes)
    torch.backends.mha.set_fastpath_enabled(True)
    fused = masks(plain, scenes)
    for a, b in zip(without, fused):
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_allclose(a.confidences, b.confidences, atol=1e-5)
    tiny(device="cpu", mha_fastpath="on")
    assert torch.backends.mha.get_fastpath_enabled()


def test_num_threads_sets_torch_threads():
    segmenter = tiny(num_threads=1)
    assert torch.get_num_threads() == 1 and segmenter.settings["num_threads"] == 1


# --------------------------------------------------------------- memory format
def test_channels_last_is_auto_for_lseg_on_the_cpu_and_keeps_the_masks(demo_config, scenes):
    auto = Segmenter(replace(demo_config, device="cpu"))
    assert auto.settings["memory_format"] == "channels_last"
    assert auto.backend.net.scratch.head1.weight.is_contiguous(memory_format=torch.channels_last)
    plain = Segmenter(replace(demo_config, device="cpu", memory_format="contiguous"))
    assert tiny(device="cpu").settings["memory_format"] == "contiguous"  # a ViT: no gain
    for a, b in zip(masks(auto, scenes), masks(plain, scenes)):
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_allclose(a.confidences, b.confidences, atol=1e-5)  # other conv kernels, same sums


# ----------------------------------------------------------------- int8 (CPU)
def test_int8_quantizes_the_image_side_only_and_keeps_masks_of_the_demo_model(demo_config, scenes):
    plain = Segmenter(replace(demo_config, device="cpu"))
    quantized = Segmenter(replace(demo_config, device="cpu", quantize="int8"))
    assert quantized.settings["quantize"].startswith("int8 (") and "linear layers" in quantized.settings["quantize"]
    linear = [m for m in quantized.backend.net.pretrained.modules() if type(m) is torch.nn.Linear]
    assert not linear  # every plain linear layer of the ViT is now a dynamic int8 one
    # the text side is untouched: label embeddings are bit-identical
    torch.testing.assert_close(quantized.label_set.label_embeddings, plain.label_set.label_embeddings, rtol=0,
                               atol=0)
    agreement = np.mean([(a.mask == b.mask).mean() for a, b in zip(masks(plain, scenes), masks(quantized, scenes))])
    assert agreement >= 0.995, agreement  # measured 0.9992 on 8 scenes at 240x320 (docs/performance.md)


def test_int8_is_refused_off_the_cpu_or_in_half_precision():
    with pytest.raises(ValueError, match="quantize 'int8' runs on the CPU in fp32"):
        tiny(device="cpu", precision="bf16", quantize="int8")


# --------------------------------------------------------------- compile / warm-up
def test_cuda_graphs_on_the_cpu_are_refused():
    with pytest.raises(ValueError, match="'cuda_graphs' needs CUDA"):
        tiny(device="cpu", compile="cuda_graphs")


def test_warmup_runs_the_frame_path_at_start_without_touching_the_labels(monkeypatch):
    calls = []
    original = Segmenter._segment

    def recording(self, images, label_set, *args):
        calls.append((len(images), images[0].shape, label_set.names))
        return original(self, images, label_set, *args)

    monkeypatch.setattr(Segmenter, "_segment", recording)
    segmenter = tiny(labels=[], warmup_height=40, warmup_width=56)
    assert calls and all(call == (1, (40, 56, 3), ["object"]) for call in calls)
    assert segmenter.label_set is None  # the warm-up label was not put in use
    segmenter.set_labels(["door"])
    generation = segmenter.label_set.generation
    segmenter.warmup(40, 56, batch=2)
    assert calls[-1][:2] == (2, (40, 56, 3)) and calls[-1][2] == ["door"]
    assert segmenter.label_set.generation == generation


def test_warmup_size_must_name_both_sides():
    with pytest.raises(ValueError, match="warmup_height/warmup_width"):
        tiny_config(warmup_height=480).validate()


# ------------------------------------------------------------------- timings
@pytest.mark.parametrize("mode, stages", [
    ("events", {"preprocess", "backbone", "classify", "postprocess", "total"}),
    ("sync", {"preprocess", "backbone", "classify", "postprocess", "total"}),
    ("off", {"total"}),
])
def test_stage_timings_modes(mode, stages, scenes):
    result = tiny(stage_timings=mode).segment(scenes[0])
    assert set(result.timings) == stages and all(value >= 0 for value in result.timings.values())
    assert result.timings["total"] >= sum(v for k, v in result.timings.items() if k != "total") * 0.5


# --------------------------------------------------------------- confidences
def test_float16_confidences_are_the_float32_ones_rounded(scenes):
    full = tiny()
    half = tiny(confidence_dtype="float16")
    for a, b in zip(masks(full, scenes), masks(half, scenes)):
        assert b.confidences.dtype == np.float16 and a.confidences.dtype == np.float32
        np.testing.assert_array_equal(a.mask, b.mask)
        # float16 has an 11-bit significand: values in [0, 1] round by at most 2^-12
        np.testing.assert_allclose(b.confidences.astype(np.float32), a.confidences, atol=2.5e-4, rtol=0)


def test_confidence_scale_gives_the_maps_of_a_smaller_output_and_a_full_size_mask(scenes):
    frame = scenes[0]  # 96x128
    reduced = tiny(confidence_scale=0.5).segment(frame)
    assert reduced.mask.shape == (96, 128) and reduced.confidences.shape == (3, 48, 64)
    assert reduced.confidence_scale == 0.5
    small = tiny(output_height=48, output_width=64).segment(frame)
    np.testing.assert_allclose(reduced.confidences, small.confidences, atol=1e-6)
    full = tiny().segment(frame)
    np.testing.assert_array_equal(reduced.mask, full.mask)


# --------------------------------------------------------------------- batches
def test_a_batch_copies_masks_once_and_equals_single_frames(scenes):
    segmenter = tiny()
    batch = segmenter.segment(scenes)
    for frame, result in zip(scenes, batch):
        single = segmenter.segment(frame)
        np.testing.assert_array_equal(result.mask, single.mask)
        assert result.mask.flags.owndata is False or result.mask.base is not None  # a view of the one copy
        np.testing.assert_allclose(result.confidences, single.confidences, atol=1e-5)


# ------------------------------------------------------------------ CUDA only
@needs_cuda
def test_cuda_frame_path_uses_the_pinned_staging_buffer_and_matches_the_cpu(scenes):
    cuda = tiny(device="cuda")
    cpu = tiny(device="cpu")
    for frame in scenes:
        a, b = cuda.segment(frame), cpu.segment(frame)
        assert (a.mask == b.mask).mean() > 0.999  # different kernels: a tie may flip
        np.testing.assert_allclose(a.confidences, b.confidences, atol=1e-3)
    assert cuda._staging._buffer is not None and cuda._staging._buffer.is_pinned()


@needs_cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_on_cuda_keeps_the_demo_models_masks(demo_config, scenes, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    full = Segmenter(replace(demo_config, device="cuda"))
    half = Segmenter(replace(demo_config, device="cuda", precision=precision))
    agreement = np.mean([(a.mask == b.mask).mean() for a, b in zip(masks(full, scenes), masks(half, scenes))])
    # bf16 keeps 8 significand bits, fp16 11: boundary pixels may flip (measured 0.9996 for bf16 on a CPU)
    assert agreement >= (0.999 if precision == "fp16" else 0.995), agreement


@needs_cuda
def test_cuda_graphs_replay_gives_the_eager_masks(scenes):
    eager = tiny(device="cuda")
    graphed = tiny(device="cuda", compile="cuda_graphs", warmup_height=96, warmup_width=128)
    for frame in scenes:
        np.testing.assert_array_equal(graphed.segment(frame).mask, eager.segment(frame).mask)
    assert len(graphed.image_forward.graphs) == 1
