"""The ``lmseg`` backend: SAM image-encoder features fused with dense CLIP features
(after LMSeg, Tang et al. 2024, "Unleashing the Potential of Large-Scale Pre-Trained Models
for Open-Vocabulary Semantic Segmentation" / arXiv 2412.00364).

LMSeg's image side fuses two encoders' pixel features with a learnable weight,
``F = w * F_clip + (1 - w) * F_sam``, matches them against (attribute-enriched) text
embeddings in a cosine cost volume, refines that volume spatially and over classes, and
is trained with a per-pixel loss. Here, as for every backend, the network ends at pixel
embeddings in the CLIP text space and the Segmenter does the cosine matching:

    images [B, 3, H, W] (CLIP-normalized)
      -> dense CLIP patch features [B, D, H/p, W/p]       (dense_clip machinery: an open_clip
                                                            ViT with a modified last block)
      -> SAM image-encoder features [B, 256, H/16, W/16]   (timm samvit; input re-normalized
                                                            to SAM's ImageNet mean/std)
      -> each projected to decoder_width (1x1 convs ``clip_proj``, ``sam_proj``; SAM resized
         bilinearly to the CLIP grid when the patch sizes differ)
      -> F = w * clip + (1 - w) * sam, w = sigmoid(``fusion_logit``), one learned scalar
      -> decoder: 3x3 conv, x2 transposed conv, 3x3 conv, x2 transposed conv, 3x3 conv (each
         with GroupNorm + GELU), 1x1 conv to D
      -> pixel embeddings [B, D, H/p * 4, W/p * 4]  (D = CLIP's joint embedding width)

The text side is the CLIP text tower (frozen in training). Not reproduced from the paper:
the spatial/class refinement of the cost volume (the Segmenter's cosine matching is the
whole head here) and its upsampling decoder's encoder guidance.

Weights. ``pretrained`` is either an lmseg checkpoint written by ``lseg-train`` (the whole
network, loaded strictly; the parts are then built randomly and never fetched) or
``random``: the network assembled from ``lmseg.clip_pretrained`` (an open_clip tag, a local
file or random, through :func:`lseg_ros.models.dense_clip.load_open_clip`) and
``lmseg.sam_checkpoint`` (the official segment-anything file or a timm samvit state dict,
converted by timm's ``checkpoint_filter_fn`` and loaded strictly; empty = random), with
random projections, fusion weight and decoder. Nothing falls back to random weights.

Checkpoint keys (``net_state_dict``): ``dense_clip.clip.*`` (the open_clip CLIP, both
towers), ``sam.*`` (timm samvit), ``clip_proj.*``, ``sam_proj.*``, ``fusion_logit``,
``decoder.*``.
"""
from __future__ import annotations

import math
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
from .cost_aggregation import CATSEG_CONFIGS
from .dense_clip import DENSE_CLIP_MODES, DenseClipBackend, _quiet_open_clip, load_open_clip

#: the softmax temperature of training and inference (as LSeg's: 1 / 0.07)
LMSEG_LOGIT_SCALE = 1.0 / 0.07
#: segment-anything's input normalization (ImageNet mean and std of [0, 1] RGB)
SAM_MEAN = (0.485, 0.456, 0.406)
SAM_STD = (0.229, 0.224, 0.225)
SAM_MODELS = ("samvit_base_patch16", "samvit_large_patch16", "samvit_huge_patch16")


#: lmseg.head values: LMSeg's cost-volume aggregation (lmseg_cost) or the earlier cosine decoder
HEADS = ("aggregation", "cosine")

#: the tiny preset's aggregator (CostAggregator arguments; guidance dims are CLIP's width)
TINY_AGGREGATOR = dict(text_guidance_proj_dim=16, appearance_guidance_proj_dim=16, decoder_dims=(16, 16),
                       decoder_guidance_dims=(32, 16), decoder_guidance_proj_dims=(8, 8), num_layers=2, nheads=2,
                       hidden_dim=16, pooling_size=(2, 2), window_size=4, prompt_channel=1, pad_len=256)


@dataclass(frozen=True)
class LMSegPreset:
    """Architecture of one LMSeg variant."""

    name: str
    clip_model: str  # open_clip model name (or a JSON in lseg_ros/model_configs)
    sam_model: str  # timm samvit name, built with pretrained=False; "" = no SAM (CAT-Seg alone)
    decoder_width: int  # lmseg.head cosine: channels of the fused features and the decoder
    sam_kwargs: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""
    #: lmseg.head aggregation: CostAggregator arguments (CAT-Seg's config), the CLIP blocks whose
    #: patch tokens guide the decoder, and the fixed input side (grid = input_size / patch)
    aggregator: Mapping[str, Any] = field(default_factory=lambda: dict(CATSEG_CONFIGS["vitb_384"]))
    guidance_layers: Tuple[int, int] = (3, 7)
    input_size: int = 384


