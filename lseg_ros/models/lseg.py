"""The ``lseg`` backend: LSeg (Li et al., "Language-driven Semantic Segmentation", ICLR 2022).

A DPT decoder over a timm ViT maps an image to pixel embeddings in the space of a frozen
CLIP text tower; labels are matched by cosine similarity. The network mirrors
isl-org/lang-seg's ``LSegNet`` module for module, so its official checkpoint
(``demo_e200.ckpt``, preset ``lseg_vitl16_384``) loads strictly, key for key.

Key layout of ``LSegNet.state_dict()`` (a Lightning checkpoint prefixes every key with
``net.``), as derived from lang-seg ``modules/models/lseg_net.py``, ``lseg_blocks.py``,
``lseg_vit.py``::

    clip_pretrained.{positional_embedding, text_projection, logit_scale, token_embedding.weight,
        ln_final.{weight,bias}}                       OpenAI CLIP ViT-B/32, text tower
    clip_pretrained.transformer.resblocks.{0..11}.{ln_1, ln_2}.{weight,bias}
    clip_pretrained.transformer.resblocks.{0..11}.attn.{in_proj_weight, in_proj_bias,
        out_proj.weight, out_proj.bias}
    clip_pretrained.transformer.resblocks.{0..11}.mlp.{c_fc, c_proj}.{weight,bias}
    clip_pretrained.visual.{class_embedding, positional_embedding, proj, conv1.weight,
        ln_pre.{weight,bias}, ln_post.{weight,bias}, transformer.resblocks.{0..11}.*}
                                                      (image tower: stored, never run)
    pretrained.model.{cls_token, pos_embed, patch_embed.proj.{weight,bias},
        norm.{weight,bias}, head.{weight,bias}}       timm vit_large_patch16_384
    pretrained.model.blocks.{0..23}.{norm1, norm2}.{weight,bias}
    pretrained.model.blocks.{0..23}.attn.{qkv, proj}.{weight,bias}
    pretrained.model.blocks.{0..23}.mlp.{fc1, fc2}.{weight,bias}
    pretrained.act_postprocess{1..4}.0.project.0.{weight,bias}    readout "project"
    pretrained.act_postprocess{1..4}.3.{weight,bias}              1x1 conv
    pretrained.act_postprocess{1,2,4}.4.{weight,bias}             x4 / x2 ConvTranspose, /2 conv
    scratch.layer{1..4}_rn.weight
    scratch.refinenet{1..4}.out_conv.{weight,bias}
    scratch.refinenet{1..4}.resConfUnit{1,2}.conv{1,2}.weight
    scratch.refinenet{1..4}.resConfUnit{1,2}.bn{1,2}.{weight, bias, running_mean, running_var,
        num_batches_tracked}
    scratch.head1.{weight,bias}                       1x1 conv, features -> 512
    scratch.head_block.depthwise.depthwise.{weight,bias}   only with lseg.arch_option 1 or 2

There is no ``logit_scale`` key: upstream's ``logit_scale`` is a plain tensor (1/0.07),
not a parameter; ``scratch.output_conv`` (a x2 bilinear upsample) has no parameters.

Resolution: ``forward`` returns the ``scratch.head1`` pixel embeddings [B, D, H/2, W/2],
i.e. before ``output_conv``'s final x2 upsample. They are not normalized; LSeg compares
them with text embeddings by cosine similarity (the segmenter normalizes both).
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import open_clip
import timm
import torch
import torch.nn.functional as F
from torch import nn

from ..config import SegmenterConfig
from ..weights import WeightsError, extract_state_dict, load_strict, looks_like_path, read_checkpoint
from .base import SegmentationBackend, register_backend
from .base import get_preset as get_preset_from
from .clip_text import clip_tokenizer, encode_text_trimmed
from .dpt import FeatureFusionBlock, Interpolate, ViTPyramid, make_scratch

MODEL_CONFIG_DIR = Path(__file__).resolve().parent.parent / "model_configs"
#: LSeg's fixed softmax temperature (upstream: ``exp(log(1 / 0.07))``, not learned)
LSEG_LOGIT_SCALE = 1.0 / 0.07
ACTIVATIONS = {"lrelu": nn.LeakyReLU, "tanh": nn.Tanh, "relu": nn.ReLU}
CHECKPOINT_KEY_PREFIX = "net."


@dataclass(frozen=True)
class LSegPreset:
    """Architecture of one LSeg variant."""

    name: str
    vit_name: str  # timm model name, built with pretrained=False
    hooks: Tuple[int, int, int, int]  # ViT blocks read out for the four pyramid levels
    vit_features: int  # ViT token width
    pyramid_features: Tuple[int, int, int, int]  # reassembled widths at strides 4, 8, 16, 32
    clip_model: str  # open_clip config name (or a JSON in lseg_ros/model_configs)
    embedding_dim: int  # upstream ``out_c``: CLIP joint embedding width
    features: int = 256  # decoder width
    vit_kwargs: Mapping[str, Any] = field(default_factory=dict)
    upstream: str = ""  # lang-seg backbone name and released weights, if any


PRESETS: Dict[str, LSegPreset] = {p.name: p for p in (
    LSegPreset("lseg_vitl16_384", "vit_large_patch16_384", (5, 11, 17, 23), 1024, (256, 512, 1024, 1024),
               "ViT-B-32-quickgelu", 512, upstream="clip_vitl16_384; weights demo_e200.ckpt"),
    LSegPreset("lseg_vitb16_384", "vit_base_patch16_384", (2, 5, 8, 11), 768, (96, 192, 384, 768),
               "ViT-B-32-quickgelu", 512, upstream="none (DPT-base layout); no released weights"),
    LSegPreset("lseg_vitb32_384", "vit_base_patch32_384", (2, 5, 8, 11), 768, (96, 192, 384, 768),
               "ViT-B-32-quickgelu", 512, upstream="clip_vitb32_384"),
    LSegPreset("lseg_tiny", "vit_tiny_patch16_224", (0, 1, 2, 3), 64, (16, 32, 64, 64), "lseg_tiny_clip", 32,
               features=32, vit_kwargs={"img_size": 64, "embed_dim": 64, "depth": 4, "num_heads": 2,
                                        "num_classes": 10},
               upstream="none (CPU tests and demos)"),
)}


def available_presets() -> Sequence[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> LSegPreset:
    """The LSeg preset ``name``; ValueError naming the accepted ones."""
    return get_preset_from(PRESETS, name, "LSeg")


# ------------------------------------------------------------------ text tower
def build_clip(name: str) -> nn.Module:
    """A randomly initialized open_clip CLIP with OpenAI-style key names (the full model:
    lang-seg's ``clip_pretrained`` holds the image tower too)."""
    local_config = MODEL_CONFIG_DIR / f"{name}.json"
    if local_config.is_file():
        model_config = json.loads(local_config.read_text(encoding="utf-8"))
    else:
        model_config = open_clip.get_model_config(name)
    if model_config is None:
        raise ValueError(f"unknown CLIP config {name!r}: neither {str(local_config)!r} nor an open_clip model")
    return open_clip.model.CLIP(**dict(model_config))


# ------------------------------------------------------- spatial regularization
class DepthwiseConv(nn.Module):
    """One 3x3 conv (1 -> 1 channel) shared by every label map."""

    def __init__(self) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(1, 1, kernel_size=3, stride=1, padding=1)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        batch, labels, height, width = logits.shape
        # the logits arrive in float32 whatever precision the weights run in
        weight = self.depthwise.weight
        maps = self.depthwise(logits.reshape(batch * labels, 1, height, width).to(weight.dtype))  # [B*N, 1, h, w]
        return maps.view(batch, labels, height, width).to(logits.dtype)


class SpatialRegularizationBlock(nn.Module):
    """lang-seg's ``bottleneck_block`` (arch_option 1: adds the per-pixel max over labels,
    taken before the conv) or ``depthwise_block`` (arch_option 2: the conv only) over label
    logits [B, N, h, w]."""

    def __init__(self, activation: str = "lrelu", bottleneck: bool = True) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"invalid lseg.activation={activation!r}; accepted: {', '.join(ACTIVATIONS)}")
        self.depthwise = DepthwiseConv()
        self.activation = ACTIVATIONS[activation]()
        self.bottleneck = bottleneck

    def forward(self, logits: torch.Tensor, activate: bool = True) -> torch.Tensor:
        refined = self.depthwise(logits)  # [B, N, h, w]
        if self.bottleneck:
            refined = refined + logits.max(dim=1, keepdim=True).values
        return self.activation(refined) if activate else refined


