"""CAT-Seg's cost aggregation (Cho et al., CVPR 2024), the refinement stage of LMSeg (issue 24).

Written for this package from the paper and KU-CVLAB/CAT-Seg's ``cat_seg/modeling/transformer/
model.py``; module and parameter names reproduce CAT-Seg's ``Aggregator`` state_dict keys, so
an official CAT-Seg checkpoint's ``sem_seg_head.predictor.transformer.*`` loads strictly
(:func:`load_catseg_checkpoint`). The stages are separate methods so that each can be compared
with CAT-Seg's own code (``scripts/compare_catseg.py``):

    img_feats [B, C, H, W], text_feats [B, T, P, C]   (CLIP patch features; T classes, P prompts)
      -> correlation:           cost volume [B, P, T, H, W] = cosine(img, text)
      -> embed:                 7x7 conv over P -> [B, hidden, T, H, W]
      -> project_guidance:      appearance [B, Ga, H, W], text [B, T, Gt], decoder guidance
      -> per layer: spatial_aggregation (two Swin blocks per class, over the image grid, keys and
                    queries see the appearance guidance) then class_aggregation (a linear-attention
                    Transformer per pixel across classes, on a pooled grid, keys and queries see
                    the text guidance; classes padded to ``pad_len`` with learned tokens)
      -> decode:                two x2 guided up-convolutions, 3x3 conv -> logits [B, T, 4H, 4W]

:meth:`CostAggregator.forward` chains them; with more than ``top_k`` (= ``pad_len``, as CAT-Seg)
classes it keeps the ``top_k`` classes of highest peak cosine and gives the others logit -100.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn

#: where an official CAT-Seg checkpoint (``model_base.pth`` / ``model_large.pth``) keeps each part
CATSEG_PREFIXES = {
    "aggregator": "sem_seg_head.predictor.transformer.",  # this module (CostAggregator)
    "clip": "sem_seg_head.predictor.clip_model.",  # OpenAI-CLIP layout (both towers; fine-tuned q/v)
    "guidance": "upsample",  # upsample1/upsample2: CLIP layer features -> decoder guidance
}

#: CAT-Seg's released configs (configs/vitb_384.yaml, configs/vitl_336.yaml over configs/config.yaml)
#: as CostAggregator arguments: both run 2 layers, 2x2 pooling and one prompt ("single": 'A photo
#: of a {} in the scene'); config.yaml's own 4 layers, 6x6 pooling and 80 prompts are overridden
#: (scripts/compare_catseg.py checks these against the checkout's YAML files)
CATSEG_CONFIGS = {
    "vitb_384": dict(text_guidance_dim=512, appearance_guidance_dim=512, num_layers=2, pooling_size=(2, 2),
                     prompt_channel=1),
    "vitl_336": dict(text_guidance_dim=768, appearance_guidance_dim=768, num_layers=2, pooling_size=(2, 2),
                     prompt_channel=1),
}


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """[N, H, W, C] -> [N * windows, window * window, C] (row-major windows)."""
    n, h, w, c = x.shape
    x = x.view(n, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def window_merge(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: [N * windows, window * window, C] -> [N, H, W, C]."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def shifted_window_mask(resolution: Tuple[int, int], window: int, shift: int) -> torch.Tensor:
    """Swin's mask for shifted windows: [windows, window^2, window^2], 0 within a region, -100 across."""
    h, w = resolution
    regions = torch.zeros(1, h, w, 1)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for i, (rows, cols) in enumerate((r, c) for r in cuts for c in cuts):
        regions[:, rows, cols, :] = i
    labels = window_partition(regions, window).squeeze(-1)  # [windows, window^2]
    different = labels.unsqueeze(1) != labels.unsqueeze(2)
    return torch.zeros(different.shape).masked_fill(different, -100.0)