PRESETS: Dict[str, LMSegPreset] = {p.name: p for p in (
    LMSegPreset("lmseg_vitb16_sam_b", "ViT-B-16", "samvit_base_patch16", 256,
                note="CLIP ViT-B/16 + SAM ViT-B (sam_vit_b_01ec64.pth), CAT-Seg B's aggregator"),
    LMSegPreset("lmseg_vitb16_sam_l", "ViT-B-16", "samvit_large_patch16", 256,
                note="CLIP ViT-B/16 + SAM ViT-L (sam_vit_l_0b3195.pth), CAT-Seg B's aggregator"),
    LMSegPreset("catseg_vitb16_384", "ViT-B-16", "", 256,
                note="CAT-Seg B (model_base.pth): CLIP ViT-B/16 at 384, no SAM"),
    LMSegPreset("catseg_vitl14_336", "ViT-L-14-336", "", 256, aggregator=dict(CATSEG_CONFIGS["vitl_336"]),
                guidance_layers=(7, 15), input_size=336,
                note="CAT-Seg L (model_large.pth): CLIP ViT-L/14 at 336, no SAM"),
    LMSegPreset("lmseg_tiny", "lmseg_tiny_clip", "samvit_base_patch16", 32,
                sam_kwargs={"img_size": 128, "embed_dim": 64, "depth": 2, "num_heads": 2, "window_size": 4,
                            "global_attn_indexes": (1,), "neck_chans": 32},
                aggregator=TINY_AGGREGATOR, guidance_layers=(0, 1), input_size=128,
                note="CPU tests and demos: a 3-block CLIP ViT of width 64, a 2-block samvit of width 64, "
                     "a 2-layer aggregator of width 16 on an 8x8 grid"),
    LMSegPreset("catseg_tiny", "lmseg_tiny_clip", "", 32, aggregator=TINY_AGGREGATOR, guidance_layers=(0, 1),
                input_size=128, note="CPU tests: lmseg_tiny without SAM (CAT-Seg's layout at the tiny size)"),
)}


def available_presets() -> Sequence[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> LMSegPreset:
    """The LMSeg preset ``name``; ValueError naming the accepted ones."""
    return get_preset_from(PRESETS, name, "LMSeg")


def build_sam(name: str, **kwargs) -> nn.Module:
    """A randomly initialized timm SAM image encoder without classifier head."""
    if not name.startswith("samvit_"):
        raise ValueError(f"lmseg.sam_model={name!r} is not a timm SAM image encoder; use one of "
                         f"{', '.join(SAM_MODELS)}")
    try:
        return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    except RuntimeError as error:  # timm: "Unknown model"
        raise ValueError(f"unknown timm model lmseg.sam_model={name!r}: {error}") from None


def sam_state_dict(checkpoint: Mapping[str, object], sam: nn.Module) -> Dict[str, torch.Tensor]:
    """The image-encoder tensors of an official segment-anything checkpoint (``image_encoder.*``,
    ``mlp.lin1/lin2``; ``prompt_encoder.*`` and ``mask_decoder.*`` dropped) in timm's names, via
    timm's own ``checkpoint_filter_fn``; a timm samvit state dict passes unchanged."""
    from timm.models.vision_transformer_sam import checkpoint_filter_fn

    return checkpoint_filter_fn(extract_state_dict(checkpoint), sam)


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)


def build_decoder(width: int, embedding_dim: int) -> nn.Sequential:
    """Fused features [B, C, h, w] -> pixel embeddings [B, D, 4h, 4w]."""
    def conv(channels: int) -> List[nn.Module]:
        return [nn.Conv2d(channels, channels, 3, padding=1), _group_norm(channels), nn.GELU()]

    def up(channels: int) -> List[nn.Module]:  # learned x2: a token's channels can carry sub-patch detail
        return [nn.ConvTranspose2d(channels, channels, 2, stride=2), _group_norm(channels), nn.GELU()]

    return nn.Sequential(*conv(width), *up(width), *conv(width), *up(width), *conv(width),
                         nn.Conv2d(width, embedding_dim, 1))