# --------------------------------------------------------------------- network
class LSegNet(nn.Module):
    """lang-seg's ``LSegNet``: ``clip_pretrained``, ``pretrained`` (ViT + reassemble),
    ``scratch`` (decoder, head, optional regularization, output upsample)."""

    def __init__(self, preset: LSegPreset, block_depth: int = 0, activation: str = "lrelu",
                 arch_option: int = 0) -> None:
        super().__init__()
        if block_depth < 0:
            raise ValueError(f"invalid lseg.block_depth={block_depth!r}; accepted: an integer >= 0")
        if arch_option not in (0, 1, 2):
            raise ValueError(f"invalid lseg.arch_option={arch_option!r}; accepted: 0, 1, 2")
        if arch_option == 0 and block_depth:
            raise ValueError(f"lseg.block_depth={block_depth} needs lseg.arch_option 1 (bottleneck) or 2 "
                             f"(depthwise); arch_option 0 has no regularization blocks")
        self.preset = preset
        self.arch_option = arch_option
        self.block_depth = block_depth
        self.logit_scale = LSEG_LOGIT_SCALE
        self.clip_pretrained = build_clip(preset.clip_model)
        self.context_length = int(self.clip_pretrained.context_length)
        text_dim = int(self.clip_pretrained.text_projection.shape[1])
        if text_dim != preset.embedding_dim:
            raise ValueError(f"preset {preset.name!r}: embedding_dim={preset.embedding_dim} but CLIP "
                             f"{preset.clip_model!r} embeds text in {text_dim} dimensions")
        vit = timm.create_model(preset.vit_name, pretrained=False, **dict(preset.vit_kwargs))
        self.pretrained = ViTPyramid(vit, preset.hooks, preset.vit_features, preset.pyramid_features)
        self.scratch = make_scratch(preset.pyramid_features, preset.features)
        for level in (1, 2, 3, 4):
            setattr(self.scratch, f"refinenet{level}", FeatureFusionBlock(preset.features))
        self.scratch.head1 = nn.Conv2d(preset.features, preset.embedding_dim, kernel_size=1)
        if arch_option in (1, 2):
            self.scratch.head_block = SpatialRegularizationBlock(activation, bottleneck=arch_option == 1)
        self.scratch.output_conv = nn.Sequential(Interpolate(scale_factor=2, mode="bilinear", align_corners=True))

    @property
    def patch_size(self) -> int:
        return self.pretrained.patch_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pixel embeddings [B, D, H/2, W/2] from normalized images [B, 3, H, W]."""
        scratch = self.scratch
        layer_1, layer_2, layer_3, layer_4 = self.pretrained(images)  # strides 4, 8, 16, 32
        layer_1_rn = scratch.layer1_rn(layer_1)  # [B, F, H/4, W/4]
        layer_2_rn = scratch.layer2_rn(layer_2)  # [B, F, H/8, W/8]
        layer_3_rn = scratch.layer3_rn(layer_3)  # [B, F, H/16, W/16]
        layer_4_rn = scratch.layer4_rn(layer_4)  # [B, F, H/32, W/32]
        path_4 = scratch.refinenet4(layer_4_rn, size=layer_3_rn.shape[-2:])  # [B, F, H/16, W/16]
        path_3 = scratch.refinenet3(path_4, layer_3_rn, size=layer_2_rn.shape[-2:])  # [B, F, H/8, W/8]
        path_2 = scratch.refinenet2(path_3, layer_2_rn, size=layer_1_rn.shape[-2:])  # [B, F, H/4, W/4]
        path_1 = scratch.refinenet1(path_2, layer_1_rn)  # [B, F, H/2, W/2]
        return scratch.head1(path_1)  # [B, D, H/2, W/2]

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Text embeddings [N, D] (not normalized) from CLIP token ids [N, 77]."""
        return encode_text_trimmed(self.clip_pretrained, token_ids)

    def refine_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Spatial regularization of label logits [B, N, h, w] with arch_option 1 or 2:
        ``block_depth`` blocks (one when block_depth is 0, as upstream's loop has it), the
        last without activation; the identity with arch_option 0."""
        if self.arch_option == 0:
            return logits
        for _ in range(self.block_depth - 1):
            logits = self.scratch.head_block(logits)
        return self.scratch.head_block(logits, activate=False)

    def label_logits(self, images: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
        """Upstream's full forward: label logits [B, N, H, W] at input resolution (scaled
        cosine similarity, spatial regularization, x2 upsample). For training and checks."""
        pixel_embeddings = F.normalize(self(images), dim=1)  # [B, D, H/2, W/2]
        text_embeddings = F.normalize(text_embeddings.to(pixel_embeddings.dtype), dim=-1)  # [N, D]
        logits = self.logit_scale * torch.einsum("bdhw,nd->bnhw", pixel_embeddings, text_embeddings)
        return self.scratch.output_conv(self.refine_logits(logits))  # [B, N, H, W]


# --------------------------------------------------------------------- backend
class LSegBackend(SegmentationBackend):
    """LSeg as a :class:`SegmentationBackend`; the network is ``self.net``, whose
    ``state_dict()`` is the checkpoint layout (a Lightning checkpoint adds ``net.``)."""

    backend_name = "lseg"
    image_mean = (0.5, 0.5, 0.5)
    image_std = (0.5, 0.5, 0.5)
    input_multiple = 16
    logits_upsample = 2  # scratch.output_conv: x2 bilinear, align_corners=True
    default_logit_scale = LSEG_LOGIT_SCALE
    default_prompt_templates = "none"
    conv_heavy = True  # the DPT decoder
    trainable = True  # lseg-train

    def __init__(self, preset: LSegPreset, block_depth: int = 0, activation: str = "lrelu",
                 arch_option: int = 0) -> None:
        super().__init__()
        self.preset = preset
        self.net = LSegNet(preset, block_depth=block_depth, activation=activation, arch_option=arch_option)
        self.input_multiple = self.net.patch_size
        self._describe("random init")
        # Two random inits never share label embeddings.
        self.text_model_id = f"lseg/{preset.name}/random#{id(self):x}"

    def _describe(self, weights: str) -> None:
        net = self.net
        kind = {1: "bottleneck", 2: "depthwise"}.get(net.arch_option)
        regularization = f", arch_option {net.arch_option}: {max(1, net.block_depth)} {kind} block(s)" if kind else ""
        self.description = f"lseg {self.preset.name} ({weights}{regularization})"

    def load_weights(self, path: str | os.PathLike,
                     checkpoint: Optional[Mapping[str, object]] = None) -> "LSegBackend":
        """Load a lang-seg Lightning checkpoint or a plain (``net.``-prefixed or unprefixed)
        state dict strictly; :class:`WeightsError` names any missing or unexpected key."""
        path = Path(path).expanduser()
        checkpoint = read_checkpoint(path) if checkpoint is None else checkpoint
        state_dict = net_state_dict_from_checkpoint(checkpoint)
        has_head_block = any(key.startswith("scratch.head_block.") for key in state_dict)
        if has_head_block != (self.net.arch_option != 0):
            hint = ("it has spatial-regularization blocks (scratch.head_block): set lseg.arch_option to the "
                    "one it was trained with, 1 (bottleneck) or 2 (depthwise), and lseg.block_depth"
                    if has_head_block else
                    f"it has no spatial-regularization blocks (scratch.head_block) but lseg.arch_option is "
                    f"{self.net.arch_option}: set lseg.arch_option 0 and lseg.block_depth 0")
            raise WeightsError(f"LSeg weights {str(path)!r} do not match the configured head: {hint}")
        load_strict(self.net, state_dict, source=str(path))
        self._describe(path.name)
        stat = path.stat()
        self.text_model_id = f"lseg/{self.preset.name}/{path.resolve()}@{stat.st_size}:{stat.st_mtime_ns}"
        return self

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return clip_tokenizer(self.net.context_length)(list(texts))  # [N, 77]

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.net.encode_text(token_ids)  # [N, D]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        if height % self.input_multiple or width % self.input_multiple:
            raise ValueError(f"lseg input size {height}x{width} is not a multiple of the patch size "
                             f"{self.input_multiple}")
        return self.net(images)  # [B, D, H/2, W/2]

    def refine_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Apply the optional spatial-regularization blocks to label logits [B, N, h, w]."""
        return self.net.refine_logits(logits)

    def image_side_modules(self) -> List[nn.Module]:
        return [self.net.pretrained, self.net.scratch]

    def release_image_side(self) -> int:
        # the ViT and its reassemble layers (most of the weights); the decoder stays: its
        # spatial-regularization blocks refine the logits (refine_logits)
        count = sum(parameter.numel() for parameter in self.net.pretrained.parameters())
        self.net.pretrained = None
        return count

    # -------------------------------------------------------------- training
    def image_parameters(self) -> Iterator[nn.Parameter]:
        """The ViT backbone (``pretrained.model``)."""
        return self.net.pretrained.model.parameters()

    def decoder_parameters(self) -> Iterator[nn.Parameter]:
        """Reassemble stages (``pretrained.act_postprocess1..4``) and ``scratch``. (lang-seg
        trains act_postprocess at the backbone's learning rate and scratch at 10x.)"""
        for level in (1, 2, 3, 4):
            yield from getattr(self.net.pretrained, f"act_postprocess{level}").parameters()
        yield from self.net.scratch.parameters()

    def text_parameters(self) -> Iterator[nn.Parameter]:
        """The whole CLIP model (``clip_pretrained``), frozen in training."""
        return self.net.clip_pretrained.parameters()

    def freeze_text(self) -> "LSegBackend":
        self.net.clip_pretrained.requires_grad_(False)
        return self

    def net_state_dict(self) -> Dict[str, torch.Tensor]:
        """The network's weights with unprefixed keys, as :meth:`load_weights` accepts them."""
        return self.net.state_dict()


