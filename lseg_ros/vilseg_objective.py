"""ViL-Seg's training objective (Liu et al., ECCV 2022), on the training side: lseg-train
``--objective vilseg`` trains the ``vilseg`` backend (:mod:`lseg_ros.models.vilseg`, the
network and its inference) with :class:`VilSegObjective` from image captions alone.

The paper's three terms (weights in the training config's ``vilseg`` section):

* vision-based contrasting: each local crop's pooled embedding against the global view's
  embedding pooled over the same region (InfoNCE over the batch, both directions). (Against
  the whole global view's embedding, as image-level self-distillation has it, a crop would
  be taught to encode what lies outside it, and with a ViT's global attention every patch
  drifts to encoding the whole image: measured on generated scenes, per-patch mIoU fell as
  the caption loss fell. Against its own region it teaches the opposite: a patch encodes what is there.);
* cross-modal contrasting: the pooled image embedding against its caption's embedding
  (symmetric InfoNCE over the batch with the learned temperature, as CLIP);
* clustering: the mutual information between the cluster assignments of every patch of an
  image and of the same patch in a photometrically augmented view (IIC, Ji et al. 2019),
  maximized.

The pooled image embedding (``vilseg.pooling``) is the mean of the normalized patch
embeddings (``mean``) or the cluster-balanced mean of the clustering head's soft cluster
means (``clusters``, as the shipped model was trained), so the cross-modal term shapes every
patch embedding, not a separate [CLS] token.

A reconstruction from the paper's description (no code was released); the loss formulas are
the standard ones the paper builds on (InfoNCE, IIC).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from .models.vilseg import VilSegNet


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