def fusion_parameter(fusion_init: float) -> nn.Parameter:
    """The learned fusion logit a, w = sigmoid(a) starting at ``fusion_init`` in (0, 1)."""
    if not 0.0 < fusion_init < 1.0:
        raise ValueError(f"lmseg.fusion_init must lie in (0, 1), got {fusion_init!r}")
    return nn.Parameter(torch.tensor(math.log(fusion_init / (1.0 - fusion_init))))


class ClipSamBackend(SegmentationBackend):
    """What both lmseg heads share: the CLIP towers (``dense_clip``), an optional SAM image encoder
    (``sam``, fed CLIP-normalized images re-normalized to SAM's mean and std), the fusion weight,
    the weights bookkeeping and the training parameter groups of the encoders and text tower.
    A subclass sets ``dense_clip``, ``sam``, ``fusion_logit`` (None without SAM) and
    ``freeze_clip``/``freeze_sam``, and calls :meth:`_setup_sam_input`."""

    backend_name = "lmseg"
    trainable = True  # lseg-train

    def _setup_sam_input(self) -> None:
        """x_sam = x * sam_scale + sam_shift, per channel, from CLIP's normalization to SAM's."""
        clip_mean, clip_std = torch.tensor(self.image_mean), torch.tensor(self.image_std)
        sam_mean, sam_std = torch.tensor(SAM_MEAN), torch.tensor(SAM_STD)
        self.register_buffer("sam_scale", (clip_std / sam_std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("sam_shift", ((clip_mean - sam_mean) / sam_std).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ text
    @property
    def clip(self) -> nn.Module:
        return self.dense_clip.clip

    @property
    def clip_activation(self) -> str:
        """GELU or QuickGELU: what the CLIP towers run."""
        return type(self.clip.transformer.resblocks[0].mlp.gelu).__name__

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.dense_clip.tokenize(texts)  # [N, T]

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.dense_clip.encode_text(token_ids)  # [N, D]

    # ----------------------------------------------------------------- image
    @property
    def fusion_weight(self) -> Optional[torch.Tensor]:
        """w in F = w * F_clip + (1 - w) * F_sam (a 0-d tensor); None without SAM."""
        return None if self.fusion_logit is None else torch.sigmoid(self.fusion_logit)

    def sam_features(self, images: torch.Tensor) -> torch.Tensor:
        """SAM image-encoder features [B, C_sam, H/16, W/16] of CLIP-normalized images."""
        sam_input = images * self.sam_scale.to(images.dtype) + self.sam_shift.to(images.dtype)
        return self.sam.forward_features(sam_input)

    def train(self, mode: bool = True) -> "ClipSamBackend":
        # the CLIP branch's per-grid positional tables were resized from the weights of then
        self.dense_clip._positional_cache.clear()
        return super().train(mode)

    # -------------------------------------------------------------- weights
    def _named_after(self, path: Path, weights: str, note: str = "") -> None:
        """Description and label-cache id of weights read from ``path`` (``weights`` names them,
        ``note`` ends the description)."""
        stat = path.stat()
        self.description = f"{self.preset_name} ({weights}, CLIP {self.clip_activation}{note})"
        self.text_model_id = f"lmseg/{self.preset_name}/{path.resolve()}@{stat.st_size}:{stat.st_mtime_ns}"

    def load_sam(self, path: str | os.PathLike) -> "ClipSamBackend":
        """Load SAM image-encoder weights (official segment-anything layout or timm's) strictly."""
        if self.sam is None:
            raise WeightsError(f"preset {self.preset_name!r} has no SAM encoder; lmseg.sam_checkpoint is not used")
        path = Path(path).expanduser()
        state_dict = sam_state_dict(read_checkpoint(path), self.sam)
        load_strict(self.sam, state_dict, source=f"{path} (SAM image encoder, timm key names)")
        return self

    # -------------------------------------------------------------- training
    def image_parameters(self) -> Iterator[nn.Parameter]:
        """The encoders that are not frozen (lmseg.freeze_clip / lmseg.freeze_sam)."""
        if not self.freeze_clip:
            yield from self.clip.visual.parameters()
        if not self.freeze_sam and self.sam is not None:
            yield from self.sam.parameters()

    def text_parameters(self) -> Iterator[nn.Parameter]:
        """The CLIP text tower (every CLIP parameter outside ``visual``), frozen in training."""
        visual = {id(parameter) for parameter in self.clip.visual.parameters()}
        return (parameter for parameter in self.clip.parameters() if id(parameter) not in visual)

    def freeze_text(self) -> "ClipSamBackend":
        for parameter in self.text_parameters():
            parameter.requires_grad_(False)
        return self

    def net_state_dict(self) -> Dict[str, torch.Tensor]:
        """The whole network's weights, as the backend's ``load_weights`` accepts them."""
        return self.state_dict()


class LMSegBackend(ClipSamBackend):
    """CLIP + SAM features, fused by a learned weight, decoded to CLIP-text-space pixel embeddings."""

    default_logit_scale = LMSEG_LOGIT_SCALE
    default_prompt_templates = "imagenet"

    def __init__(self, clip: nn.Module, clip_model: str, sam: nn.Module, decoder_width: int,
                 clip_mode: str = "maskclip", fusion_init: float = 0.5, freeze_clip: bool = True,
                 freeze_sam: bool = True, name: str = "lmseg") -> None:
        super().__init__()
        if clip_mode not in DENSE_CLIP_MODES:
            raise ValueError(f"unknown lmseg.clip_mode {clip_mode!r}; accepted: {', '.join(DENSE_CLIP_MODES)}")
        fusion = fusion_parameter(fusion_init)
        if decoder_width < 1:
            raise ValueError(f"lmseg.decoder_width must be >= 1, got {decoder_width!r}")
        self.preset_name = name
        self.dense_clip = DenseClipBackend(clip, clip_model, mode=clip_mode)
        self.sam = sam
        self.image_mean, self.image_std = self.dense_clip.image_mean, self.dense_clip.image_std
        clip_patch = self.dense_clip.input_multiple
        sam_patch = int(sam.patch_embed.patch_size[0])
        self.input_multiple = clip_patch * sam_patch // math.gcd(clip_patch, sam_patch)
        self.embedding_dim = self.dense_clip.embedding_dim
        self.clip_proj = nn.Conv2d(self.embedding_dim, decoder_width, 1)
        self.sam_proj = nn.Conv2d(int(sam.num_features), decoder_width, 1)
        #: the fusion weight w = sigmoid(fusion_logit)
        self.fusion_logit = fusion
        self.decoder = build_decoder(decoder_width, self.embedding_dim)
        self.freeze_clip, self.freeze_sam = bool(freeze_clip), bool(freeze_sam)
        self._setup_sam_input()
        self.description = name
        self.text_model_id = f"lmseg/{name}/random#{id(self):x}"

    # ----------------------------------------------------------------- image
    def clip_features(self, images: torch.Tensor) -> torch.Tensor:
        """Dense CLIP patch embeddings [B, D, H/p, W/p] (the dense_clip backend's)."""
        return self.dense_clip.dense_embeddings(images)

    def fuse(self, clip_features: torch.Tensor, sam_features: torch.Tensor) -> torch.Tensor:
        """Projected and fused features [B, C, h, w] on the CLIP grid."""
        clip_projected = self.clip_proj(clip_features)
        sam_projected = self.sam_proj(sam_features)
        if sam_projected.shape[-2:] != clip_projected.shape[-2:]:
            sam_projected = F.interpolate(sam_projected, size=clip_projected.shape[-2:], mode="bilinear",
                                          align_corners=False)
        weight = self.fusion_weight.to(clip_projected.dtype)
        return weight * clip_projected + (1 - weight) * sam_projected

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pixel embeddings [B, D, 4H/p, 4W/p] from normalized images [B, 3, H, W]."""
        height, width = images.shape[-2:]
        if height % self.input_multiple or width % self.input_multiple:
            raise ValueError(f"lmseg input size {height}x{width} is not a multiple of {self.input_multiple}")
        images = images.to(self.dtype)
        return self.decoder(self.fuse(self.clip_features(images), self.sam_features(images)))

    def image_side_modules(self) -> List[nn.Module]:
        return [self.clip.visual, self.sam, self.clip_proj, self.sam_proj, self.decoder]

    def release_image_side(self) -> int:
        count = self.dense_clip.release_image_side()
        for name in ("sam", "clip_proj", "sam_proj", "decoder"):
            count += sum(parameter.numel() for parameter in getattr(self, name).parameters())
            setattr(self, name, None)
        return count

    # -------------------------------------------------------------- weights
    def load_weights(self, path: str | os.PathLike,
                     state_dict: Optional[Mapping[str, torch.Tensor]] = None) -> "LMSegBackend":
        """Load a whole-network lmseg checkpoint (as ``lseg-train`` writes it; read with
        :func:`whole_checkpoint` unless its ``state_dict`` is given) strictly;
        :class:`WeightsError` names any missing or unexpected key."""
        path = Path(path).expanduser()
        state_dict = whole_checkpoint(path) if state_dict is None else state_dict
        load_strict(self, state_dict, source=str(path))
        self._named_after(path, path.name)
        return self

    # -------------------------------------------------------------- training
    def decoder_parameters(self) -> Iterator[nn.Parameter]:
        """Projections, fusion weight and decoder."""
        yield from self.clip_proj.parameters()
        yield from self.sam_proj.parameters()
        yield self.fusion_logit
        yield from self.decoder.parameters()


def random_clip(model_name: str, clip_pretrained: str, force_quick: bool = False) -> nn.Module:
    """A randomly initialized open_clip model to load an lmseg checkpoint into, with the
    activation the CLIP weights it was trained from ran: an open_clip tag trained with
    QuickGELU (openai) forces QuickGELU, as :func:`load_open_clip` does when it loads the tag
    (``force_quick``: QuickGELU whatever the tag, as for a CAT-Seg checkpoint's OpenAI CLIP)."""
    if model_name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model lmseg.clip_model={model_name!r}")
    quick = force_quick
    if not quick and clip_pretrained and clip_pretrained != "random" and not looks_like_path(clip_pretrained):
        quick = bool((open_clip.get_pretrained_cfg(model_name, clip_pretrained) or {}).get("quick_gelu", False))
    with _quiet_open_clip():
        return open_clip.create_model(model_name, pretrained=None, force_quick_gelu=quick)


@register_backend("lmseg")
def build_lmseg(config: SegmenterConfig) -> SegmentationBackend:
    """``config.model`` names a preset; ``config.pretrained`` is an lmseg checkpoint, an official
    CAT-Seg checkpoint (head aggregation) or 'random' (then ``lmseg.clip_pretrained`` and
    ``lmseg.sam_checkpoint`` supply the encoders)."""
    preset = get_preset(config.model)
    options = config.lmseg
    if options.head not in HEADS:
        raise ValueError(f"unknown lmseg.head {options.head!r}; accepted: {', '.join(HEADS)}")
    pretrained = config.pretrained
    if pretrained != "random" and not looks_like_path(pretrained):
        raise WeightsError(
            f"lmseg cannot use pretrained={pretrained!r}: LMSeg has no downloadable pretrained tags. Pass an "
            f"lmseg checkpoint written by lseg-train (pretrained:=/path/to/epoch_NNN.safetensors), an official "
            f"CAT-Seg checkpoint (model_base.pth with model:=catseg_vitb16_384), or pretrained:=random to "
            f"assemble the network from lmseg.clip_pretrained (e.g. openai) and lmseg.sam_checkpoint "
            f"(e.g. /path/to/sam_vit_b_01ec64.pth) with a random head to train.")
    if options.head == "cosine":
        if not (options.sam_model or preset.sam_model):
            raise ValueError(f"lmseg.head 'cosine' fuses SAM features; preset {preset.name!r} has no SAM encoder: "
                             f"set lmseg.sam_model or use lmseg.head aggregation")
        return build_lmseg_cosine(config, preset)
    return build_lmseg_aggregation(config, preset)


def whole_checkpoint(path: str | os.PathLike) -> Dict[str, torch.Tensor]:
    """The tensors of an lmseg or CAT-Seg checkpoint file (a detectron2 file keeps them under
    ``model``); a segment-anything file is refused, naming the setting it belongs to."""
    checkpoint = read_checkpoint(path)
    if isinstance(checkpoint.get("model"), Mapping):
        checkpoint = checkpoint["model"]
    state_dict = extract_state_dict(checkpoint)
    if any(key.startswith("image_encoder.") for key in state_dict):
        raise WeightsError(f"{str(path)!r} is a segment-anything checkpoint, not an lmseg one: pass it as "
                           f"lmseg.sam_checkpoint with pretrained:=random (and lmseg.clip_pretrained)")
    return state_dict


def build_lmseg_aggregation(config: SegmenterConfig, preset: LMSegPreset) -> SegmentationBackend:
    """LMSeg's cost-volume aggregation (:mod:`lseg_ros.models.lmseg_cost`)."""
    from .lmseg_cost import LMSegCostBackend, is_catseg_checkpoint

    options, pretrained = config.lmseg, config.pretrained
    state_dict = whole_checkpoint(pretrained) if pretrained != "random" else None
    catseg = state_dict is not None and is_catseg_checkpoint(state_dict)
    if state_dict is not None and not catseg and "clip_proj.weight" in state_dict and "decoder.0.weight" in state_dict:
        raise WeightsError(f"{pretrained!r} holds an lmseg network with the cosine decoder (clip_proj.*, decoder.*): "
                           f"set lmseg.head:=cosine to run it")
    clip_model = options.clip_model or preset.clip_model
    sam_model = preset.sam_model if not options.sam_model else options.sam_model
    if catseg and sam_model and not options.sam_checkpoint:
        raise WeightsError(f"a CAT-Seg checkpoint holds no SAM encoder, and preset {preset.name!r} fuses one: pass "
                           f"lmseg.sam_checkpoint (e.g. sam_vit_b_01ec64.pth), or model:=catseg_vitb16_384 for "
                           f"CAT-Seg alone")
    if state_dict is not None:  # every CLIP weight comes from the checkpoint
        # CAT-Seg's CLIP is OpenAI's (QuickGELU); an lmseg checkpoint's ran what its tag says
        clip = random_clip(clip_model, "openai" if catseg else options.clip_pretrained, force_quick=catseg)
        clip_weights, clip_id = "checkpoint", ""
    else:
        clip, clip_weights, clip_id = load_open_clip(clip_model, options.clip_pretrained)
    sam = None
    if sam_model:
        sam = build_sam(sam_model, **(dict(preset.sam_kwargs) if sam_model == preset.sam_model else {}))
    backend = LMSegCostBackend(clip, clip_model, sam, preset.aggregator, preset.guidance_layers, preset.input_size,
                               fusion_init=options.fusion_init, freeze_clip=options.freeze_clip,
                               freeze_sam=options.freeze_sam, name=preset.name)
    if options.max_aggregated_labels:
        backend.aggregator.top_k = options.max_aggregated_labels
    sam_weights = "random"
    if sam is not None and options.sam_checkpoint and (state_dict is None or catseg):
        backend.load_sam(options.sam_checkpoint)
        sam_weights = Path(options.sam_checkpoint).name
    if catseg:
        backend.load_catseg(pretrained, state_dict)
    elif state_dict is not None:
        backend.load_weights(pretrained, state_dict)
    else:
        sam_part = f", SAM {sam_model} ({sam_weights})" if sam is not None else ""
        backend.description = (f"{preset.name} (CLIP {clip_model}/catseg ({clip_weights}){sam_part}, "
                               f"random aggregator)")
        if options.clip_pretrained != "random":  # the text tower is CLIP's own: share its label cache
            backend.text_model_id = f"open_clip/{clip_model}/{clip_id}"
    return backend.eval()


def build_lmseg_cosine(config: SegmenterConfig, preset: LMSegPreset) -> LMSegBackend:
    """The cosine decoder (lmseg.head cosine): pixel embeddings matched by the Segmenter."""
    options = config.lmseg
    pretrained = config.pretrained
    whole = pretrained != "random"
    state_dict = whole_checkpoint(pretrained) if whole else None  # a missing file fails before any build
    clip_model = options.clip_model or preset.clip_model
    sam_model = options.sam_model or preset.sam_model
    sam_kwargs = dict(preset.sam_kwargs) if sam_model == preset.sam_model else {}
    if whole:  # every CLIP weight comes from the checkpoint; a tag still decides the activation
        clip, clip_weights, clip_id = random_clip(clip_model, options.clip_pretrained), "checkpoint", ""
    else:
        clip, clip_weights, clip_id = load_open_clip(clip_model, options.clip_pretrained)
    sam = build_sam(sam_model, **sam_kwargs)
    backend = LMSegBackend(clip, clip_model, sam, options.decoder_width or preset.decoder_width,
                           clip_mode=options.clip_mode, fusion_init=options.fusion_init,
                           freeze_clip=options.freeze_clip, freeze_sam=options.freeze_sam, name=preset.name)
    if whole:
        backend.load_weights(pretrained, state_dict)
    else:
        sam_weights = "random"
        if options.sam_checkpoint:
            backend.load_sam(options.sam_checkpoint)
            sam_weights = Path(options.sam_checkpoint).name
        backend.description = (f"{preset.name} (CLIP {clip_model}/{options.clip_mode} ({clip_weights}), "
                               f"SAM {sam_model} ({sam_weights}), random decoder)")
        if options.clip_pretrained != "random":  # the text tower is CLIP's own: share its label cache
            backend.text_model_id = f"open_clip/{clip_model}/{clip_id}"
    return backend.eval()