def net_state_dict_from_checkpoint(checkpoint: Mapping[str, object]) -> Dict[str, torch.Tensor]:
    """LSegNet tensors of a Lightning checkpoint ``{'state_dict': {'net.…': …}}`` or a plain
    state dict with ``net.``-prefixed or unprefixed keys (other keys are kept as they are,
    so that strict loading names them)."""
    tensors = extract_state_dict(checkpoint)
    return {(key[len(CHECKPOINT_KEY_PREFIX):] if key.startswith(CHECKPOINT_KEY_PREFIX) else key): value
            for key, value in tensors.items()}


@register_backend("lseg")
def build_lseg(config: SegmenterConfig) -> LSegBackend:
    """``config.model`` names a preset; ``config.pretrained`` is 'random' or a local file."""
    preset = get_preset(config.model)
    pretrained = config.pretrained
    if pretrained != "random" and not looks_like_path(pretrained):
        raise WeightsError(
            f"lseg cannot use pretrained={pretrained!r}: LSeg has no downloadable pretrained tags. "
            f"Pass a local checkpoint file, e.g. pretrained:=/path/to/demo_e200.ckpt (the lang-seg "
            f"release's weights for model:=lseg_vitl16_384) or a .safetensors saved by lseg_ros "
            f"training; or pretrained:=random explicitly for tests.")
    checkpoint = None if pretrained == "random" else read_checkpoint(pretrained)
    backend = LSegBackend(preset, block_depth=config.lseg.block_depth, activation=config.lseg.activation,
                          arch_option=config.lseg.arch_option)
    if checkpoint is not None:
        backend.load_weights(pretrained, checkpoint)
    return backend.eval()
