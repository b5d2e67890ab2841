"""The lseg backend: LSeg's network, its lang-seg key layout and strict weight loading."""
from __future__ import annotations

import math
import pathlib

import pytest
import timm
import torch
from packaging.version import Version
from safetensors.torch import save_file

from lseg_ros.config import SegmenterConfig
from lseg_ros.models import build_backend
from lseg_ros.models.lseg import LSegBackend, build_lseg, get_preset
from lseg_ros.weights import WeightsError

from helpers import TEST_DEVICE

#: building the full-size presets on the meta device (key names and shapes, no memory): timm
#: before 1.0.22 calls .item() on its drop-path rates while building a ViT, which meta cannot
needs_meta_vit = pytest.mark.skipif(Version(timm.__version__) < Version("1.0.22"),
                                    reason=f"timm {timm.__version__}: a ViT on the meta device needs timm>=1.0.22")


def tiny_config(pretrained: str = "random", **lseg) -> SegmenterConfig:
    config = SegmenterConfig(backend="lseg", model="lseg_tiny", pretrained=pretrained)
    for name, value in lseg.items():
        setattr(config.lseg, name, value)
    return config


def random_tiny_backend(seed: int = 0, **lseg) -> LSegBackend:
    torch.manual_seed(seed)
    backend = build_lseg(tiny_config(**lseg))
    # Non-trivial batch-norm statistics, so that checkpoints must carry the buffers too.
    for name, buffer in backend.net.named_buffers():
        if name.endswith(("running_mean", "running_var")):
            buffer.uniform_(0.5, 1.5)
    return backend


def sample_images(height: int = 64, width: int = 96) -> torch.Tensor:
    return torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(7))


def outputs(backend: LSegBackend):
    with torch.no_grad():
        pixel_embeddings = backend(sample_images())
        text_embeddings = backend.encode_text(backend.tokenize(["a chair", "the floor", "door"]))
    return pixel_embeddings, text_embeddings


def save_lightning_checkpoint(backend: LSegBackend, path: pathlib.Path, edit=None) -> pathlib.Path:
    state_dict = {"net." + key: value for key, value in backend.net.state_dict().items()}
    if edit:
        edit(state_dict)
    torch.save({"epoch": 199, "global_step": 0, "pytorch-lightning_version": "1.3.5",
                "state_dict": state_dict, "hyper_parameters": {"backbone": "clip_vitl16_384"}}, path)
    return path


