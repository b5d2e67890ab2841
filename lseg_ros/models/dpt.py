"""DPT building blocks of LSeg: a timm ViT read out at four depths, reassembled into an
image pyramid, and fused by RefineNet-style blocks.

Module and attribute names follow isl-org/lang-seg (``modules/models/lseg_vit.py`` and
``lseg_blocks.py``) so that a lang-seg checkpoint loads key for key:

    pretrained.model.*                       the timm VisionTransformer
    pretrained.act_postprocess{1..4}.0.project.0.{weight,bias}   readout projection
    pretrained.act_postprocess{1..4}.3.{weight,bias}             1x1 conv to pyramid width
    pretrained.act_postprocess{1..4}.4.{weight,bias}             resampling (when present)
    scratch.layer{1..4}_rn.weight                                3x3 conv to `features`
    scratch.refinenet{1..4}.out_conv.{weight,bias}
    scratch.refinenet{1..4}.resConfUnit{1,2}.conv{1,2}.weight
    scratch.refinenet{1..4}.resConfUnit{1,2}.bn{1,2}.{weight,bias,running_mean,running_var,
                                                      num_batches_tracked}

Upstream differences that change no key: the hooked block outputs are collected in the
forward loop instead of by global forward hooks, and the fusion blocks upsample to the
size of the next skip connection (identical to upstream's x2 whenever the patch grid is
even; upstream fails on odd grids, e.g. inputs of 48 or 80 pixels).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

#: output stride (in input pixels) of the four pyramid levels fed to the decoder
PYRAMID_STRIDES = (4, 8, 16, 32)


class ProjectReadout(nn.Module):
    """Readout "project": concatenate every patch token with the class token and project
    back to the token width (``project = Sequential(Linear(2C, C), GELU)``)."""

    def __init__(self, vit_features: int, start_index: int = 1) -> None:
        super().__init__()
        self.start_index = start_index
        self.project = nn.Sequential(nn.Linear(2 * vit_features, vit_features), nn.GELU())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        patch_tokens = tokens[:, self.start_index:]  # [B, N, C]
        readout = tokens[:, :1].expand_as(patch_tokens)  # [B, N, C]
        return self.project(torch.cat((patch_tokens, readout), dim=-1))  # [B, N, C]


class TokensToChannels(nn.Module):
    """[B, N, C] -> [B, C, N] (upstream's ``Transpose(1, 2)``; no parameters)."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.transpose(1, 2)


def make_reassemble(vit_features: int, out_features: int, upsample: float) -> nn.Sequential:
    """One ``act_postprocess`` stage. Indices match upstream: 0 readout, 1 transpose,
    2 unflatten (a placeholder here: the grid size is known only at forward time),
    3 1x1 conv, 4 resampling by ``upsample`` (ConvTranspose for 2/4/8, a stride-2 3x3
    conv for 0.5, absent for 1)."""
    layers: List[nn.Module] = [
        ProjectReadout(vit_features),
        TokensToChannels(),
        nn.Identity(),
        nn.Conv2d(vit_features, out_features, kernel_size=1, stride=1, padding=0),
    ]
    if upsample > 1:
        factor = int(upsample)
        layers.append(nn.ConvTranspose2d(out_features, out_features, kernel_size=factor, stride=factor,
                                         padding=0, bias=True, dilation=1, groups=1))
    elif upsample == 0.5:
        layers.append(nn.Conv2d(out_features, out_features, kernel_size=3, stride=2, padding=1))
    elif upsample != 1:
        raise ValueError(f"unsupported reassemble resampling factor {upsample!r}; accepted: 0.5, 1, 2, 4, 8")
    return nn.Sequential(*layers)


def resize_pos_embed(pos_embed: torch.Tensor, grid_size: Tuple[int, int], start_index: int = 1) -> torch.Tensor:
    """Resize ViT position embeddings [1, start_index + g*g, C] to a (gh, gw) patch grid
    with bilinear interpolation, as lang-seg's ``_resize_pos_embed`` does."""
    prefix, grid = pos_embed[:, :start_index], pos_embed[0, start_index:]  # [1, P, C], [g*g, C]
    old_size = int(math.sqrt(grid.shape[0]))
    if old_size * old_size != grid.shape[0]:
        raise ValueError(f"position embedding grid of {grid.shape[0]} tokens is not square")
    if (old_size, old_size) == tuple(grid_size):
        return pos_embed
    grid = grid.reshape(1, old_size, old_size, -1).permute(0, 3, 1, 2)  # [1, C, g, g]
    grid = F.interpolate(grid, size=tuple(grid_size), mode="bilinear")  # [1, C, gh, gw]
    grid = grid.permute(0, 2, 3, 1).reshape(1, grid_size[0] * grid_size[1], -1)  # [1, gh*gw, C]
    return torch.cat([prefix, grid], dim=1)


class ViTPyramid(nn.Module):
    """lang-seg's ``pretrained``: a timm ViT (``model``) whose blocks ``hooks`` are read
    out and reassembled (``act_postprocess1..4``) into maps at strides 4, 8, 16, 32."""

    def __init__(self, model: nn.Module, hooks: Sequence[int], vit_features: int,
                 pyramid_features: Sequence[int]) -> None:
        super().__init__()
        if len(hooks) != 4 or len(pyramid_features) != 4:
            raise ValueError(f"need 4 hooks and 4 pyramid widths, got hooks={list(hooks)} "
                             f"and pyramid_features={list(pyramid_features)}")
        self.model = model
        self.hooks = tuple(int(h) for h in hooks)
        self.patch_size = int(model.patch_embed.patch_size[0])
        self.start_index = int(getattr(model, "num_prefix_tokens", 1))
        for level, (stride, width) in enumerate(zip(PYRAMID_STRIDES, pyramid_features), start=1):
            setattr(self, f"act_postprocess{level}",
                    make_reassemble(vit_features, width, self.patch_size / stride))

    def forward_tokens(self, images: torch.Tensor) -> List[torch.Tensor]:
        """Token sequences [B, 1 + gh*gw, C] after each hooked block."""
        model = self.model
        grid = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)
        tokens = model.patch_embed.proj(images).flatten(2).transpose(1, 2)  # [B, gh*gw, C]
        cls_token = model.cls_token.expand(tokens.shape[0], -1, -1)  # [B, 1, C]
        tokens = torch.cat((cls_token, tokens), dim=1)  # [B, 1 + gh*gw, C]
        tokens = tokens + resize_pos_embed(model.pos_embed, grid, self.start_index)
        tokens = model.norm_pre(model.pos_drop(tokens))
        hooked = []
        for index, block in enumerate(model.blocks[: max(self.hooks) + 1]):
            tokens = block(tokens)
            if index in self.hooks:
                hooked.append(tokens)
        return hooked

    def forward(self, images: torch.Tensor) -> List[torch.Tensor]:
        """Four feature maps [B, C_i, H/s_i, W/s_i] with s_i = 4, 8, 16, 32."""
        grid = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)
        pyramid = []
        for level, tokens in enumerate(self.forward_tokens(images), start=1):
            stage = getattr(self, f"act_postprocess{level}")
            channels = stage[0:2](tokens)  # [B, C, gh*gw]
            feature_map = channels.unflatten(2, grid)  # [B, C, gh, gw]
            pyramid.append(stage[3:](feature_map))  # [B, C_i, H/s_i, W/s_i]
        return pyramid