class WindowAttention(nn.Module):
    """Multi-head attention inside windows; queries and keys also see the guidance channels.

    x: [N, L, dim + guidance_dim] -> [N, L, dim]; mask [windows, L, L] added per window.
    """

    def __init__(self, dim: int, guidance_dim: int, num_heads: int):
        super().__init__()
        self.dim, self.num_heads = dim, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim + guidance_dim, dim)
        self.k = nn.Linear(dim + guidance_dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """[N, L, heads * d] -> [N, heads, L, d]."""
        return x.reshape(x.shape[0], x.shape[1], self.num_heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        n, length, _ = x.shape
        q = self.heads(self.q(x)) * self.scale
        k, v = self.heads(self.k(x)), self.heads(self.v(x[..., :self.dim]))
        attn = q @ k.transpose(-2, -1)  # [N, heads, L, L]
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.view(n // windows, windows, self.num_heads, length, length) + mask[None, :, None]
            attn = attn.view(n, self.num_heads, length, length)
        out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(n, length, -1)
        return self.proj(out)


class SwinBlock(nn.Module):
    """One (shifted-)window Transformer block on a fixed grid: x [N, H*W, dim], guidance
    [N, H*W, guidance_dim] or None -> [N, H*W, dim]."""

    def __init__(self, dim: int, guidance_dim: int, resolution: Tuple[int, int], num_heads: int, window: int,
                 shift: int):
        super().__init__()
        self.resolution = tuple(resolution)
        if min(self.resolution) <= window:  # one window covers the grid: no partition, no shift
            window, shift = min(self.resolution), 0
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, guidance_dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=dim * 4)
        self.register_buffer("attn_mask", shifted_window_mask(self.resolution, window, shift) if shift else None)

    def forward(self, x: torch.Tensor, guidance: Optional[torch.Tensor]) -> torch.Tensor:
        (h, w), (n, _, c) = self.resolution, x.shape
        y = self.norm1(x).view(n, h, w, c)
        if guidance is not None:
            y = torch.cat([y, guidance.view(n, h, w, -1)], dim=-1)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, self.window), mask=self.attn_mask)
        y = window_merge(y, self.window, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(n, h * w, c)
        return x + self.mlp(self.norm2(x))


class SpatialAggregation(nn.Module):
    """Spatial stage: a window and a shifted-window block, each class's cost map on its own.

    x [B, C, T, H, W], guidance [B, G, H, W] or None -> [B, C, T, H, W].
    """

    def __init__(self, dim: int, guidance_dim: int, resolution: Tuple[int, int], num_heads: int, window: int):
        super().__init__()
        self.block_1 = SwinBlock(dim, guidance_dim, resolution, num_heads, window, shift=0)
        self.block_2 = SwinBlock(dim, guidance_dim, resolution, num_heads, window, shift=window // 2)
        self.guidance_norm = nn.LayerNorm(guidance_dim) if guidance_dim > 0 else None

    def forward(self, x: torch.Tensor, guidance: Optional[torch.Tensor]) -> torch.Tensor:
        b, c, t, h, w = x.shape
        x = x.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)
        if guidance is not None:  # [B, G, H, W] -> [B*T, H*W, G]
            guidance = guidance.flatten(2).transpose(1, 2).repeat_interleave(t, dim=0)
            guidance = self.guidance_norm(guidance)
        x = self.block_2(self.block_1(x, guidance), guidance)
        return x.view(b, t, h, w, c).permute(0, 4, 1, 2, 3)


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Linear attention with the elu + 1 feature map (Katharopoulos et al. 2020).

    q [N, L, heads, d], k and v [N, S, heads, d] -> [N, L, heads, d].
    """
    q, k = F.elu(q) + 1, F.elu(k) + 1
    length = v.shape[1]
    kv = torch.einsum("nshd,nshv->nhdv", k, v / length)
    z = 1 / (torch.einsum("nlhd,nhd->nlh", q, k.sum(dim=1)) + eps)
    return torch.einsum("nlhd,nhdv,nlh->nlhv", q, kv, z) * length


class ClassAttention(nn.Module):
    """Multi-head linear attention across classes; queries and keys also see the text guidance.

    x [N, T, dim], guidance [N, T, G] or None -> [N, T, dim].
    """

    def __init__(self, dim: int, guidance_dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim + guidance_dim, dim)
        self.k = nn.Linear(dim + guidance_dim, dim)
        self.v = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, guidance: Optional[torch.Tensor]) -> torch.Tensor:
        xg = torch.cat([x, guidance], dim=-1) if guidance is not None else x
        split = lambda y: y.reshape(y.shape[0], y.shape[1], self.num_heads, -1)  # noqa: E731
        out = linear_attention(split(self.q(xg)), split(self.k(xg)), split(self.v(x)))
        return out.flatten(2)


class ClassAggregation(nn.Module):
    """Class stage: per pixel of an average-pooled grid, a Transformer layer across the classes,
    upsampled back (bilinear, align_corners) and added to the input.

    x [B, C, T, H, W], text guidance [B, T, G] or None -> [B, C, T, H, W]. Fewer than ``pad_len``
    classes are padded with a learned token (and guidance) to ``pad_len`` for the attention.
    """

    def __init__(self, dim: int, guidance_dim: int, num_heads: int, pooling_size: Optional[Sequence[int]],
                 pad_len: int):
        super().__init__()
        self.pool = nn.AvgPool2d(pooling_size) if pooling_size is not None else nn.Identity()
        self.attention = ClassAttention(dim, guidance_dim, num_heads)
        self.MLP = nn.Sequential(nn.Linear(dim, dim * 4), nn.ReLU(), nn.Linear(dim * 4, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.pad_len = pad_len
        self.padding_tokens = nn.Parameter(torch.zeros(1, 1, dim)) if pad_len > 0 else None
        self.padding_guidance = nn.Parameter(torch.zeros(1, 1, guidance_dim)) if pad_len > 0 and guidance_dim > 0 \
            else None

    def forward(self, x: torch.Tensor, guidance: Optional[torch.Tensor]) -> torch.Tensor:
        b, c, t, h, w = x.shape
        pooled = self.pool(x.transpose(1, 2).reshape(b * t, c, h, w))  # [B*T, C, h', w']
        hp, wp = pooled.shape[-2:]
        tokens = pooled.view(b, t, c, hp * wp).permute(0, 3, 1, 2)  # [B, h'w', T, C]
        pad = self.pad_len - t if self.padding_tokens is not None else 0
        if pad > 0:
            tokens = torch.cat([tokens, self.padding_tokens.expand(b, hp * wp, pad, c)], dim=2)
        tokens = tokens.reshape(b * hp * wp, -1, c)  # [B*h'w', T', C]
        if guidance is not None:
            if pad > 0 and self.padding_guidance is not None:
                guidance = torch.cat([guidance, self.padding_guidance.expand(b, pad, -1)], dim=1)
            guidance = guidance.repeat_interleave(hp * wp, dim=0)  # [B*h'w', T', G]
        tokens = tokens + self.attention(self.norm1(tokens), guidance)
        tokens = tokens + self.MLP(self.norm2(tokens))
        tokens = tokens.view(b, hp, wp, -1, c)[:, :, :, :t]  # drop the padding
        tokens = tokens.permute(0, 3, 4, 1, 2).reshape(b * t, c, hp, wp)
        tokens = F.interpolate(tokens, size=(h, w), mode="bilinear", align_corners=True)
        return x + tokens.view(b, t, c, h, w).transpose(1, 2)


class AggregatorLayer(nn.Module):
    """One spatial then one class aggregation stage: [B, C, T, H, W] -> [B, C, T, H, W]."""

    def __init__(self, hidden_dim: int, text_guidance_dim: int, appearance_guidance_dim: int, num_heads: int,
                 resolution: Tuple[int, int], pooling_size, window: int, pad_len: int):
        super().__init__()
        self.swin_block = SpatialAggregation(hidden_dim, appearance_guidance_dim, resolution, num_heads, window)
        self.attention = ClassAggregation(hidden_dim, text_guidance_dim, num_heads, pooling_size, pad_len)

    def forward(self, x, appearance_guidance, text_guidance):
        return self.attention(self.swin_block(x, appearance_guidance), text_guidance)


class DoubleConv(nn.Module):
    """(3x3 conv, GroupNorm, ReLU) twice: [N, in, H, W] -> [N, out, H, W]."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.GroupNorm(out_channels // 16, out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.GroupNorm(out_channels // 16, out_channels), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.double_conv(x)


class GuidedUp(nn.Module):
    """x2 transposed conv, concatenated with the (projected) encoder guidance, then DoubleConv.

    x [B*T, in, H, W], guidance [B, G, 2H, 2W] or None -> [B*T, out, 2H, 2W]; ``in`` channels in
    all: the transposed conv gives ``in - G``.
    """

    def __init__(self, in_channels: int, out_channels: int, guidance_channels: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels - guidance_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x: torch.Tensor, guidance: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.up(x)
        if guidance is not None:
            x = torch.cat([x, guidance.repeat_interleave(x.shape[0] // guidance.shape[0], dim=0)], dim=1)
        return self.conv(x)


def conv_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv + ReLU (CAT-Seg's guidance projections; keys ``0.weight``, ``0.bias``)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU())


class CostAggregator(nn.Module):
    """CAT-Seg's cost aggregation (its ``Aggregator``; defaults are its constructor's defaults,
    :data:`CATSEG_CONFIGS` the released models' settings)."""

    def __init__(self, text_guidance_dim: int = 512, text_guidance_proj_dim: int = 128,
                 appearance_guidance_dim: int = 512, appearance_guidance_proj_dim: int = 128,
                 decoder_dims: Sequence[int] = (64, 32), decoder_guidance_dims: Sequence[int] = (256, 128),
                 decoder_guidance_proj_dims: Sequence[int] = (32, 16), num_layers: int = 4, nheads: int = 4,
                 hidden_dim: int = 128, pooling_size=(6, 6), feature_resolution: Sequence[int] = (24, 24),
                 window_size: int = 12, prompt_channel: int = 1, pad_len: int = 256):
        super().__init__()
        self.hidden_dim, self.pad_len = hidden_dim, pad_len
        #: most classes aggregated per input: with more, the ones of highest peak cosine (CAT-Seg's
        #: top-k, at pad_len in its code; a smaller value bounds the cost of large label sets)
        self.top_k = pad_len
        self.feature_resolution = tuple(feature_resolution)
        self.layers = nn.ModuleList([
            AggregatorLayer(hidden_dim, text_guidance_proj_dim, appearance_guidance_proj_dim, nheads,
                            self.feature_resolution, pooling_size, window_size, pad_len)
            for _ in range(num_layers)])
        self.conv1 = nn.Conv2d(prompt_channel, hidden_dim, kernel_size=7, stride=1, padding=3)
        self.guidance_projection = conv_relu(appearance_guidance_dim, appearance_guidance_proj_dim) \
            if appearance_guidance_dim > 0 else None
        self.text_guidance_projection = nn.Sequential(nn.Linear(text_guidance_dim, text_guidance_proj_dim),
                                                      nn.ReLU()) if text_guidance_dim > 0 else None
        self.decoder_guidance_projection = nn.ModuleList([
            conv_relu(d, p) for d, p in zip(decoder_guidance_dims, decoder_guidance_proj_dims)]) \
            if decoder_guidance_dims[0] > 0 else None
        self.decoder1 = GuidedUp(hidden_dim, decoder_dims[0], decoder_guidance_proj_dims[0])
        self.decoder2 = GuidedUp(decoder_dims[0], decoder_dims[1], decoder_guidance_proj_dims[1])
        self.head = nn.Conv2d(decoder_dims[1], 1, kernel_size=3, stride=1, padding=1)

    @staticmethod
    def correlation(img_feats: torch.Tensor, text_feats: torch.Tensor) -> torch.Tensor:
        """Cost volume: img [B, C, H, W], text [B, T, P, C] -> cosine [B, P, T, H, W]."""
        return torch.einsum("bchw,btpc->bpthw", F.normalize(img_feats, dim=1), F.normalize(text_feats, dim=-1))

    def embed(self, corr: torch.Tensor) -> torch.Tensor:
        """[B, P, T, H, W] -> [B, hidden, T, H, W] (7x7 conv per class, prompts as channels)."""
        b, p, t, h, w = corr.shape
        x = self.conv1(corr.transpose(1, 2).reshape(b * t, p, h, w))
        return x.view(b, t, -1, h, w).transpose(1, 2)

    def project_guidance(self, appearance_guidance: Sequence[torch.Tensor], text_feats: torch.Tensor):
        """Guidance for the stages: appearance_guidance = (clip [B, Ca, H, W], decoder guidance
        [B, Cd0, 2H, 2W], [B, Cd1, 4H, 4W]), text_feats [B, T, P, C] ->
        (appearance [B, Ga, H, W] | None, text [B, T, Gt] | None, [decoder guidance | None] * 2)."""
        appearance = self.guidance_projection(appearance_guidance[0]) if self.guidance_projection is not None \
            else None
        decoder = [None, None]
        if self.decoder_guidance_projection is not None:
            decoder = [proj(g) for proj, g in zip(self.decoder_guidance_projection, appearance_guidance[1:])]
        text = None
        if self.text_guidance_projection is not None:
            mean = text_feats.mean(dim=-2)
            text = self.text_guidance_projection(mean / mean.norm(dim=-1, keepdim=True))
        return appearance, text, decoder

    def spatial_aggregation(self, x: torch.Tensor, layer: int, appearance: Optional[torch.Tensor]) -> torch.Tensor:
        """Layer ``layer``'s spatial stage: [B, hidden, T, H, W] -> same."""
        return self.layers[layer].swin_block(x, appearance)

    def class_aggregation(self, x: torch.Tensor, layer: int, text: Optional[torch.Tensor]) -> torch.Tensor:
        """Layer ``layer``'s class stage: [B, hidden, T, H, W] -> same."""
        return self.layers[layer].attention(x, text)

    def decode(self, x: torch.Tensor, decoder_guidance: Sequence[Optional[torch.Tensor]]) -> torch.Tensor:
        """Upsampling decoder: [B, hidden, T, H, W] -> logits [B, T, 4H, 4W]."""
        b, c, t, h, w = x.shape
        y = x.transpose(1, 2).reshape(b * t, c, h, w)
        y = self.head(self.decoder2(self.decoder1(y, decoder_guidance[0]), decoder_guidance[1]))
        return y.view(b, t, *y.shape[-2:])

    def select_classes(self, corr: torch.Tensor) -> torch.Tensor:
        """The ``top_k`` classes of highest peak cosine: corr [B, P, T, H, W] -> indices [B, top_k]
        (in ``topk``'s unsorted order, as CAT-Seg)."""
        peak = corr.transpose(1, 2).flatten(-3).max(dim=-1)[0]  # [B, T]
        return peak.topk(self.top_k, dim=-1, sorted=False)[1]

    def check_inputs(self, img_feats: torch.Tensor, text_feats: torch.Tensor,
                     appearance_guidance: Sequence[torch.Tensor]) -> None:
        """Raise ValueError naming the first input whose shape does not fit this aggregator."""
        h, w = self.feature_resolution
        if img_feats.dim() != 4 or tuple(img_feats.shape[-2:]) != (h, w):
            raise ValueError(f"img_feats of shape {tuple(img_feats.shape)}: expected [B, C, {h}, {w}] "
                             f"(the aggregator's feature_resolution)")
        b, c = img_feats.shape[:2]
        prompts = self.conv1.in_channels
        if text_feats.dim() != 4 or text_feats.shape[0] != b or tuple(text_feats.shape[2:]) != (prompts, c):
            raise ValueError(f"text_feats of shape {tuple(text_feats.shape)}: expected [{b}, T, {prompts}, {c}] "
                             f"(batch, classes, prompts, img_feats' channels)")
        expected = [(self.guidance_projection, (h, w))] if self.guidance_projection is not None else [(None, None)]
        if self.decoder_guidance_projection is not None:
            expected += [(proj, (h * 2 ** (i + 1), w * 2 ** (i + 1)))
                         for i, proj in enumerate(self.decoder_guidance_projection)]
        if len(appearance_guidance) < len(expected):
            raise ValueError(f"{len(appearance_guidance)} guidance maps: expected {len(expected)} (CLIP features, "
                             f"then decoder guidance at 2x and 4x)")
        for i, ((proj, size), g) in enumerate(zip(expected, appearance_guidance)):
            if proj is None:
                continue
            channels = proj[0].in_channels
            if g.dim() != 4 or tuple(g.shape) != (b, channels, *size):
                raise ValueError(f"appearance_guidance[{i}] of shape {tuple(g.shape)}: expected "
                                 f"[{b}, {channels}, {size[0]}, {size[1]}]")

    def forward(self, img_feats: torch.Tensor, text_feats: torch.Tensor,
                appearance_guidance: Sequence[torch.Tensor]) -> torch.Tensor:
        """img_feats [B, C, H, W], text_feats [B, T, P, C], appearance_guidance as in
        :meth:`project_guidance` -> logits [B, T, 4H, 4W] (-100 for classes left out: beyond
        ``top_k``, those of lowest peak cosine). Raises
        ValueError naming an input of the wrong shape (:meth:`check_inputs`)."""
        self.check_inputs(img_feats, text_feats, appearance_guidance)
        corr = self.correlation(img_feats, text_feats)
        num_classes, classes = text_feats.shape[1], None
        if 0 < self.top_k < num_classes:
            classes = self.select_classes(corr)
            index = classes[..., None, None].expand(-1, -1, *text_feats.shape[-2:])
            text_feats = torch.gather(F.normalize(text_feats, dim=-1), 1, index)  # [B, pad_len, P, C]
            corr = torch.einsum("bchw,btpc->bpthw", F.normalize(img_feats, dim=1), text_feats)
        x = self.embed(corr)
        appearance, text, decoder = self.project_guidance(appearance_guidance, text_feats)
        for i in range(len(self.layers)):
            x = self.class_aggregation(self.spatial_aggregation(x, i, appearance), i, text)
        logits = self.decode(x, decoder)
        if classes is None:
            return logits
        out = logits.new_full((logits.shape[0], num_classes, *logits.shape[-2:]), -100.0)
        return out.scatter(1, classes[..., None, None].expand(-1, -1, *logits.shape[-2:]), logits)


class GuidanceUpsampler(nn.Module):
    """CAT-Seg's decoder guidance from two intermediate CLIP ViT layers (blocks 3 and 7 for
    ViT-B/16, 7 and 15 for ViT-L/14): [B, width, H, W] each -> [B, 256, 2H, 2W], [B, 128, 4H, 4W].
    Keys ``upsample1.*``, ``upsample2.*`` as at the top level of CAT-Seg's checkpoint."""

    def __init__(self, width: int = 768, dims: Sequence[int] = (256, 128)):
        super().__init__()
        self.upsample1 = nn.ConvTranspose2d(width, dims[0], kernel_size=2, stride=2)
        self.upsample2 = nn.ConvTranspose2d(width, dims[1], kernel_size=4, stride=4)

    def forward(self, early: torch.Tensor, late: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.upsample1(early), self.upsample2(late)


def read_checkpoint(path) -> Dict[str, torch.Tensor]:
    """A CAT-Seg checkpoint's flat state dict: a .safetensors file, or a torch file (read with
    weights_only=True) holding it directly or under ``model`` (detectron2's layout)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return state["model"] if isinstance(state, Mapping) and "model" in state else state


def split_catseg_state_dict(state: Mapping[str, torch.Tensor]) -> Dict[str, Dict[str, torch.Tensor]]:
    """Sort an official CAT-Seg checkpoint's keys into its parts, prefixes removed:

    - ``aggregator``: ``sem_seg_head.predictor.transformer.*`` (:class:`CostAggregator`)
    - ``clip``: ``sem_seg_head.predictor.clip_model.*``, the CLIP model (both towers) in OpenAI's
      layout (``visual.*``, ``transformer.*``, ``token_embedding.*``, ...) except that each
      attention keeps ``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` apart (CAT-Seg
      fine-tunes q and v and the positional embeddings, ``CLIP_FINETUNE: attention``); see
      :func:`catseg_clip_to_openai`
    - ``guidance``: ``upsample1.*``, ``upsample2.*`` (:class:`GuidanceUpsampler`)

    Raises ValueError naming any key outside these parts.
    """
    parts: Dict[str, Dict[str, torch.Tensor]] = {name: {} for name in CATSEG_PREFIXES}
    unknown = []
    for key, value in state.items():
        for name, prefix in CATSEG_PREFIXES.items():
            if key.startswith(prefix):
                parts[name][key if name == "guidance" else key[len(prefix):]] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"not a CAT-Seg checkpoint key (accepted prefixes: {sorted(CATSEG_PREFIXES.values())}): "
                         f"{', '.join(sorted(unknown)[:10])}{' ...' if len(unknown) > 10 else ''}")
    return parts


def catseg_clip_to_openai(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """CAT-Seg's CLIP part (prefix removed) -> OpenAI's CLIP layout (what open_clip loads): each
    block's ``attn.{q,k,v}_proj_weight`` [D, D] concatenated into ``attn.in_proj_weight`` [3D, D].
    Raises ValueError naming a block that lacks one of the three."""
    out = {k: v for k, v in state.items() if not k.endswith(("q_proj_weight", "k_proj_weight", "v_proj_weight"))}
    blocks = {k[:-len("q_proj_weight")] for k in state if k.endswith(("q_proj_weight", "k_proj_weight",
                                                                      "v_proj_weight"))}
    for block in sorted(blocks):
        parts = [f"{block}{p}_proj_weight" for p in "qkv"]
        missing = [p for p in parts if p not in state]
        if missing:
            raise ValueError(f"CAT-Seg CLIP attention {block[:-1]} lacks {missing} (needs q, k and v_proj_weight)")
        out[f"{block}in_proj_weight"] = torch.cat([state[p] for p in parts], dim=0)
    return out


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """load_state_dict(strict=True) with a one-line error naming the missing and unexpected keys
    and the shape mismatches."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})" for k in set(own) & set(state)
                    if state[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        raise ValueError(f"{what} does not match: missing keys {missing}, unexpected keys {unexpected}, "
                         f"wrong shapes {shapes}")
    module.load_state_dict(state, strict=True)


def load_catseg_checkpoint(source, aggregator: CostAggregator,
                           guidance: Optional[GuidanceUpsampler] = None) -> Dict[str, torch.Tensor]:
    """Load an official CAT-Seg checkpoint (a path or its state dict) strictly: its aggregator keys
    into ``aggregator``, its ``upsample1/2`` into ``guidance`` (when given). Returns the CLIP part
    (OpenAI layout, prefix removed) for the caller's CLIP model. Raises ValueError naming missing,
    unexpected or misshapen keys."""
    state = source if isinstance(source, Mapping) else read_checkpoint(source)
    parts = split_catseg_state_dict(state)
    load_strict(aggregator, parts["aggregator"], f"CAT-Seg aggregator ({CATSEG_PREFIXES['aggregator']}*)")
    if guidance is not None:
        load_strict(guidance, parts["guidance"], "CAT-Seg guidance upsamplers (upsample1/2.*)")
    return parts["clip"]