# ------------------------------------------------------------------ the network
@pytest.mark.parametrize("height, width", [(64, 64), (64, 96), (96, 32), (48, 80)])
def test_pixel_embeddings_have_the_text_dimension_at_half_input_resolution(height, width):
    backend = random_tiny_backend()
    with torch.no_grad():
        pixel_embeddings = backend(torch.randn(2, 3, height, width))
    assert pixel_embeddings.shape == (2, get_preset("lseg_tiny").embedding_dim, height // 2, width // 2)
    assert torch.isfinite(pixel_embeddings).all()


def test_text_embeddings_share_the_pixel_embedding_space():
    backend = random_tiny_backend()
    token_ids = backend.tokenize(["a chair", "door"])
    assert token_ids.shape == (2, 77)
    assert backend.encode_text(token_ids).shape == (2, get_preset("lseg_tiny").embedding_dim)


def test_input_size_not_a_multiple_of_the_patch_size_is_rejected_naming_it():
    with pytest.raises(ValueError, match="70x64"):
        random_tiny_backend()(torch.randn(1, 3, 70, 64))


def test_label_logits_reproduce_lang_seg_output_at_input_resolution():
    backend = random_tiny_backend()
    images = sample_images()
    with torch.no_grad():
        text_embeddings = backend.encode_text(backend.tokenize(["a chair", "door"]))
        logits = backend.net.label_logits(images, text_embeddings)
    assert logits.shape == (2, 2, 64, 96)
    assert logits.abs().max() <= 1 / 0.07 + 1e-4  # scaled cosine similarity


def _written_out_head(logits, conv, arch_option, block_depth, activation):
    """lang-seg's LSeg.forward head loop written out: block_depth - 1 activated blocks, then
    one without activation (so block_depth 0 still runs one); a block is the shared 3x3 conv
    per label map, plus (arch_option 1, bottleneck_block) the input's per-pixel max over labels."""
    def block(x, act):
        out = torch.cat([conv(x[:, i:i + 1]) for i in range(x.shape[1])], dim=1)
        if arch_option == 1:
            out = out + x.max(dim=1, keepdim=True).values
        return activation(out) if act else out
    for _ in range(block_depth - 1):
        logits = block(logits, True)
    return block(logits, False)


@pytest.mark.parametrize("arch_option, block_depth", [(1, 0), (1, 1), (1, 3), (2, 0), (2, 2)])
def test_spatial_regularization_blocks_follow_lang_seg_arch_options(arch_option, block_depth):
    backend = random_tiny_backend(arch_option=arch_option, block_depth=block_depth, activation="tanh")
    assert {"scratch.head_block.depthwise.depthwise.weight",
            "scratch.head_block.depthwise.depthwise.bias"} <= set(backend.net.state_dict())
    torch.nn.init.normal_(backend.net.scratch.head_block.depthwise.depthwise.weight)
    logits = torch.randn(2, 3, 8, 12) * 5
    with torch.no_grad():
        expected = _written_out_head(logits, backend.net.scratch.head_block.depthwise.depthwise, arch_option,
                                     block_depth, torch.tanh)
        torch.testing.assert_close(backend.refine_logits(logits), expected, rtol=0, atol=1e-5)
        other = _written_out_head(logits, backend.net.scratch.head_block.depthwise.depthwise, 3 - arch_option,
                                  block_depth, torch.tanh)
    assert float((other - expected).abs().max()) > 1e-2  # the two options differ on the same weights


def test_no_regularization_head_with_arch_option_0():
    backend = random_tiny_backend()
    assert not any(key.startswith("scratch.head_block") for key in backend.net.state_dict())
    logits = torch.randn(1, 3, 8, 12)
    assert torch.equal(backend.refine_logits(logits), logits)


def test_block_depth_without_an_arch_option_is_refused_naming_both():
    with pytest.raises(ValueError, match=r"lseg.arch_option/lseg.block_depth.*'lseg.block_depth': 2"):
        tiny_config(block_depth=2).validate()
    with pytest.raises(ValueError, match="arch_option=3"):
        tiny_config(arch_option=3).validate()


@pytest.mark.parametrize("saved, configured, message", [
    (dict(arch_option=1, block_depth=2), dict(), "has spatial-regularization blocks.*arch_option"),
    (dict(), dict(arch_option=2), "has no spatial-regularization blocks.*arch_option is 2"),
])
def test_checkpoint_with_another_head_than_configured_is_refused_saying_which(tmp_path, saved, configured, message):
    path = tmp_path / "head.safetensors"
    save_file(random_tiny_backend(**saved).net_state_dict(), str(path))
    with pytest.raises(WeightsError, match=message):
        build_lseg(tiny_config(str(path), **configured))


def test_invalid_regularization_activation_is_rejected_naming_it():
    with pytest.raises(ValueError, match="'sigmoid'"):
        random_tiny_backend(arch_option=1, block_depth=1, activation="sigmoid")


def test_backend_advertises_lseg_preprocessing_and_temperature():
    backend = build_backend(tiny_config())
    assert backend.backend_name == "lseg"
    assert backend.image_mean == backend.image_std == (0.5, 0.5, 0.5)
    assert backend.input_multiple == 16
    assert math.isclose(backend.default_logit_scale, 1 / 0.07)
    assert backend.default_prompt_templates == "none"
    assert backend.description.startswith("lseg lseg_tiny")


def test_parameter_groups_split_backbone_decoder_and_frozen_text_tower():
    backend = random_tiny_backend().freeze_text()
    image = {id(p) for p in backend.image_parameters()}
    decoder = {id(p) for p in backend.decoder_parameters()}
    text = {id(p) for p in backend.text_parameters()}
    assert not (image & decoder or image & text or decoder & text)
    assert image | decoder | text == {id(p) for p in backend.parameters()}
    assert not any(p.requires_grad for p in backend.text_parameters())
    assert all(p.requires_grad for p in backend.decoder_parameters())


# ------------------------------------------------------------------- weights
def test_lightning_checkpoint_round_trip_reproduces_outputs_exactly(tmp_path):
    original = random_tiny_backend(seed=0).eval()
    path = save_lightning_checkpoint(original, tmp_path / "demo_e200.ckpt")
    torch.manual_seed(1)  # a different random init, overwritten by the checkpoint
    loaded = build_backend(tiny_config(str(path)))
    for expected, actual in zip(outputs(original), outputs(loaded)):
        assert torch.equal(expected, actual)
    assert loaded.description == "lseg lseg_tiny (demo_e200.ckpt)"


def test_safetensors_of_unprefixed_net_state_round_trip_reproduces_outputs_exactly(tmp_path):
    original = random_tiny_backend(seed=0).eval()
    path = tmp_path / "lseg_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in original.net_state_dict().items()}, str(path))
    loaded = build_backend(tiny_config(str(path)))
    for expected, actual in zip(outputs(original), outputs(loaded)):
        assert torch.equal(expected, actual)


def test_text_model_id_differs_per_weights_file(tmp_path):
    original = random_tiny_backend()
    first = build_lseg(tiny_config(str(save_lightning_checkpoint(original, tmp_path / "a.ckpt"))))
    second = build_lseg(tiny_config(str(save_lightning_checkpoint(original, tmp_path / "b.ckpt"))))
    assert first.text_model_id != second.text_model_id
    assert random_tiny_backend().text_model_id != random_tiny_backend().text_model_id


def test_checkpoint_missing_a_key_is_refused_naming_it(tmp_path):
    path = save_lightning_checkpoint(random_tiny_backend(), tmp_path / "partial.ckpt",
                                     edit=lambda sd: sd.pop("net.scratch.head1.weight"))
    with pytest.raises(WeightsError, match="scratch.head1.weight"):
        build_lseg(tiny_config(str(path)))


def test_checkpoint_with_an_unexpected_key_is_refused_naming_it(tmp_path):
    def add_key(state_dict):
        state_dict["net.scratch.auxlayer.weight"] = torch.zeros(3)

    path = save_lightning_checkpoint(random_tiny_backend(), tmp_path / "extra.ckpt", edit=add_key)
    with pytest.raises(WeightsError, match="scratch.auxlayer.weight"):
        build_lseg(tiny_config(str(path)))


class _WritesMarkerWhenUnpickled:
    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.write_text, (self.marker, "pwned"))


