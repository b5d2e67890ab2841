"""Optional post-processing of pixel embeddings and logits.

* :func:`cluster_pixel_embeddings` -- ViL-Seg's idea: group pixel embeddings into K
  clusters (cosine k-means) and let each cluster's mean embedding stand for its pixels,
  so a region is classified as a whole.
* :func:`pamr` -- pixel-adaptive mask refinement (Araslanov & Roth, 2020): label
  probabilities are propagated between neighbouring pixels with image-driven affinities.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def cluster_pixel_embeddings(pixel_embeddings: torch.Tensor, k: int, iterations: int = 10) -> torch.Tensor:
    """Replace every pixel embedding by its cluster's mean embedding.

    pixel_embeddings: [B, D, h, w], L2-normalized along D. Returns the same shape.
    Deterministic: initial centers are spread over the image in raster order.
    """
    batch, dim, height, width = pixel_embeddings.shape
    k = min(k, height * width)
    points = pixel_embeddings.flatten(2).transpose(1, 2).float()  # [B, P, D]
    init = torch.linspace(0, height * width - 1, k, device=points.device).long()
    centers = points[:, init]  # [B, K, D]
    for _ in range(max(1, iterations)):
        assignment = torch.einsum("bpd,bkd->bpk", points, centers).argmax(-1)  # [B, P]
        one_hot = F.one_hot(assignment, k).to(points.dtype)  # [B, P, K]
        sums = torch.einsum("bpk,bpd->bkd", one_hot, points)
        counts = one_hot.sum(1)[..., None]  # [B, K, 1]
        # empty clusters keep their previous center
        centers = torch.where(counts > 0, F.normalize(sums, dim=-1), centers)
    clustered = torch.gather(centers, 1, assignment[..., None].expand(-1, -1, dim))  # [B, P, D]
    return clustered.transpose(1, 2).reshape(batch, dim, height, width).to(pixel_embeddings.dtype)


def _neighbours(x: torch.Tensor, dilations: Sequence[int]) -> torch.Tensor:
    """The 8 neighbours of every pixel at each dilation: [B, C, H, W] -> [B, C, 8*len(d), H, W]."""
    shifted = []
    for d in dilations:
        padded = F.pad(x, [d, d, d, d], mode="replicate")
        height, width = x.shape[-2:]
        for dy in (-d, 0, d):
            for dx in (-d, 0, d):
                if dy == 0 and dx == 0:
                    continue
                shifted.append(padded[..., d + dy:d + dy + height, d + dx:d + dx + width])
    return torch.stack(shifted, dim=2)


def pamr(image: torch.Tensor, probabilities: torch.Tensor, iterations: int = 10,
         dilations: Sequence[int] = (1, 2)) -> torch.Tensor:
    """Refine label probabilities [B, N, H, W] with image [B, 3, H, W] (same H, W).

    Run at image resolution (the segmenter uses the model input), where image edges can
    move label boundaries; at the patch grid it would only smooth.
    """
    image = image.float()
    neighbours = _neighbours(image, dilations)  # [B, 3, K, H, W]
    difference = (neighbours - image[:, :, None]).abs()
    # local spread over each dilation's 3x3 window, centre included (PAMR's LocalStDev)
    taps = torch.cat([neighbours] + [image[:, :, None]] * len(dilations), dim=2)
    spread = taps.std(dim=2, keepdim=True) + 1e-8
    affinity = -(difference / (0.1 * spread)).mean(1, keepdim=True)  # [B, 1, K, H, W]
    affinity = F.softmax(affinity, dim=2)
    refined = probabilities.float()
    for _ in range(iterations):
        refined = (_neighbours(refined, dilations) * affinity).sum(2)  # [B, N, H, W]
    return refined
