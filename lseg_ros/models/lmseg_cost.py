"""The ``lmseg`` backend's cost-volume head (``lmseg.head: aggregation``, the default): LMSeg
(Tang et al. 2024, arXiv 2412.00364) as its paper describes it, on CAT-Seg's aggregator.

    frame -> the fixed model input (input_size x input_size, CLIP-normalized; the Segmenter
             resizes to it, and forward resizes any other size bilinearly, as CAT-Seg does)
      -> dense CLIP features F_clip [B, D, g, g]    (dense_clip mode catseg: CAT-Seg's
                                                     forward_dense of the last block)
         and the patch tokens after two guidance blocks [B, W, g, g] each (CAT-Seg: 3 and 7
         of ViT-B/16, 7 and 15 of ViT-L/14)
      -> SAM image-encoder features, projected to D (1x1 conv ``sam_proj``), on the same grid
      -> F = w * F_clip + (1 - w) * sam_proj(F_sam), w = sigmoid(``fusion_logit``)
         (no SAM, as the catseg_* presets: F = F_clip, which is CAT-Seg)
      == image side: forward returns [F | guidance block a | guidance block b] on the grid
      -> label_logits(features, label embeddings [N, D]):
         guidance upsamplers (CAT-Seg's upsample1/2) -> decoder guidance at 2g and 4g,
         CostAggregator(F, text [B, N, 1, D], (F, g1, g2)): cost volume cosine(F, T_n),
         spatial aggregation (Swin blocks per class), class aggregation (linear attention
         across classes per pixel), guided upsampling -> logits [B, N, 4g, 4g]

Unlike the cosine backends, a pixel's label logit is not a cosine with the label's
embedding: it comes out of the aggregation, which sees every label of the set at once.
The "embeddings" this backend returns (``return_embeddings``, the node's embedding output)
are the fused features F, the image side of the cost volume: ``cosine(F, T_n)`` is the raw
cost E[i, j, n] before aggregation. Training is CAT-Seg's: per-class binary cross-entropy
(``lseg-train``), and CAT-Seg's sigmoid scores give the same per-pixel argmax as the
Segmenter's softmax confidences.

Checkpoint keys (``net_state_dict``): ``dense_clip.clip.*`` (open_clip CLIP, both towers),
``sam.*``, ``sam_proj.*``, ``fusion_logit`` (with SAM), ``guidance.upsample1/2.*``,
``aggregator.*`` (CAT-Seg's ``Aggregator`` names). An official CAT-Seg checkpoint
(``model_base.pth``, ``model_large.pth``: ``sem_seg_head.predictor.*``, ``upsample1/2.*``)
loads strictly too (:meth:`LMSegCostBackend.load_catseg`).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..weights import WeightsError, load_strict
from .cost_aggregation import (CATSEG_PREFIXES, CostAggregator, GuidanceUpsampler, catseg_clip_to_openai,
                               split_catseg_state_dict)
from .dense_clip import DenseClipBackend
from .lmseg import ClipSamBackend, fusion_parameter

#: CAT-Seg's prompt (configs vitb_384 / vitl_336: PROMPT_ENSEMBLE_TYPE single)
CATSEG_TEMPLATES = "catseg"


def is_catseg_checkpoint(state: Mapping[str, Any]) -> bool:
    """Whether a state dict is in CAT-Seg's layout (its predictor's keys)."""
    return any(key.startswith(CATSEG_PREFIXES["aggregator"]) for key in state)


class LMSegCostBackend(ClipSamBackend):
    """CLIP (+ SAM) features fused, a cost volume against the labels, CAT-Seg's aggregation."""

    #: the aggregator's logits are used as they are (CAT-Seg: sigmoid of them)
    default_logit_scale = 1.0
    default_prompt_templates = CATSEG_TEMPLATES
    #: forward returns features that label_logits classifies (not cosine-matched embeddings)
    label_head = True

    def __init__(self, clip: nn.Module, clip_model: str, sam: Optional[nn.Module], aggregator: Mapping[str, Any],
                 guidance_layers: Sequence[int], input_size: int, fusion_init: float = 0.5,
                 freeze_clip: bool = True, freeze_sam: bool = True, name: str = "lmseg") -> None:
        super().__init__()
        fusion = fusion_parameter(fusion_init)
        self.preset_name = name
        self.dense_clip = DenseClipBackend(clip, clip_model, mode="catseg")
        patch = self.dense_clip.input_multiple
        if input_size % patch:
            raise ValueError(f"lmseg input size {input_size} is not a multiple of the CLIP patch size {patch}")
        grid = input_size // patch
        self.fixed_input = int(input_size)
        self.grid = grid
        self.guidance_layers = tuple(int(index) for index in guidance_layers)
        self.image_mean, self.image_std = self.dense_clip.image_mean, self.dense_clip.image_std
        self.embedding_dim = self.dense_clip.embedding_dim
        self.clip_width = int(clip.visual.transformer.width)
        options = dict(aggregator, feature_resolution=(grid, grid))
        options.setdefault("text_guidance_dim", self.embedding_dim)
        options.setdefault("appearance_guidance_dim", self.embedding_dim)
        if options["text_guidance_dim"] != self.embedding_dim or options["appearance_guidance_dim"] != self.embedding_dim:
            raise ValueError(f"the aggregator's guidance dims ({options['text_guidance_dim']}, "
                             f"{options['appearance_guidance_dim']}) must be CLIP's embedding width {self.embedding_dim}")
        self.aggregator = CostAggregator(**options)
        self.guidance = GuidanceUpsampler(self.clip_width, tuple(options.get("decoder_guidance_dims", (256, 128))))
        self.sam = sam
        multiple = patch
        if sam is not None:
            sam_patch = int(sam.patch_embed.patch_size[0])
            multiple = patch * sam_patch // math.gcd(patch, sam_patch)
            self.sam_proj = nn.Conv2d(int(sam.num_features), self.embedding_dim, 1)
            #: the fusion weight w = sigmoid(fusion_logit)
            self.fusion_logit = fusion
            self._setup_sam_input()
        else:
            self.sam_proj = None
            self.fusion_logit = None
        self.input_multiple = multiple
        self.freeze_clip, self.freeze_sam = bool(freeze_clip), bool(freeze_sam)
        self.description = name
        self.text_model_id = f"lmseg/{name}/random#{id(self):x}"

    # ----------------------------------------------------------------- image
    def fuse(self, clip_features: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """F = w * F_clip + (1 - w) * sam_proj(F_sam) on the CLIP grid (F_clip without SAM)."""
        if self.sam is None:
            return clip_features
        sam_projected = self.sam_proj(self.sam_features(images))
        if sam_projected.shape[-2:] != clip_features.shape[-2:]:
            sam_projected = F.interpolate(sam_projected, size=clip_features.shape[-2:], mode="bilinear",
                                          align_corners=False)
        weight = self.fusion_weight.to(clip_features.dtype)
        return weight * clip_features + (1 - weight) * sam_projected

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Image-side features [B, D + 2W, g, g] = [F | guidance block a | guidance block b] of
        normalized images [B, 3, H, W], resized (bilinear) to the fixed input size first."""
        images = images.to(self.dtype)
        size = (self.fixed_input, self.fixed_input)
        if tuple(images.shape[-2:]) != size:
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        clip_features, guidance = self.dense_clip.dense_features(images, self.guidance_layers)
        return torch.cat([self.fuse(clip_features, images), *guidance], dim=1)

    def split_features(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """forward's output -> (F [B, D, g, g], guidance a, guidance b [B, W, g, g])."""
        return tuple(features.split([self.embedding_dim, self.clip_width, self.clip_width], dim=1))

    def pixel_embeddings(self, features: torch.Tensor) -> torch.Tensor:
        """The fused features F [B, D, g, g] (cosine(F, T_n) is the raw cost volume)."""
        return features[:, :self.embedding_dim]

    def label_logits(self, features: torch.Tensor, label_embeddings: torch.Tensor) -> torch.Tensor:
        """Logits [B, N, 4g, 4g] (float32) of forward's features for labels [N, D] (normalized,
        one prompt each): CAT-Seg's aggregation over the cost volume of F and the labels."""
        dtype = self.aggregator.conv1.weight.dtype
        fused, early, late = (part.to(dtype) for part in self.split_features(features))
        decoder_guidance = self.guidance(early, late)
        text = label_embeddings.to(dtype)[None, :, None, :].expand(fused.shape[0], -1, -1, -1)
        return self.aggregator(fused, text, [fused, *decoder_guidance]).float()

    def image_side_modules(self) -> List[nn.Module]:
        return [self.clip.visual] + ([self.sam, self.sam_proj] if self.sam is not None else [])

    def release_image_side(self) -> int:
        count = self.dense_clip.release_image_side()
        if self.sam is not None:
            for name in ("sam", "sam_proj"):
                count += sum(parameter.numel() for parameter in getattr(self, name).parameters())
                setattr(self, name, None)
        return count

    # -------------------------------------------------------------- weights
    def load_weights(self, path: str | os.PathLike, state_dict: Mapping[str, torch.Tensor]) -> "LMSegCostBackend":
        """Load a whole-network checkpoint (as ``lseg-train`` writes it) strictly."""
        path = Path(path).expanduser()
        load_strict(self, state_dict, source=str(path))
        self._named_after(path, path.name)
        return self

    def load_catseg(self, path: str | os.PathLike, state_dict: Mapping[str, torch.Tensor]) -> "LMSegCostBackend":
        """Load an official CAT-Seg checkpoint strictly: aggregator, guidance upsamplers and the
        CLIP model (both towers, q/k/v weights joined into open_clip's in_proj_weight). Keys
        outside those parts, missing keys and shape mismatches raise WeightsError naming them."""
        path = Path(path).expanduser()
        try:
            parts = split_catseg_state_dict(state_dict)
            clip_state = catseg_clip_to_openai(parts["clip"])
        except ValueError as error:
            raise WeightsError(f"{str(path)!r}: {error}") from None
        load_strict(self.aggregator, parts["aggregator"], source=f"{path} ({CATSEG_PREFIXES['aggregator']}*)")
        load_strict(self.guidance, parts["guidance"], source=f"{path} (upsample1/2.*)")
        load_strict(self.clip, clip_state, source=f"{path} ({CATSEG_PREFIXES['clip']}*, OpenAI CLIP layout)",
                    ignore_missing={"attn_mask"})
        fusion = "" if self.sam is None else ", SAM fusion untrained: train it with lseg-train"
        self._named_after(path, f"CAT-Seg {path.name}", fusion)
        return self

    # -------------------------------------------------------------- training
    def decoder_parameters(self) -> Iterator[nn.Parameter]:
        """Aggregator, guidance upsamplers, SAM projection and fusion weight."""
        yield from self.aggregator.parameters()
        yield from self.guidance.parameters()
        if self.sam is not None:
            yield from self.sam_proj.parameters()
            yield self.fusion_logit
