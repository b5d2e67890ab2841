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

Training objective (:class:`VilSegLoss`; the paper's three terms, weights in the config):

* vision-based contrasting: each local crop's pooled embedding against the global view's
  embedding pooled over the same region (InfoNCE over the batch, both directions). (Against
  the whole global view's embedding, as image-level self-distillation has it, a crop would
  be taught to encode what lies outside it, and with a ViT's global attention every patch
  drifts to encoding the whole image: measured here, per-patch mIoU fell as the caption loss
  fell. Against its own region it teaches the opposite: a patch encodes what is there.);
* cross-modal contrasting: the pooled image embedding against its caption's embedding
  (symmetric InfoNCE over the batch with the learned temperature, as CLIP);
* clustering: the mutual information between the cluster assignments of every patch of an
  image and of the same patch in a photometrically augmented view (IIC, Ji et al. 2019),
  maximized.

The pooled image embedding is the mean of the normalized patch embeddings, so the
cross-modal term shapes every patch embedding, not a separate [CLS] token.

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
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import timm
import torch
import torch.nn.functional as F
from open_clip.transformer import TextTransformer
from torch import nn

from ..config import SegmenterConfig
from ..weights import WeightsError, extract_state_dict, load_strict, looks_like_path, read_checkpoint
from .base import SegmentationBackend, register_backend
from .clip_text import encode_text_trimmed
from .lseg import _tokenizer


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
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown ViL-Seg preset model={name!r}; accepted: {', '.join(sorted(PRESETS))}") \
            from None


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


# --------------------------------------------------------------------- objective
def info_nce(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE of normalized pairs a[i] <-> b[i] [B, D] over the batch."""
    logits = scale * a @ b.t()  # [B, B]
    targets = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))


def iic_loss(logits_a: torch.Tensor, logits_b: torch.Tensor, entropy_weight: float = 1.0,
             eps: float = 1e-8) -> torch.Tensor:
    """Negative mutual information (IIC) between the cluster assignments of corresponding
    patches of two views: logits [B, K, h, w] each -> scalar, -I(z_a; z_b) with
    ``entropy_weight`` 1. A weight above 1 rewards the marginals' entropy more (IIC's
    lambda), which keeps small classes from being merged into large clusters."""
    clusters = logits_a.shape[1]
    p_a = logits_a.float().softmax(dim=1).permute(0, 2, 3, 1).reshape(-1, clusters)  # [N, K]
    p_b = logits_b.float().softmax(dim=1).permute(0, 2, 3, 1).reshape(-1, clusters)
    joint = p_a.t() @ p_b / p_a.shape[0]  # [K, K]
    joint = ((joint + joint.t()) / 2).clamp_min(eps)
    marginal_a = joint.sum(dim=1, keepdim=True)
    marginal_b = joint.sum(dim=0, keepdim=True)
    return -(joint * (joint.log() - entropy_weight * (marginal_a.log() + marginal_b.log()))).sum()


def pooled(embeddings: torch.Tensor) -> torch.Tensor:
    """Normalized image embedding [B, D]: the mean of the normalized patch embeddings."""
    return F.normalize(F.normalize(embeddings, dim=1).mean(dim=(2, 3)), dim=-1)


def region_pooled(embeddings: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Normalized mean [B, D] of the normalized patch embeddings [B, D, h, w] whose centres
    lie in each image's box [B, 4] (top, left, bottom, right as fractions of the image)."""
    _, _, height, width = embeddings.shape
    rows = (torch.arange(height, device=embeddings.device, dtype=boxes.dtype) + 0.5) / height  # [h]
    cols = (torch.arange(width, device=embeddings.device, dtype=boxes.dtype) + 0.5) / width  # [w]
    inside_rows = (rows[None] >= boxes[:, 0:1]) & (rows[None] < boxes[:, 2:3])  # [B, h]
    inside_cols = (cols[None] >= boxes[:, 1:2]) & (cols[None] < boxes[:, 3:4])  # [B, w]
    weights = (inside_rows[:, :, None] & inside_cols[:, None, :]).to(embeddings.dtype)  # [B, h, w]
    sums = (F.normalize(embeddings, dim=1) * weights[:, None]).sum(dim=(2, 3))  # [B, D]
    return F.normalize(sums / weights.sum(dim=(1, 2)).clamp_min(1)[:, None], dim=-1)


def cluster_pooled(embeddings: torch.Tensor, cluster_logits: torch.Tensor, saturation: float = 0.02) -> torch.Tensor:
    """Normalized image embedding [B, D] that weighs each cluster alike, not each patch: the
    mean of the clusters' (soft) mean embeddings, cluster k weighted by m_k / (m_k + s) of
    its share m_k of the patches (a cluster covering a few percent counts about as much as
    the floor; an empty one not at all). A caption names each thing once, however large.
    embeddings [B, D, h, w], cluster_logits [B, K, h, w]."""
    normalized = F.normalize(embeddings, dim=1).flatten(2)  # [B, D, P]
    assignment = cluster_logits.float().softmax(dim=1).flatten(2).to(normalized.dtype)  # [B, K, P]
    mass = assignment.sum(dim=2)  # [B, K]
    means = F.normalize(torch.bmm(normalized, assignment.transpose(1, 2)) / mass.clamp_min(1e-6)[:, None],
                        dim=1)  # [B, D, K]
    share = mass / normalized.shape[-1]
    weights = share / (share + saturation)  # [B, K]
    return F.normalize((means * weights[:, None]).sum(dim=2), dim=-1)


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
        return _tokenizer(self.net.context_length)(list(texts))

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


# ---------------------------------------------------------------------- training
class VilSegObjective:
    """ViL-Seg's training loss on a batch of images and caption token ids.

    Views (made here on the batch, with torch's global RNG so a resumed run draws the same):
    the global view is the image, flipped at random and colour-jittered; the clustering
    view is the same geometry with another colour jitter (so patch i of one view is patch i
    of the other); ``local_crops`` local views are random crops of ``local_scale`` of each
    side of the global view, resized to half its size.
    """

    def __init__(self, net: VilSegNet, image_mean: Sequence[float], image_std: Sequence[float],
                 cross_modal_weight: float = 1.0, vision_weight: float = 0.5, cluster_weight: float = 1.0,
                 cluster_entropy: float = 2.0, local_crops: int = 2, local_scale: Sequence[float] = (0.35, 0.65),
                 vision_temperature: float = 0.1, jitter: float = 0.3, flip: bool = True,
                 pooling: str = "mean") -> None:
        if pooling not in ("mean", "clusters"):
            raise ValueError(f"invalid vilseg.pooling={pooling!r}; accepted: mean, clusters")
        self.pooling = pooling
        self.net = net
        self.mean = torch.tensor(image_mean).view(1, 3, 1, 1)
        self.std = torch.tensor(image_std).view(1, 3, 1, 1)
        self.weights = dict(cross_modal=float(cross_modal_weight), vision=float(vision_weight),
                            cluster=float(cluster_weight))
        self.cluster_entropy = float(cluster_entropy)
        self.local_crops = int(local_crops)
        self.local_scale = (float(local_scale[0]), float(local_scale[1]))
        self.vision_temperature = float(vision_temperature)
        self.jitter = float(jitter)
        self.flip = bool(flip)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean.to(images.device)) / self.std.to(images.device)

    def color_jitter(self, images: torch.Tensor) -> torch.Tensor:
        """Per-image brightness, contrast and saturation factors in [1 - s, 1 + s]."""
        if not self.jitter:
            return images
        batch = images.shape[0]

        def factor():
            return 1 + (torch.rand(batch, 1, 1, 1) * 2 - 1).to(images.device) * self.jitter

        images = images * factor()
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = (images - mean) * factor() + mean
        gray = images.mean(dim=1, keepdim=True)
        return ((images - gray) * factor() + gray).clamp(0, 1)

    def crops(self, images: torch.Tensor) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """``local_crops`` pairs (crops [B, 3, H/2, W/2] with sides a multiple of the patch,
        boxes [B, 4] as (top, left, bottom, right) fractions of the image)."""
        batch, _, height, width = images.shape
        patch = self.net.patch_size
        size = (max(patch, height // 2 // patch * patch), max(patch, width // 2 // patch * patch))
        low, high = self.local_scale
        views = []
        for _ in range(self.local_crops):
            fractions = (low + (high - low) * torch.rand(batch)).tolist()
            starts = torch.rand(batch, 2).tolist()
            crops, boxes = [], []
            for index in range(batch):
                crop_h = max(1, int(height * fractions[index]))
                crop_w = max(1, int(width * fractions[index]))
                top = int(starts[index][0] * (height - crop_h + 1))
                left = int(starts[index][1] * (width - crop_w + 1))
                crop = images[index:index + 1, :, top:top + crop_h, left:left + crop_w]
                crops.append(F.interpolate(crop, size=size, mode="bilinear", align_corners=False))
                boxes.append((top / height, left / width, (top + crop_h) / height, (left + crop_w) / width))
            views.append((torch.cat(crops), torch.tensor(boxes, device=images.device)))
        return views

    def __call__(self, images: torch.Tensor, token_ids: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
        """(weighted total loss, each term's value) for images [B, 3, H, W] in [0, 1] and the
        token ids [B, T] of one caption per image."""
        net = self.net
        if self.flip:
            flipped = (torch.rand(images.shape[0]) < 0.5).to(images.device).view(-1, 1, 1, 1)
            images = torch.where(flipped, images.flip(-1), images)
        global_view = self.color_jitter(images)
        embeddings = net.patch_embeddings(self.normalize(global_view))  # [B, D, h, w]
        image_embedding = pooled(embeddings)  # [B, D]
        terms: Dict[str, torch.Tensor] = {}
        logits = net.cluster_logits(embeddings) if self.weights["cluster"] or self.pooling == "clusters" else None
        if self.weights["cross_modal"]:
            text_embedding = F.normalize(net.encode_text(token_ids), dim=-1)  # [B, D]
            caption_side = cluster_pooled(embeddings, logits) if self.pooling == "clusters" else image_embedding
            terms["cross_modal"] = info_nce(caption_side, text_embedding, net.logit_scale.exp().clamp(max=100))
        if self.weights["vision"] and self.local_crops:
            losses = []
            for crop, boxes in self.crops(global_view):
                region = region_pooled(embeddings, boxes)  # the global view over the crop's region
                local = pooled(net.patch_embeddings(self.normalize(crop)))
                losses.append(info_nce(region, local, 1 / self.vision_temperature))
            terms["vision"] = sum(losses) / len(losses)
        if self.weights["cluster"]:
            other = net.patch_embeddings(self.normalize(self.color_jitter(images)))
            terms["cluster"] = iic_loss(logits, net.cluster_logits(other),
                                        self.cluster_entropy)
        total = sum(self.weights[name] * value for name, value in terms.items())
        return total, {name: float(value.detach()) for name, value in terms.items()}
