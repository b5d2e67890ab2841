"""lmseg's cost-volume aggregation head (lseg_ros.models.lmseg_cost): the wiring of CAT-Seg's
aggregator (test_cost_aggregation.py holds its stages and CAT-Seg's dense CLIP to CAT-Seg's own
code) into the lmseg backend: the image side and the label head against the parts chained by
hand, the SAM fusion, official CAT-Seg checkpoints loaded key for key, CAT-Seg's loss, the
embeddings, the presets' prompts, and the engine's tools running it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from lseg_ros.config import LMSegConfig, SegmenterConfig
from lseg_ros.models.base import build_backend
from lseg_ros.models.cost_aggregation import CATSEG_PREFIXES
from lseg_ros.models.dense_clip import DenseClipBackend
from lseg_ros.models.lmseg import PRESETS
from lseg_ros.models.lmseg_cost import LMSegCostBackend
from lseg_ros.segmenter import Segmenter
from lseg_ros.train import per_class_bce
from lseg_ros.weights import WeightsError

from helpers import TEST_DEVICE

LABELS = ["floor", "wall", "red disk", "door"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config_for(model="lmseg_tiny", **fields) -> SegmenterConfig:
    values = dict(backend="lmseg", model=model, pretrained="random", device="cpu", labels=list(LABELS))
    values.update(fields)
    return SegmenterConfig(**values)


def randomized(backend: LMSegCostBackend, seed: int = 0) -> LMSegCostBackend:
    """Every parameter random, so that no zero-initialized part (timm's SAM positional tables,
    the padding tokens) hides a wiring mistake."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in backend.named_parameters():
            if name.endswith("fusion_logit"):
                continue
            around = 1.0 if "norm" in name.split(".")[-2] + name.split(".")[-1] and name.endswith("weight") else 0.0
            fan_in = parameter[0].numel() if parameter.dim() > 1 else 1
            parameter.copy_(around + torch.randn(parameter.shape, generator=generator) / fan_in ** 0.5 * 0.5)
    return backend.eval()