def test_checkpoint_that_runs_code_when_unpickled_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "malicious.ckpt"
    torch.save({"state_dict": {}, "payload": _WritesMarkerWhenUnpickled(marker)}, path)
    with pytest.raises(WeightsError, match="weights_only"):
        build_lseg(tiny_config(str(path)))
    assert not marker.exists()


def test_pretrained_tag_is_refused_with_instructions_for_a_local_checkpoint():
    with pytest.raises(WeightsError, match=r"'openai'.*demo_e200\.ckpt"):
        build_lseg(tiny_config("openai"))


def test_missing_weights_file_is_refused_naming_it(tmp_path):
    with pytest.raises(WeightsError, match="nowhere.ckpt"):
        build_lseg(tiny_config(str(tmp_path / "nowhere.ckpt")))


def test_unknown_preset_is_rejected_listing_the_presets():
    with pytest.raises(ValueError, match="'ViT-B-16'.*lseg_vitl16_384"):
        build_lseg(SegmenterConfig(backend="lseg", model="ViT-B-16", pretrained="random"))


# ---------------------------------------------------------------- key layout
LANG_SEG_PREFIXES = (
    ["clip_pretrained.visual.", "clip_pretrained.transformer.", "clip_pretrained.token_embedding.weight",
     "clip_pretrained.text_projection", "clip_pretrained.logit_scale", "pretrained.model.pos_embed"]
    + [f"pretrained.act_postprocess{i}.0.project.0.weight" for i in (1, 2, 3, 4)]
    + [f"pretrained.act_postprocess{i}.3.weight" for i in (1, 2, 3, 4)]
    + [f"scratch.layer{i}_rn.weight" for i in (1, 2, 3, 4)]
    + [f"scratch.refinenet{i}.resConfUnit{j}.bn{j}.running_var" for i in (1, 2, 3, 4) for j in (1, 2)]
    + [f"scratch.refinenet{i}.out_conv.weight" for i in (1, 2, 3, 4)]
    + ["scratch.head1.weight", "scratch.head1.bias"]
)


@pytest.mark.parametrize("preset, last_block, resampled", [
    ("lseg_vitb16_384", 11, (1, 2, 4)),
    ("lseg_vitl16_384", 23, (1, 2, 4)),
    ("lseg_vitb32_384", 11, (1, 2, 3)),
])
@needs_meta_vit
def test_full_size_presets_have_the_lang_seg_key_layout(preset, last_block, resampled):
    with torch.device("meta"):  # key names only: no memory, no init time
        keys = set(LSegBackend(get_preset(preset)).net.state_dict())
    for prefix in LANG_SEG_PREFIXES + [f"pretrained.model.blocks.{last_block}.attn.qkv.weight"]:
        assert any(key.startswith(prefix) for key in keys), prefix
    assert {level for level in (1, 2, 3, 4) if f"pretrained.act_postprocess{level}.4.weight" in keys} \
        == set(resampled)
    assert len([k for k in keys if k.startswith("clip_pretrained.")]) == 302  # OpenAI ViT-B/32
    assert not any(k.startswith(("logit_scale", "scratch.output_conv", "scratch.head_block")) for k in keys)


