"""The ``vilseg`` backend: ViL-Seg (Liu et al., "Open-world Semantic Segmentation via
Contrasting and Clustering Vision-Language Embedding", ECCV 2022), learned from image
captions alone, without a single mask.

Network (``VilSegNet``; its ``state_dict()`` is the checkpoint layout)::

    vit.*            timm ViT image encoder (any size), run at any input size (dynamic_img_size)
    patch_head.*     MLP: ViT patch tokens -> patch embeddings [B, D, h, w] in the text space
    cluster_head.*   ViL-Seg's online clustering head: MLP over the patch embeddings -> soft
                     assignment of every patch to one of K clusters (softmax over K)
    text.*           open_clip text tower (TextTransformer) -> caption/label embeddings [N, D]
    logit_scale      learned temperature of the cross-modal contrast (CLIP's, log-parametrized)

Training objective: :mod:`lseg_ros.vilseg_objective` (lseg-train ``--objective vilseg``).

Inference (``forward``): patch embeddings -> the clustering head's hard assignment ->
each cluster's mean embedding (per image) replaces the embeddings of its patches -> the
Segmenter classifies them against the label embeddings as for every backend, so a cluster
takes one label. ``vilseg.cluster_inference: false`` classifies patches one by one instead.

This is a reconstruction from the paper's description (no code was released); the loss
formulas are the standard ones the paper builds on (InfoNCE, IIC).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import timm
import torch
import torch.nn.functional as F
from open_clip.transformer import TextTransformer
from torch import nn

from ..config import SegmenterConfig
from ..weights import WeightsError, extract_state_dict, load_strict, looks_like_path, read_checkpoint
from .base import SegmentationBackend, register_backend
from .base import get_preset as get_preset_from
from .clip_text import clip_tokenizer, encode_text_trimmed


#: temperature of the clustering head's softmax
CLUSTER_TEMPERATURE = 0.1


@dataclass(frozen=True)
class VilSegPreset:
    """Architecture of one ViL-Seg variant."""

    name: str
    vit_name: str  # timm model name, built with pretrained=False
    embedding_dim: int  # joint image-text embedding width D
    text: Mapping[str, Any]  # open_clip TextTransformer arguments (context_length, vocab_size, width, heads, layers)
    vit_kwargs: Mapping[str, Any] = field(default_factory=dict)
    hidden: int = 0  # width of the patch and cluster heads' hidden layer; 0 = the ViT width
    note: str = ""


PRESETS: Dict[str, VilSegPreset] = {p.name: p for p in (
    VilSegPreset("vilseg_tiny", "vit_tiny_patch16_224", 64,
                 dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2),
                 vit_kwargs={"img_size": 64, "patch_size": 8, "embed_dim": 64, "depth": 4, "num_heads": 2},
                 note="CPU tests and the demo model trained on generated scenes"),
    VilSegPreset("vilseg_vits16", "vit_small_patch16_224", 512,
                 dict(context_length=77, vocab_size=49408, width=512, heads=8, layers=12),
                 note="the paper's scale: ViT-S/16 image encoder, CLIP-size text transformer"),
    VilSegPreset("vilseg_vitb16", "vit_base_patch16_224", 512,
                 dict(context_length=77, vocab_size=49408, width=512, heads=8, layers=12)),
)}


def get_preset(name: str) -> VilSegPreset:
    """The ViL-Seg preset ``name``; ValueError naming the accepted ones."""
    return get_preset_from(PRESETS, name, "ViL-Seg")


def _mlp(width: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, out))


class VilSegNet(nn.Module):
    """Image encoder, patch head, clustering head and text tower (see the module docstring)."""

    def __init__(self, preset: VilSegPreset, clusters: int) -> None:
        super().__init__()
        if clusters < 2:
            raise ValueError(f"invalid vilseg.clusters={clusters!r}; accepted: an integer >= 2")
        self.preset = preset
        self.clusters = int(clusters)
        self.vit = timm.create_model(preset.vit_name, pretrained=False, num_classes=0, dynamic_img_size=True,
                                     **dict(preset.vit_kwargs))
        width = int(self.vit.embed_dim)
        hidden = preset.hidden or width
        dim = preset.embedding_dim
        self.patch_head = _mlp(width, hidden, dim)
        self.cluster_head = _mlp(dim, hidden, self.clusters)
        self.text = TextTransformer(output_dim=dim, **dict(preset.text))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.context_length = int(preset.text["context_length"])

    @property
    def patch_size(self) -> int:
        return int(self.vit.patch_embed.patch_size[0])

    def patch_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """Patch embeddings [B, D, h, w] (not normalized) of normalized images [B, 3, H, W]."""
        batch, _, height, width = images.shape
        grid = (height // self.patch_size, width // self.patch_size)
        tokens = self.vit.forward_features(images)[:, self.vit.num_prefix_tokens:]  # [B, h*w, C]
        embeddings = self.patch_head(tokens)  # [B, h*w, D]
        return embeddings.transpose(1, 2).reshape(batch, -1, *grid)

    def cluster_logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cluster logits [B, K, h, w] of patch embeddings [B, D, h, w] (divided by
        CLUSTER_TEMPERATURE: sharp assignments from the start, away from the uniform
        assignment where the mutual information has no gradient)."""
        normalized = F.normalize(embeddings, dim=1).permute(0, 2, 3, 1)  # [B, h, w, D]
        return (self.cluster_head(normalized) / CLUSTER_TEMPERATURE).permute(0, 3, 1, 2)

    def forward(self, images: torch.Tensor, cluster: bool = True) -> torch.Tensor:
        """Pixel embeddings [B, D, h, w]: each patch's cluster mean (``cluster``) or its own."""
        embeddings = F.normalize(self.patch_embeddings(images), dim=1)  # [B, D, h, w]
        if not cluster:
            return embeddings
        return cluster_means(embeddings, self.cluster_logits(embeddings).argmax(dim=1), self.clusters)

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Text embeddings [N, D] (not normalized) from token ids [N, T]."""
        return encode_text_trimmed(self.text, token_ids)


def cluster_means(embeddings: torch.Tensor, assignment: torch.Tensor, clusters: int) -> torch.Tensor:
    """Every patch's embedding replaced by the mean of its cluster's (per image).
    embeddings [B, D, h, w], assignment [B, h, w] long in [0, K) -> [B, D, h, w]."""
    batch, dim, height, width = embeddings.shape
    flat = embeddings.flatten(2)  # [B, D, P]
    one_hot = F.one_hot(assignment.flatten(1), clusters).to(flat.dtype)  # [B, P, K]
    sums = torch.bmm(flat, one_hot)  # [B, D, K]
    means = sums / one_hot.sum(dim=1, keepdim=True).clamp_min(1)  # [B, D, K]
    return torch.bmm(means, one_hot.transpose(1, 2)).reshape(batch, dim, height, width)


# --------------------------------------------------------------------- backend
class VilSegBackend(SegmentationBackend):
    """ViL-Seg as a :class:`SegmentationBackend`; the network is ``self.net``."""

    backend_name = "vilseg"
    image_mean = (0.5, 0.5, 0.5)
    image_std = (0.5, 0.5, 0.5)
    default_prompt_templates = "single"
    trainable = True  # lseg-train

    def __init__(self, preset: VilSegPreset, clusters: int = 16, cluster_inference: bool = True) -> None:
        super().__init__()
        self.preset = preset
        self.net = VilSegNet(preset, clusters)
        self.cluster_inference = bool(cluster_inference)
        self.input_multiple = self.net.patch_size
        #: softmax temperature of the confidences: the one the cross-modal contrast learned
        self.default_logit_scale = self.learned_logit_scale()
        self._describe("random init")
        self.text_model_id = f"vilseg/{preset.name}/random#{id(self):x}"

    def learned_logit_scale(self) -> float:
        """exp(logit_scale), clamped at 100 as in training."""
        return float(self.net.logit_scale.detach().exp().clamp(max=100))

    def _describe(self, weights: str) -> None:
        grouping = f"{self.net.clusters} clusters" if self.cluster_inference else "per patch"
        self.description = f"vilseg {self.preset.name} ({weights}, {grouping})"

    def load_weights(self, path: str | os.PathLike,
                     checkpoint: Optional[Mapping[str, object]] = None) -> "VilSegBackend":
        """Load a state dict written by ``lseg-train --objective vilseg`` strictly."""
        path = Path(path).expanduser()
        checkpoint = read_checkpoint(path) if checkpoint is None else checkpoint
        state_dict = extract_state_dict(checkpoint)
        head = state_dict.get("cluster_head.2.weight")
        if head is not None and head.shape[0] != self.net.clusters:
            raise WeightsError(f"ViL-Seg weights {str(path)!r} have {head.shape[0]} clusters but "
                               f"vilseg.clusters is {self.net.clusters}: set vilseg.clusters {head.shape[0]}")
        load_strict(self.net, state_dict, source=str(path))
        self._describe(path.name)
        self.default_logit_scale = self.learned_logit_scale()
        stat = path.stat()
        self.text_model_id = f"vilseg/{self.preset.name}/{path.resolve()}@{stat.st_size}:{stat.st_mtime_ns}"
        return self

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return clip_tokenizer(self.net.context_length)(list(texts))

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.net.encode_text(token_ids)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        if height % self.input_multiple or width % self.input_multiple:
            raise ValueError(f"vilseg input size {height}x{width} is not a multiple of the patch size "
                             f"{self.input_multiple}")
        return self.net(images, cluster=self.cluster_inference)

    def image_side_modules(self) -> List[nn.Module]:
        return [self.net.vit, self.net.patch_head, self.net.cluster_head]

    def release_image_side(self) -> int:
        count = sum(p.numel() for m in self.image_side_modules() for p in m.parameters())
        self.net.vit = self.net.patch_head = self.net.cluster_head = None
        return count

    # -------------------------------------------------------------- training
    def image_parameters(self) -> Iterator[nn.Parameter]:
        return self.net.vit.parameters()

    def decoder_parameters(self) -> Iterator[nn.Parameter]:
        """The patch and clustering heads."""
        yield from self.net.patch_head.parameters()
        yield from self.net.cluster_head.parameters()

    def text_parameters(self) -> Iterator[nn.Parameter]:
        """The text tower and the contrast temperature (trained with captions)."""
        yield from self.net.text.parameters()
        yield self.net.logit_scale

    def freeze_text(self) -> "VilSegBackend":
        self.net.text.requires_grad_(False)
        return self

    def net_state_dict(self) -> Dict[str, torch.Tensor]:
        return self.net.state_dict()


@register_backend("vilseg")
def build_vilseg(config: SegmenterConfig) -> VilSegBackend:
    """``config.model`` names a preset; ``config.pretrained`` is 'random' or a local file."""
    preset = get_preset(config.model)
    pretrained = config.pretrained
    if pretrained != "random" and not looks_like_path(pretrained):
        raise WeightsError(f"vilseg cannot use pretrained={pretrained!r}: ViL-Seg has no downloadable "
                           f"weights. Pass a local checkpoint written by 'lseg-train --objective vilseg', "
                           f"or pretrained:=random explicitly for tests.")
    settings = config.vilseg
    backend = VilSegBackend(preset, clusters=settings.clusters, cluster_inference=settings.cluster_inference)
    if pretrained != "random":
        backend.load_weights(pretrained)
    return backend.eval()