def images(batch=2, size=128, seed=0):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def label_embeddings(count=4, dim=32, seed=1):
    return F.normalize(torch.randn(count, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)


def catseg_layout(backend: LMSegCostBackend) -> dict:
    """The backend's weights in an official CAT-Seg checkpoint's layout (cat_seg_model.py's
    upsample1/2, its predictor's transformer and CLIP with q/k/v weights apart)."""
    state = {CATSEG_PREFIXES["aggregator"] + k: v for k, v in backend.aggregator.state_dict().items()}
    state.update(backend.guidance.state_dict())
    for key, value in backend.clip.state_dict().items():
        if key.endswith("in_proj_weight"):
            for part, weight in zip("qkv", value.chunk(3, dim=0)):
                state[CATSEG_PREFIXES["clip"] + key.replace("in_proj_weight", f"{part}_proj_weight")] = weight
        else:
            state[CATSEG_PREFIXES["clip"] + key] = value
    return {k: v.clone().contiguous() for k, v in state.items()}


# ------------------------------------------------------------------ the network
@torch.no_grad()
def test_image_side_and_label_head_chain_catsegs_parts():
    """No SAM (catseg_tiny): forward = [CAT-Seg's dense CLIP features | guidance block outputs],
    label_logits = upsample1/2 then the aggregator with the features as appearance guidance,
    exactly CAT-Seg's cat_seg_model.py forward on a frame already at the fixed input size."""
    torch.manual_seed(0)
    backend = randomized(build_backend(config_for("catseg_tiny")))
    x, text = images(), label_embeddings()
    features = backend(x)
    assert features.shape == (2, 32 + 2 * 64, 8, 8)
    reference = DenseClipBackend(backend.clip, "lmseg_tiny_clip", mode="catseg")
    clip_features, (early, late) = reference.dense_features(x, (0, 1))
    torch.testing.assert_close(features, torch.cat([clip_features, early, late], 1), rtol=0, atol=0)
    logits = backend.label_logits(features, text)
    g1, g2 = backend.guidance.upsample1(early), backend.guidance.upsample2(late)
    expected = backend.aggregator(clip_features, text[None, :, None].expand(2, -1, -1, -1), [clip_features, g1, g2])
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    assert logits.shape == (2, 4, 32, 32)  # 4x the 8x8 grid
    # another frame size is resized to the fixed input first (bilinear, as CAT-Seg resizes)
    small = images(1, 96)
    resized = F.interpolate(small, size=(128, 128), mode="bilinear", align_corners=False)
    torch.testing.assert_close(backend(small), backend(resized), rtol=0, atol=0)


@torch.no_grad()
def test_logits_of_a_label_depend_on_the_other_labels():
    """The class aggregation attends across labels: unlike cosine matching, adding a label
    changes the others' logits (the label-count cost table's reason)."""
    torch.manual_seed(0)
    backend = randomized(build_backend(config_for("catseg_tiny")))
    features, text = backend(images(1)), label_embeddings(5)
    three = backend.label_logits(features, text[:3])
    five = backend.label_logits(features, text)
    # small with random weights (two labels among the 256 class tokens, padding included, of the
    # linear attention) but far above float32 rounding (~1e-7 here); cosine matching gives 0
    assert (five[:, :3] - three).abs().max() > 1e-5


@torch.no_grad()
def test_max_aggregated_labels_refines_the_labels_of_highest_peak_cosine_only():
    """lmseg.max_aggregated_labels 2 of 4 labels: the two of highest peak raw cosine get the
    logits the aggregation gives them alone, the other two -100 (CAT-Seg's top-k, smaller)."""
    torch.manual_seed(0)
    backend = randomized(build_backend(config_for("catseg_tiny", lmseg=LMSegConfig(max_aggregated_labels=2))))
    assert backend.aggregator.top_k == 2
    features, text = backend(images(1)), label_embeddings(4)
    logits = backend.label_logits(features, text)
    fused = F.normalize(backend.pixel_embeddings(features), dim=1)
    peak = torch.einsum("bdhw,nd->bnhw", fused, text).flatten(2).max(-1).values[0]  # [4]
    kept = sorted(peak.topk(2).indices.tolist())
    left_out = [i for i in range(4) if i not in kept]
    assert bool((logits[:, left_out] == -100).all())
    backend.aggregator.top_k = 256
    torch.testing.assert_close(logits[:, kept], backend.label_logits(features, text[kept]), rtol=0, atol=1e-5)


@torch.no_grad()
def test_fusion_weight_one_is_catseg_and_zero_the_sam_path():
    torch.manual_seed(0)
    backend = randomized(build_backend(config_for()))
    assert float(backend.fusion_weight) == pytest.approx(0.5)
    x = images(1)
    clip_features, _ = backend.dense_clip.dense_features(x, backend.guidance_layers)
    sam_projected = backend.sam_proj(backend.sam_features(x))
    backend.fusion_logit.fill_(float("inf"))  # w = 1: CAT-Seg's features, SAM no longer matters
    torch.testing.assert_close(backend.pixel_embeddings(backend(x)), clip_features, rtol=0, atol=0)
    backend.fusion_logit.fill_(float("-inf"))  # w = 0: SAM's, projected to CLIP's width
    torch.testing.assert_close(backend.pixel_embeddings(backend(x)), sam_projected, rtol=0, atol=1e-6)
    backend.fusion_logit.fill_(0.0)
    torch.testing.assert_close(backend.pixel_embeddings(backend(x)), 0.5 * clip_features + 0.5 * sam_projected)


# --------------------------------------------------------------- checkpoints
def test_catseg_checkpoint_loads_key_for_key_and_gives_the_same_logits(tmp_path):
    """A random network saved in CAT-Seg's layout (detectron2's {"model": ...} .pth) loads
    strictly into catseg_tiny: same features, logits and text embeddings."""
    torch.manual_seed(0)
    source = randomized(build_backend(config_for("catseg_tiny")))
    path = tmp_path / "model_base.pth"
    torch.save({"model": catseg_layout(source), "iteration": 80000}, path)
    engine = Segmenter(config_for("catseg_tiny", pretrained=str(path)))
    assert "CAT-Seg model_base.pth" in engine.description and "QuickGELU" in engine.description
    x, text = images(1), label_embeddings()
    tokens = source.tokenize(["A photo of a door in the scene"])
    with torch.no_grad():
        torch.testing.assert_close(engine.backend(x), source(x), rtol=0, atol=0)
        torch.testing.assert_close(engine.backend.label_logits(engine.backend(x), text), source.label_logits(source(x), text),
                                   rtol=0, atol=0)
        torch.testing.assert_close(engine.backend.encode_text(tokens), source.encode_text(tokens), rtol=0, atol=0)


@pytest.mark.parametrize("change, named", [
    ("drop", "missing key"), ("extra", "unexpected key"), ("foreign", "not a CAT-Seg checkpoint key")])
def test_a_catseg_checkpoint_that_does_not_fit_is_refused_naming_the_key(tmp_path, change, named):
    torch.manual_seed(0)
    state = catseg_layout(build_backend(config_for("catseg_tiny")))
    if change == "drop":
        del state[CATSEG_PREFIXES["aggregator"] + "conv1.weight"]
    elif change == "extra":
        state[CATSEG_PREFIXES["clip"] + "visual.transformer.prompt_tokens"] = torch.zeros(1, 1, 64)
    else:
        state["backbone.stem.weight"] = torch.zeros(1)
    path = tmp_path / "model_base.pth"
    torch.save({"model": state}, path)
    with pytest.raises(WeightsError, match=named):
        build_backend(config_for("catseg_tiny", pretrained=str(path)))


def test_a_catseg_checkpoint_for_a_sam_preset_needs_the_sam_weights_too(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "model_base.pth"
    torch.save({"model": catseg_layout(build_backend(config_for("catseg_tiny")))}, path)
    with pytest.raises(WeightsError, match="lmseg.sam_checkpoint.*catseg_vitb16_384"):
        build_backend(config_for("lmseg_tiny", pretrained=str(path)))


def test_whole_network_checkpoint_round_trip_and_a_cosine_checkpoint_names_its_head(tmp_path):
    torch.manual_seed(0)
    first = Segmenter(config_for())
    path = tmp_path / "lmseg_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in first.backend.net_state_dict().items()}, str(path))
    second = Segmenter(config_for(pretrained=str(path)))
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(second.segment(rgb).mask, first.segment(rgb).mask)
    cosine = build_backend(config_for(lmseg=LMSegConfig(head="cosine")))
    old = tmp_path / "cosine.safetensors"
    save_file({k: v.contiguous() for k, v in cosine.net_state_dict().items()}, str(old))
    with pytest.raises(WeightsError, match="lmseg.head:=cosine"):
        build_backend(config_for(pretrained=str(old)))


# -------------------------------------------------------------------- engine
def test_segment_confidences_and_embeddings_come_from_the_head_and_the_fused_features():
    torch.manual_seed(0)
    segmenter = Segmenter(config_for(device=TEST_DEVICE))
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    result = segmenter.segment(rgb, return_embeddings=True)
    model_input = segmenter.model_input([rgb])
    assert tuple(model_input.shape[-2:]) == (128, 128)  # the fixed input, aspect not kept
    with torch.no_grad():
        features = segmenter.backend(model_input)
        logits = segmenter.backend.label_logits(features, segmenter.label_set.label_embeddings)
    logits = F.interpolate(logits, size=(48, 64), mode="bilinear", align_corners=False)
    np.testing.assert_array_equal(result.mask, logits[0].argmax(0).cpu().numpy())
    np.testing.assert_allclose(result.confidences, logits[0].softmax(0).cpu().numpy(), atol=1e-5)
    fused = F.normalize(segmenter.backend.pixel_embeddings(features), dim=1)[0].permute(1, 2, 0)
    np.testing.assert_allclose(result.embeddings.astype(np.float32), fused.cpu().numpy(), atol=2e-3)
    assert result.embeddings.shape == (8, 8, 32)


def test_clustering_is_refused_for_the_label_head():
    from lseg_ros.config import PostprocessConfig

    with pytest.raises(ValueError, match="postprocess.cluster_k 4.*set postprocess.cluster_k 0"):
        Segmenter(config_for(postprocess=PostprocessConfig(cluster_k=4)))


def test_catseg_presets_use_catsegs_prompt_and_no_attribute_prompts():
    catseg = Segmenter(config_for("catseg_tiny"))
    assert catseg.label_encoder.templates == ["A photo of a {} in the scene"]
    assert catseg.prompt_bank is None and catseg.settings["attribute_prompts"] == "off"
    lmseg = Segmenter(config_for())  # LMSeg: CAT-Seg's prompt enriched with the bank's attributes
    assert lmseg.label_encoder.templates == ["A photo of a {} in the scene"]
    assert lmseg.prompt_bank is not None and lmseg.label_set.descriptions[0]


def test_released_presets_are_catsegs_configs():
    for name, size, layers in (("catseg_vitb16_384", 384, (3, 7)), ("catseg_vitl14_336", 336, (7, 15)),
                               ("lmseg_vitb16_sam_b", 384, (3, 7))):
        preset = PRESETS[name]
        assert (preset.input_size, preset.guidance_layers) == (size, layers)
        assert preset.aggregator["num_layers"] == 2 and preset.aggregator["prompt_channel"] == 1


def test_per_class_bce_is_catsegs_loss():
    """cat_seg_model.py: outputs permuted to [B, H, W, N], one-hot targets on valid pixels and
    zeros on ignored ones, binary_cross_entropy_with_logits averaged over everything."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 6, 7, generator=generator)
    targets = torch.randint(0, 5, (2, 6, 7), generator=generator)
    targets[0, :2] = 255
    outputs = logits.permute(0, 2, 3, 1)
    mask = targets != 255
    expected_targets = torch.zeros(outputs.shape)
    expected_targets[mask] = F.one_hot(targets[mask], num_classes=5).float()
    expected = F.binary_cross_entropy_with_logits(outputs, expected_targets)
    torch.testing.assert_close(per_class_bce(logits, targets, 255), expected, rtol=0, atol=1e-7)