def make_scratch(pyramid_features: Sequence[int], features: int) -> nn.Module:
    """lang-seg's ``scratch`` with ``layer1_rn..layer4_rn`` (3x3 convs, no bias) that bring
    every pyramid level to ``features`` channels; the caller adds the rest."""
    scratch = nn.Module()
    for level, width in enumerate(pyramid_features, start=1):
        setattr(scratch, f"layer{level}_rn",
                nn.Conv2d(width, features, kernel_size=3, stride=1, padding=1, bias=False))
    return scratch


class ResidualConvUnit(nn.Module):
    """ReLU-conv-BN-ReLU-conv-BN plus skip (lang-seg's ``ResidualConvUnit_custom``, bn=True)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, stride=1, padding=1, bias=False)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(features)
        self.bn2 = nn.BatchNorm2d(features)
        self.activation = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv1(self.activation(x)))
        out = self.bn2(self.conv2(self.activation(out)))
        return out + x


class FeatureFusionBlock(nn.Module):
    """Adds the refined skip map to the coarser path, refines, upsamples, 1x1-projects
    (lang-seg's ``FeatureFusionBlock_custom`` with bn=True, expand=False, align_corners=True)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, kernel_size=1, stride=1, padding=0, bias=True)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, path: torch.Tensor, skip: Optional[torch.Tensor] = None,
                size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """``path`` [B, F, h, w] (+ ``skip`` [B, F, h, w]) -> [B, F, *size] (default 2h, 2w)."""
        if skip is not None:
            path = path + self.resConfUnit1(skip)
        path = self.resConfUnit2(path)
        size = tuple(size) if size is not None else (2 * path.shape[-2], 2 * path.shape[-1])
        path = F.interpolate(path, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(path)


class Interpolate(nn.Module):
    """Parameter-free resize by ``scale_factor`` (lang-seg's ``scratch.output_conv[0]``)."""

    def __init__(self, scale_factor: float, mode: str = "bilinear", align_corners: bool = True) -> None:
        super().__init__()
        self.scale_factor = scale_factor
        self.mode = mode
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode=self.mode,
                             align_corners=self.align_corners)