@needs_meta_vit
def test_vitl16_preset_shapes_match_lang_seg_clip_vitl16_384():
    with torch.device("meta"):
        state = LSegBackend(get_preset("lseg_vitl16_384")).net.state_dict()
    assert state["pretrained.model.pos_embed"].shape == (1, 577, 1024)
    assert state["pretrained.act_postprocess1.4.weight"].shape == (256, 256, 4, 4)
    assert state["pretrained.act_postprocess4.4.weight"].shape == (1024, 1024, 3, 3)
    assert state["scratch.layer3_rn.weight"].shape == (256, 1024, 3, 3)
    assert state["scratch.head1.weight"].shape == (512, 256, 1, 1)
    assert state["clip_pretrained.text_projection"].shape == (512, 512)


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
def test_weights_with_nan_or_inf_are_refused_naming_the_first_bad_tensor(tmp_path, bad_value):
    from lseg_ros.segmenter import Segmenter
    from lseg_ros.weights import WeightsError

    state = {k: v.clone().contiguous() for k, v in random_tiny_backend(seed=0).net_state_dict().items()}
    bad_key = next(key for key, value in state.items() if value.is_floating_point() and "decoder" in key) \
        if any("decoder" in key for key in state) else next(iter(state))
    state[bad_key].view(-1)[0] = bad_value
    path = tmp_path / "diverged.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightsError) as error:
        Segmenter(tiny_config(str(path)))
    message = str(error.value)
    assert str(path) in message and "NaN or infinite" in message and len(message.splitlines()) == 1
    assert bad_key.split(".")[-1] in message


# ------------------------------------------------------- the segmenter around it
def _tiny_segmenter(**postprocess):
    from lseg_ros.segmenter import Segmenter

    config = SegmenterConfig(backend="lseg", model="lseg_tiny", pretrained="random", device=TEST_DEVICE,
                             short_side=64, max_long_side=96, labels=["a chair", "the floor", "door"])
    for name, value in postprocess.items():
        setattr(config.postprocess, name, value)
    return Segmenter(config)


def _plain_lseg_logits(segmenter, image):
    """lang-seg's head written out: cosine x 1/0.07 at H/2, output_conv (x2 bilinear,
    align_corners=True) to the model input; returns (logits [1, N, H, W], model input)."""
    from lseg_ros.preprocess import to_model_input

    x = to_model_input([image], (64, 96), (0.5,) * 3, (0.5,) * 3, torch.device(TEST_DEVICE), torch.float32)
    with torch.no_grad():
        pixel = torch.nn.functional.normalize(segmenter.backend(x), dim=1)  # [1, D, 32, 48]
        text = torch.nn.functional.normalize(segmenter.backend.encode_text(
            segmenter.backend.tokenize(segmenter.labels)), dim=1)
    logits = torch.einsum("bdhw,nd->bnhw", pixel, text) / 0.07
    return torch.nn.functional.interpolate(logits, size=(64, 96), mode="bilinear", align_corners=True), x


def test_segmenter_resizes_lseg_logits_through_output_conv_before_the_output_size():
    import numpy as np
    import torch.nn.functional as F

    segmenter = _tiny_segmenter()
    image = np.random.default_rng(4).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    at_input, _ = _plain_lseg_logits(segmenter, image)
    expected = F.interpolate(at_input, size=(100, 150), mode="bilinear", align_corners=False)[0].softmax(0)
    result = segmenter.segment(image)
    np.testing.assert_allclose(result.confidences, expected.numpy(), atol=1e-5)
    # without the x2 align_corners=True step (the old path) the maps differ
    with torch.no_grad():
        low = segmenter.classify(segmenter.backend(_plain_lseg_logits(segmenter, image)[1]),
                                 segmenter.label_set.label_embeddings)
    direct = F.interpolate(low, size=(100, 150), mode="bilinear", align_corners=False)[0].softmax(0)
    assert float((direct - expected).abs().max()) > 1e-3


def test_pamr_on_lseg_starts_from_the_output_conv_logits():
    from lseg_ros.postprocess import pamr

    segmenter = _tiny_segmenter(pamr_iters=2)
    image = __import__("numpy").random.default_rng(5).integers(0, 256, (64, 96, 3), dtype="uint8")
    at_input, x = _plain_lseg_logits(segmenter, image)
    expected = pamr(x, at_input.softmax(1), 2, [1, 2]).clamp_min(1e-8).log()
    with torch.no_grad():
        logits = segmenter.classify(segmenter.backend(x), segmenter.label_set.label_embeddings, x)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-4)


def test_two_backends_built_one_after_the_other_share_no_module():
    """Each build makes its own network: converting one (a bf16 Segmenter does it in place)
    must not touch the next one's weights."""
    first = random_tiny_backend(arch_option=1, block_depth=1)
    second = random_tiny_backend(arch_option=1, block_depth=1)
    shared = {id(m) for m in first.modules()} & {id(m) for m in second.modules()}
    assert not shared
    first.to(torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in second.parameters())
