"""CAT-Seg's cost aggregation (lseg_ros.models.cost_aggregation) against CAT-Seg's own code.

test/data/catseg_reference.safetensors is written by scripts/compare_catseg.py from
KU-CVLAB/CAT-Seg's cat_seg/modeling/transformer/model.py: tiny-config weights in CAT-Seg's key
layout (``w.*``), inputs (``in.*``), every stage's output (``out.T3.*``, 3 classes: the padded
class attention) and the logits for 6 classes (``out.T6.logits``: more classes than pad_len,
CAT-Seg's top-k selection), plus the key shapes of CAT-Seg's ViT-B/16 checkpoint (metadata).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lseg_ros.models.cost_aggregation import (CATSEG_CONFIGS, CostAggregator, GuidanceUpsampler,
                                              catseg_clip_to_openai, load_catseg_checkpoint,
                                              split_catseg_state_dict)

REFERENCE = Path(__file__).parent / "data" / "catseg_reference.safetensors"
AGGREGATOR = "sem_seg_head.predictor.transformer."


@pytest.fixture(scope="module")
def reference():
    with safe_open(str(REFERENCE), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(REFERENCE))
    config = json.loads(metadata["config"])
    model = CostAggregator(**config).eval()
    state = {k[2:]: v for k, v in tensors.items() if k.startswith("w.")}
    load_catseg_checkpoint({AGGREGATOR + k: v for k, v in state.items()}, model)
    return model, tensors, metadata


def inputs_of(tensors, text_key="in.text"):
    guidance = [tensors["in.guidance0"], tensors["in.guidance1"], tensors["in.guidance2"]]
    return tensors["in.img"], tensors[text_key], guidance


def assert_close(ours, expected, stage):
    difference = float((ours - expected).abs().max())
    assert ours.shape == expected.shape and difference <= 1e-5, f"{stage}: max |difference| {difference}"


@torch.no_grad()
def test_each_stage_reproduces_catseg_aggregator(reference):
    model, tensors, _ = reference
    img, text, guidance = inputs_of(tensors)
    expected = {k[len("out.T3."):]: v for k, v in tensors.items() if k.startswith("out.T3.")}
    corr = model.correlation(img, text)
    assert_close(corr, expected["corr"], "cost volume")
    x = model.embed(corr)
    assert_close(x, expected["embed"], "embed")
    appearance, text_guidance, decoder = model.project_guidance(guidance, text)
    assert_close(appearance, expected["appearance"], "appearance guidance")
    assert_close(text_guidance, expected["text_guidance"], "text guidance")
    assert_close(decoder[0], expected["decoder_guidance0"], "decoder guidance 0")
    assert_close(decoder[1], expected["decoder_guidance1"], "decoder guidance 1")
    for i in range(len(model.layers)):
        x = model.spatial_aggregation(x, i, appearance)
        assert_close(x, expected[f"spatial{i}"], f"after spatial aggregation {i}")
        x = model.class_aggregation(x, i, text_guidance)
        assert_close(x, expected[f"class{i}"], f"after class aggregation {i}")
    logits = model.decode(x, decoder)
    assert_close(logits, expected["decoder"], "decoder")
    assert_close(model(img, text, guidance), expected["logits"], "forward")


@torch.no_grad()
def test_more_classes_than_pad_len_keeps_catseg_top_classes(reference):
    model, tensors, _ = reference
    img, text, guidance = inputs_of(tensors, "in.text.T6")
    assert text.shape[1] > model.pad_len
    logits = model(img, text, guidance)
    assert_close(logits, tensors["out.T6.logits"], "forward with 6 classes")
    left_out = (logits == -100.0).flatten(2).all(dim=-1)  # [B, T]
    assert int(left_out.sum()) == text.shape[1] - model.pad_len


def official_checkpoint(metadata) -> dict:
    """A random checkpoint with every key (and shape) of CAT-Seg's ViT-B/16 aggregator and guidance
    upsamplers, as CAT-Seg's code builds them, plus CLIP keys in OpenAI's layout."""
    generator = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=generator) for k, shape in json.loads(metadata["vitb_384_keys"]).items()}
    state["sem_seg_head.predictor.clip_model.visual.conv1.weight"] = torch.randn(8, 3, 16, 16, generator=generator)
    state["sem_seg_head.predictor.clip_model.logit_scale"] = torch.tensor(4.6)
    return state


def test_official_checkpoint_layout_loads_strictly(reference, tmp_path):
    state = official_checkpoint(reference[2])
    path = tmp_path / "model_base.pth"
    torch.save({"model": state, "iteration": 79999}, path)  # detectron2's checkpoint layout
    aggregator, guidance = CostAggregator(**CATSEG_CONFIGS["vitb_384"]), GuidanceUpsampler()
    clip = load_catseg_checkpoint(path, aggregator, guidance)
    for key, value in aggregator.state_dict().items():
        assert torch.equal(value, state[AGGREGATOR + key]), key
    assert torch.equal(guidance.upsample2.weight, state["upsample2.weight"])
    assert sorted(clip) == ["logit_scale", "visual.conv1.weight"]


def test_safetensors_checkpoint_loads(reference, tmp_path):
    state = {k: v for k, v in official_checkpoint(reference[2]).items() if k.startswith(AGGREGATOR)}
    save_file(state, str(tmp_path / "catseg.safetensors"))
    aggregator = CostAggregator(**CATSEG_CONFIGS["vitb_384"])
    assert load_catseg_checkpoint(tmp_path / "catseg.safetensors", aggregator) == {}
    assert torch.equal(aggregator.conv1.weight, state[AGGREGATOR + "conv1.weight"])


def test_missing_aggregator_key_is_refused_naming_it(reference):
    state = official_checkpoint(reference[2])
    del state[AGGREGATOR + "layers.1.attention.padding_tokens"]
    with pytest.raises(ValueError, match=r"missing keys \['layers.1.attention.padding_tokens'\]"):
        load_catseg_checkpoint(state, CostAggregator(**CATSEG_CONFIGS["vitb_384"]))


def test_unexpected_aggregator_key_is_refused_naming_it(reference):
    state = official_checkpoint(reference[2])
    state[AGGREGATOR + "layers.2.swin_block.guidance_norm.weight"] = torch.ones(128)
    with pytest.raises(ValueError, match=r"unexpected keys \['layers.2.swin_block.guidance_norm.weight'\]"):
        load_catseg_checkpoint(state, CostAggregator(**CATSEG_CONFIGS["vitb_384"]))


def test_wrong_config_is_refused_naming_the_shape(reference):
    state = official_checkpoint(reference[2])  # ViT-B/16: 512-wide CLIP features
    with pytest.raises(ValueError, match=r"guidance_projection.0.weight \(128, 512, 3, 3\) \(expected "
                                         r"\(128, 768, 3, 3\)\)"):
        load_catseg_checkpoint(state, CostAggregator(**dict(CATSEG_CONFIGS["vitb_384"], appearance_guidance_dim=768)))


def test_key_outside_catseg_parts_is_refused_naming_it():
    with pytest.raises(ValueError, match="sem_seg_head.predictor.prompt_learner.ctx"):
        split_catseg_state_dict({"sem_seg_head.predictor.prompt_learner.ctx": torch.zeros(1)})


def test_guidance_part_missing_is_refused(reference):
    state = {k: v for k, v in official_checkpoint(reference[2]).items() if not k.startswith("upsample1.")}
    with pytest.raises(ValueError, match=r"missing keys \['upsample1.bias', 'upsample1.weight'\]"):
        load_catseg_checkpoint(state, CostAggregator(**CATSEG_CONFIGS["vitb_384"]), GuidanceUpsampler())


def test_catseg_clip_attention_becomes_openai_in_proj():
    q, k, v = (torch.full((4, 4), float(i)) for i in range(3))
    block = "visual.transformer.resblocks.0.attn."
    state = {block + "q_proj_weight": q, block + "k_proj_weight": k, block + "v_proj_weight": v,
             block + "in_proj_bias": torch.zeros(12), "ln_final.weight": torch.ones(4)}
    out = catseg_clip_to_openai(state)
    assert sorted(out) == sorted([block + "in_proj_bias", block + "in_proj_weight", "ln_final.weight"])
    assert torch.equal(out[block + "in_proj_weight"], torch.cat([q, k, v]))
    del state[block + "k_proj_weight"]
    with pytest.raises(ValueError, match=r"visual.transformer.resblocks.0.attn lacks \['visual.transformer"):
        catseg_clip_to_openai(state)


@pytest.mark.parametrize("name, shape, message", [
    ("img", (1, 32, 6, 8), r"img_feats of shape \(1, 32, 6, 8\): expected \[B, C, 8, 8\]"),
    ("text", (1, 3, 1, 32), r"text_feats of shape \(1, 3, 1, 32\): expected \[1, T, 2, 32\]"),
    ("guidance1", (1, 8, 8, 8), r"appearance_guidance\[1\] of shape \(1, 8, 8, 8\): expected \[1, 8, 16, 16\]"),
])
def test_input_of_wrong_shape_is_refused_naming_it(reference, name, shape, message):
    model, tensors, _ = reference
    inputs = {"img": tensors["in.img"], "text": tensors["in.text"], "guidance0": tensors["in.guidance0"],
              "guidance1": tensors["in.guidance1"], "guidance2": tensors["in.guidance2"]}
    inputs[name] = torch.zeros(shape)
    with pytest.raises(ValueError, match=message):
        model(inputs["img"], inputs["text"], [inputs["guidance0"], inputs["guidance1"], inputs["guidance2"]])


CLIP_REFERENCE = Path(__file__).parent / "data" / "catseg_clip_reference.safetensors"


def catseg_reference_clip(mode: str = "catseg"):
    """open_clip's CLIP of the reference's shape with CAT-Seg's image tower (its key layout,
    through catseg_clip_to_openai) in a DenseClipBackend; also the stored tensors and layers."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    from lseg_ros.models.dense_clip import DenseClipBackend

    with safe_open(str(CLIP_REFERENCE), "pt") as f:
        metadata = f.metadata()
    c, layers = json.loads(metadata["config"]), tuple(json.loads(metadata["layers"]))
    tensors = {k: v.float() for k, v in load_file(str(CLIP_REFERENCE)).items()}
    clip = CLIP(c["embed_dim"], CLIPVisionCfg(layers=c["vision_layers"], width=c["vision_width"], head_width=64,
                                              patch_size=c["vision_patch_size"], image_size=c["image_resolution"]),
                CLIPTextCfg(context_length=c["context_length"], vocab_size=c["vocab_size"],
                            width=c["transformer_width"], heads=c["transformer_heads"], layers=c["transformer_layers"]),
                quick_gelu=True)
    visual = catseg_clip_to_openai({k[2:]: v for k, v in tensors.items() if k.startswith("w.")})
    clip.visual.load_state_dict({k[len("visual."):]: v for k, v in visual.items()}, strict=True)
    return DenseClipBackend(clip, "ViT-B-16", mode=mode), tensors, layers


@torch.no_grad()
def test_dense_clip_catseg_mode_gives_catseg_dense_features_and_guidance_layers():
    """CAT-Seg's CLIP (model_vpt.py: ``encode_image(dense=True)``, forward hooks on the guidance
    blocks) on a 12x12 grid from an 8x8 positional table, reproduced to float32 precision."""
    backend, tensors, layers = catseg_reference_clip()
    embeddings, guidance = backend.dense_features(tensors["in.images"], layers)
    assert_close(embeddings, tensors["out.embeddings"], "dense embeddings")
    for index, got in zip(layers, guidance):
        assert_close(got, tensors[f"out.layer{index}"], f"guidance layer {index}")
    maskclip, _, _ = catseg_reference_clip("maskclip")  # its own residual per token: not CAT-Seg's
    assert (maskclip.dense_embeddings(tensors["in.images"]) - tensors["out.embeddings"]).abs().max() > 0.1
