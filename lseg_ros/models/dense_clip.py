"""Training-free dense CLIP: any open_clip ViT with its last block modified.

The trunk (patch embedding, all blocks but the last) runs unchanged; the last block is
replaced by one of four published training-free modifications, and every patch token is
projected into the joint image-text space: ``ln_post(patch_tokens) @ proj`` -> [B, D, h, w].

Modes (q, k, v are the last block's projections of ``ln_1(x)``; s = head_dim ** -0.5):

* ``maskclip`` (Zhou et al. 2022): the value path replaces attention,
  ``x = x + out_proj(v)``, then the block's FFN with its residual, as in MaskCLIP's code.
* ``sclip`` (Wang et al. 2023): correlative self-attention
  ``(softmax(q q^T s) + softmax(k k^T s)) v``; residual and FFN kept, as in SCLIP's code.
* ``clearclip`` (Lan et al. 2024): ``softmax(q q^T s) v`` with no residual and no FFN.
* ``naclip`` (Hajimiri et al. 2024): ``softmax(k k^T s + G) v`` with no residual and no FFN,
  where G[i, j] = exp(-|p_i - p_j|^2 / (2 std^2)) over 2D patch positions (std in patches)
  and is 0 in the class token's row and column.
* ``catseg`` (Cho et al. 2024, CAT-Seg's ``forward_dense``): the value path, with the block
  input's class token as the residual of every token, ``x = x[cls] + out_proj(v)``, then the
  FFN with its residual (the image features of CAT-Seg's cost volume; the lmseg backend's
  aggregation head reads them).

The class token stays in the sequence of the modified attention, as in all four papers;
only patch tokens are returned. The positional embedding is resized (bicubic, class token
excluded) to each input grid the way each paper's code does it (see
:func:`resize_positional_embedding`) and cached per grid size. An input that is not a patch
multiple (``input_resize`` mmseg) loses its last partial row and column of patches
(``partial_patches`` "crop": CLIP's patch convolution, as NACLIP, SCLIP and ClearCLIP) or is
zero-padded at the bottom and right to whole patches after normalization (``"pad"``: mmseg's
``PatchEmbed(padding='corner')`` in MaskCLIP's ViT). ``normalization`` picks the image mean/std:
the model's own (CLIP's) or ImageNet's (MaskCLIP's configs). Inputs larger than
``dense_clip.window`` can be processed in overlapping windows: the Segmenter averages their
label logits, each resized to its window, as the papers' code does (``window_merge``
"logits"); ``forward`` itself averages their embeddings on the patch grid ("embeddings").
"""
from __future__ import annotations

import logging
import os
import uuid
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import List, Sequence, Tuple

import open_clip
import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer
from torch import nn

from ..config import SegmenterConfig
from ..preprocess import window_starts
from ..weights import (HOW_TO_SUPPLY, WeightsError, extract_state_dict, load_strict,
                       looks_like_path, read_checkpoint)
from .base import SegmentationBackend, register_backend
from .clip_text import encode_text_trimmed

DENSE_CLIP_MODES = ("maskclip", "sclip", "clearclip", "naclip", "catseg")
#: dense_clip.partial_patches values
PARTIAL_PATCHES = ("crop", "pad")
#: dense_clip.normalization values
NORMALIZATIONS = ("clip", "imagenet")
#: dense_clip.image_tower values
IMAGE_TOWERS = ("clip", "mmseg")
#: LayerNorm eps of mmseg's VisionTransformer as MaskCLIP configures it (norm_cfg LN eps 1e-6)
MMSEG_LAYER_NORM_EPS = 1e-6
#: ImageNet mean and std on 0..255 pixels, as mmseg's img_norm_cfg writes them (MaskCLIP's
#: configs/_base_/datasets/*.py); divided by 255 for inputs on 0..1
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)
#: open_clip JSON model configs shipped with the package (e.g. "lseg-test-tiny-ViT")
MODEL_CONFIG_DIR = Path(__file__).resolve().parent.parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIG_DIR)

Grid = Tuple[int, int]


class DenseClipBackend(SegmentationBackend):
    """Dense pixel embeddings from a frozen open_clip ViT with a modified last block."""

    backend_name = "dense_clip"
    default_logit_scale = 100.0
    default_prompt_templates = "imagenet"

    def __init__(self, clip: nn.Module, model_name: str, mode: str = "naclip",
                 gaussian_std: float = 5.0, window: int = 0, stride: int = 224,
                 positional_resize: str = "auto", window_merge: str = "logits", partial_patches: str = "crop",
                 normalization: str = "clip") -> None:
        super().__init__()
        visual = getattr(clip, "visual", None)
        _check_supported(visual, model_name)
        if mode not in DENSE_CLIP_MODES:
            raise ValueError(f"unknown dense_clip.mode {mode!r}; accepted: {', '.join(DENSE_CLIP_MODES)}")
        if not gaussian_std > 0:
            raise ValueError(f"dense_clip.gaussian_std must be > 0 (patches), got {gaussian_std!r}")
        patch = visual.patch_size[0]
        if window < 0 or (window > 0 and (window % patch or stride <= 0 or stride % patch)):
            raise ValueError(f"dense_clip.window={window!r} / stride={stride!r}: need window = 0, or "
                             f"window and stride positive multiples of the patch size {patch}")
        if window_merge not in ("logits", "embeddings"):
            raise ValueError(f"unknown dense_clip.window_merge {window_merge!r}; accepted: logits, embeddings")
        self.window_merge = window_merge
        if positional_resize not in ("auto", "scale_factor", "size"):
            raise ValueError(f"unknown dense_clip.positional_resize {positional_resize!r}; accepted: "
                             f"auto, scale_factor, size")
        if positional_resize == "auto":
            positional_resize = "size" if mode in ("maskclip", "catseg") else "scale_factor"
        self.positional_resize = positional_resize
        if partial_patches not in PARTIAL_PATCHES:
            raise ValueError(f"unknown dense_clip.partial_patches {partial_patches!r}; accepted: "
                             f"{', '.join(PARTIAL_PATCHES)}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown dense_clip.normalization {normalization!r}; accepted: "
                             f"{', '.join(NORMALIZATIONS)}")
        self.partial_patches = partial_patches
        self.clip = clip.eval().requires_grad_(False)
        self.model_name = model_name
        self.mode = mode
        self.gaussian_std = float(gaussian_std)
        self.window = int(window)
        self.stride = int(stride)
        self.input_multiple = patch
        self.normalization = normalization
        if normalization == "imagenet":
            self.image_mean = tuple(m / 255.0 for m in IMAGENET_MEAN_255)
            self.image_std = tuple(s / 255.0 for s in IMAGENET_STD_255)
        else:
            preprocess = getattr(visual, "preprocess_cfg", {})
            self.image_mean = tuple(float(m) for m in preprocess.get("mean", self.image_mean))
            self.image_std = tuple(float(s) for s in preprocess.get("std", self.image_std))
        self.tokenizer = open_clip.get_tokenizer(model_name)
        # per-grid caches, least recently used dropped first (multi-scale evaluation sees many grids)
        self._positional_cache: "OrderedDict[Grid, torch.Tensor]" = OrderedDict()
        self._prior_cache: "OrderedDict[Grid, torch.Tensor]" = OrderedDict()

    @property
    def visual(self) -> VisionTransformer:
        return self.clip.visual

    def image_side_modules(self) -> List[nn.Module]:
        return [self.clip.visual]

    def release_image_side(self) -> int:
        count = sum(parameter.numel() for parameter in self.clip.visual.parameters())
        self.clip.visual = None  # the text tower does not use it
        self._positional_cache.clear()
        self._prior_cache.clear()
        return count

    @property
    def embedding_dim(self) -> int:
        proj = self.visual.proj
        return self.visual.transformer.width if proj is None else proj.shape[1]

    # ------------------------------------------------------------------ text
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts))  # [N, T]

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        return encode_text_trimmed(self.clip, token_ids)  # [N, D]

    # ----------------------------------------------------------------- image
    #: inputs need not be patch multiples: a last partial row or column of patches is dropped,
    #: as CLIP's stride-p patch convolution drops it (the papers' mmseg pipelines rely on it),
    #: or zero-padded to a whole patch (``partial_patches`` "pad", MaskCLIP)
    drops_partial_patches = True

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pixel embeddings [B, D, h, w] from normalized images [B, 3, H, W]: (h, w) =
        (H//p, W//p), or (ceil(H/p), ceil(W/p)) with ``partial_patches`` "pad"."""
        height, width = images.shape[-2:]
        patch = self.input_multiple
        if self.partial_patches == "crop" and (height < patch or width < patch):
            raise ValueError(f"input size {height}x{width} is smaller than the patch size {patch}")
        images = images.to(self.dtype)
        if self.window and (height > self.window or width > self.window):
            if self.partial_patches == "pad":  # the windows tile the padded input's patch grid
                images = self.whole_patches(images)
            return self._sliding_window(images)
        return self.dense_embeddings(images)

    def whole_patches(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, 3, h*p, w*p]: the last partial patches cropped, or zero-padded at
        the bottom and right (mmseg's ``AdaptivePadding(padding='corner')``), as
        ``partial_patches`` says."""
        patch = self.input_multiple
        height, width = images.shape[-2:]
        if self.partial_patches == "pad":
            return F.pad(images, (0, -width % patch, 0, -height % patch))
        return images[..., :height // patch * patch, :width // patch * patch]

    def dense_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """One forward over the whole input: [B, 3, H, W] -> [B, D, h, w] (see :meth:`forward`)."""
        return self.dense_features(images)[0]

    def dense_features(self, images: torch.Tensor, layers: Sequence[int] = ()) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """(:meth:`dense_embeddings`, the patch tokens [B, C, h, w] after each block in ``layers``
        (0-based indices of unmodified blocks, CAT-Seg's guidance layers))."""
        visual = self.visual
        batch = images.shape[0]
        tokens = visual.conv1(self.whole_patches(images))  # [B, C, h, w]
        grid = (tokens.shape[2], tokens.shape[3])
        tokens = tokens.flatten(2).transpose(1, 2)  # [B, h*w, C]
        class_token = visual.class_embedding.to(tokens.dtype).expand(batch, 1, -1)
        tokens = torch.cat([class_token, tokens], dim=1)  # [B, 1 + h*w, C]
        tokens = visual.ln_pre(tokens + self.positional_embedding(grid).to(tokens.dtype))
        blocks = visual.transformer.resblocks
        if any(not 0 <= index < len(blocks) - 1 for index in layers):
            raise ValueError(f"guidance layers {list(layers)} must be blocks 0..{len(blocks) - 2} (the last is modified)")
        kept = {}
        for index, block in enumerate(blocks[:-1]):
            tokens = block(tokens)
            if index in layers:
                kept[index] = tokens[:, 1:].transpose(1, 2).reshape(batch, -1, *grid)  # [B, C, h, w]
        tokens = self.last_block(tokens, grid)  # [B, 1 + h*w, C]
        patch_embeddings = visual.ln_post(tokens[:, 1:])
        if visual.proj is not None:
            patch_embeddings = patch_embeddings @ visual.proj  # [B, h*w, D]
        embeddings = patch_embeddings.transpose(1, 2).reshape(batch, -1, *grid)  # [B, D, h, w]
        return embeddings, [kept[index] for index in layers]

    def last_block(self, tokens: torch.Tensor, grid: Grid) -> torch.Tensor:
        """The modified last transformer block: [B, N, C] -> [B, N, C] (N = 1 + h*w)."""
        block = self.visual.transformer.resblocks[-1]
        attn = block.attn
        if self.mode in ("maskclip", "catseg"):
            width = attn.embed_dim
            bias = None if attn.in_proj_bias is None else attn.in_proj_bias[2 * width:]
            value = F.linear(block.ln_1(tokens), attn.in_proj_weight[2 * width:], bias)  # [B, N, C]
            # MaskCLIP: each token is its own residual; CAT-Seg: the class token is every token's
            residual = tokens if self.mode == "maskclip" else tokens[:, :1]
            tokens = residual + block.ls_1(attn.out_proj(value))
            return tokens + block.ls_2(block.mlp(block.ln_2(tokens)))
        qkv = F.linear(block.ln_1(tokens), attn.in_proj_weight, attn.in_proj_bias)  # [B, N, 3C]
        batch, length, _ = qkv.shape
        q, k, v = qkv.view(batch, length, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)  # [B, H, N, d]
        if self.mode == "sclip":
            # (softmax(q q^T s) + softmax(k k^T s)) v, as two attention products.
            mixed = F.scaled_dot_product_attention(q, q, v) + F.scaled_dot_product_attention(k, k, v)
        elif self.mode == "clearclip":
            mixed = F.scaled_dot_product_attention(q, q, v)
        else:  # naclip
            prior = self.neighbourhood_prior(grid).to(dtype=k.dtype)  # [N, N] (already k's dtype in inference)
            mixed = F.scaled_dot_product_attention(k, k, v, attn_mask=prior)
        attended = attn.out_proj(mixed.transpose(1, 2).reshape(batch, length, -1))  # [B, N, C]
        if self.mode == "sclip":
            tokens = tokens + block.ls_1(attended)
            return tokens + block.ls_2(block.mlp(block.ln_2(tokens)))
        return attended  # clearclip, naclip: no residual, no FFN

    def positional_embedding(self, grid: Grid) -> torch.Tensor:
        """Positional embedding [1 + h*w, C] for a patch grid (h, w); cached per grid, except
        while the table trains (training mode, gradient on, table not frozen: lmseg with
        lmseg.freeze_clip false): then it is resized with gradient on every call, as a cached
        copy would be stale and gradient-free."""
        table = self.visual.positional_embedding  # [1 + g0*g1, C]
        key = _grid_key(grid)
        if key == tuple(self.visual.grid_size):
            return table
        if self.training and torch.is_grad_enabled() and table.requires_grad:
            return resize_positional_embedding(table, tuple(self.visual.grid_size), key, self.positional_resize)
        cached = _lru_get(self._positional_cache, key)
        if cached is None or cached.device != table.device or cached.dtype != table.dtype:
            with torch.no_grad():
                cached = resize_positional_embedding(table, tuple(self.visual.grid_size), key,
                                                     self.positional_resize)
            _lru_put(self._positional_cache, key, cached)
        return cached

    def neighbourhood_prior(self, grid: Grid) -> torch.Tensor:
        """NACLIP's additive Gaussian attention prior [1 + h*w, 1 + h*w]; cached per grid."""
        key = _grid_key(grid)
        cached = _lru_get(self._prior_cache, key)
        if cached is None or cached.device != self.device or cached.dtype != self.dtype:
            cached = gaussian_neighbourhood_prior(key, self.gaussian_std, self.device).to(self.dtype)
            _lru_put(self._prior_cache, key, cached)
        return cached

    def _sliding_window(self, images: torch.Tensor) -> torch.Tensor:
        """Overlapping windows, embeddings averaged where they overlap: [B, D, H/p, W/p]."""
        batch, _, height, width = images.shape
        patch = self.input_multiple
        window_h, window_w = min(self.window, height), min(self.window, width)
        rows = window_starts(height, window_h, self.stride)
        cols = window_starts(width, window_w, self.stride)
        crops = [images[:, :, y:y + window_h, x:x + window_w] for y in rows for x in cols]
        window_embeddings = self.dense_embeddings(torch.cat(crops, dim=0))  # [n*B, D, wh, ww]
        out = window_embeddings.new_zeros(batch, window_embeddings.shape[1], height // patch, width // patch)
        count = window_embeddings.new_zeros(1, 1, height // patch, width // patch)
        gh, gw = window_h // patch, window_w // patch
        starts = [(y // patch, x // patch) for y in rows for x in cols]
        for index, (gy, gx) in enumerate(starts):
            out[:, :, gy:gy + gh, gx:gx + gw] += window_embeddings[index * batch:(index + 1) * batch]
            count[:, :, gy:gy + gh, gx:gx + gw] += 1
        return out / count  # [B, D, H/p, W/p]


# ---------------------------------------------------------------------- helpers
def resize_positional_embedding(table: torch.Tensor, source_grid: Grid, target_grid: Grid,
                                rule: str = "scale_factor") -> torch.Tensor:
    """Bicubic resize of the patch part of ``table`` [1 + g0*g1, C] to [1 + h*w, C].

    ``rule`` "scale_factor": as NACLIP, SCLIP and ClearCLIP (``interpolate_pos_encoding``
    in their ``clip/model.py`` / ``open_clip/transformer.py``), with the scale factors
    ``(h + 0.1) / g0`` and ``(w + 0.1) / g1`` used as given (``recompute_scale_factor`` off),
    so source positions are ``(i + 0.5) / factor - 0.5``. "size": as MaskCLIP (mmseg's
    ``resize_pos_embed``), ``F.interpolate(size=(h, w))``, source positions
    ``(i + 0.5) * g / h - 0.5``. The two differ by up to a few 1e-3 in the table."""
    class_position, patch_positions = table[:1], table[1:]
    channels = table.shape[1]
    patch_positions = patch_positions.reshape(1, *source_grid, channels).permute(0, 3, 1, 2)  # [1, C, g0, g1]
    if rule == "scale_factor":
        factors = ((target_grid[0] + 0.1) / source_grid[0], (target_grid[1] + 0.1) / source_grid[1])
        patch_positions = F.interpolate(patch_positions.float(), scale_factor=factors, mode="bicubic",
                                        align_corners=False, recompute_scale_factor=False)
    elif rule == "size":
        patch_positions = F.interpolate(patch_positions.float(), size=target_grid, mode="bicubic",
                                        align_corners=False)
    else:
        raise ValueError(f"unknown positional resize rule {rule!r}; accepted: scale_factor, size")
    if tuple(patch_positions.shape[-2:]) != tuple(target_grid):
        raise AssertionError(f"positional embedding resized to {tuple(patch_positions.shape[-2:])}, "
                             f"not {tuple(target_grid)}")
    patch_positions = patch_positions.to(table.dtype)  # [1, C, h, w]
    patch_positions = patch_positions.permute(0, 2, 3, 1).reshape(-1, channels)  # [h*w, C]
    return torch.cat([class_position, patch_positions], dim=0)


def gaussian_neighbourhood_prior(grid: Grid, std: float, device=None) -> torch.Tensor:
    """[1 + h*w, 1 + h*w]: exp(-squared patch distance / (2 std^2)), 0 for the class token."""
    rows, cols = torch.meshgrid(torch.arange(grid[0], device=device), torch.arange(grid[1], device=device),
                                indexing="ij")
    positions = torch.stack([rows.flatten(), cols.flatten()], dim=1).float()  # [h*w, 2]
    prior = torch.exp(-torch.cdist(positions, positions).square() / (2 * std ** 2))  # [h*w, h*w]
    return F.pad(prior, (1, 0, 1, 0))


GRID_CACHE_SIZE = 8


def _grid_key(grid) -> Grid:
    """The grid as Python ints: under ONNX export the sizes are traced values, and the tables
    computed for them (positional embedding, NACLIP prior) become constants of the graph."""
    return int(grid[0]), int(grid[1])


def _lru_get(cache: "OrderedDict", key):
    value = cache.get(key)
    if value is not None:
        cache.move_to_end(key)
    return value


def _lru_put(cache: "OrderedDict", key, value) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > GRID_CACHE_SIZE:
        cache.popitem(last=False)


def _check_supported(visual, model_name: str) -> None:
    if not isinstance(visual, VisionTransformer):
        raise ValueError(f"dense_clip needs an open_clip ViT image tower; {model_name!r} has "
                         f"{type(visual).__name__}. Use e.g. ViT-B-16, ViT-L-14, ViT-B-16-quickgelu.")
    blocks = visual.transformer.resblocks
    if (visual.attn_pool is not None or not getattr(visual.transformer, "batch_first", False)
            or not isinstance(blocks[-1], ResidualAttentionBlock) or blocks[-1].attn.in_proj_weight is None
            or visual.patch_size[0] != visual.patch_size[1]):
        raise ValueError(f"dense_clip supports open_clip ViTs with standard batch-first residual "
                         f"attention blocks and square patches; {model_name!r} is not one")


@contextmanager
def _quiet_open_clip():
    """Silence open_clip's 'initialized randomly' warning while we load weights ourselves."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def uses_quick_gelu(model_name: str) -> bool:
    """Whether open_clip builds ``model_name`` with QuickGELU (x * sigmoid(1.702 x))."""
    return bool((open_clip.get_model_config(model_name) or {}).get("quick_gelu", False))


def activation_name(model_name: str) -> str:
    return "QuickGELU" if uses_quick_gelu(model_name) else "GELU"


def _hub_activation_index() -> dict:
    """{'models--org--name' (a Hugging Face cache folder): (quick_gelu, 'model/tag')} over open_clip's
    pretrained tags, for recognizing a local file downloaded for a tag."""
    index = {}
    for model_name, tag in open_clip.list_pretrained():
        config = open_clip.get_pretrained_cfg(model_name, tag)
        hub = (config.get("hf_hub") or "").strip("/")
        if hub.count("/") == 1:
            quick = bool(config.get("quick_gelu", False)) or uses_quick_gelu(model_name)
            index.setdefault("models--" + hub.replace("/", "--"), (quick, f"{model_name}/{tag}"))
    return index


def check_activation_matches_weights(model_name: str, path: Path) -> None:
    """Refuse a local file whose origin says it was trained with another activation than
    ``model_name`` runs. OpenAI's CLIP weights (and MetaCLIP's, DFN's, some LAION-400M ones)
    were trained with QuickGELU; loaded under e.g. ``ViT-B-16`` (GELU) they run, silently
    wrong (features off by ~1e-2, up to a few % of pixels change label). The origin is known
    when the file sits in the Hugging Face cache folder of an open_clip pretrained tag, or
    when its path names OpenAI; other files are loaded as the model name says (the backend
    description names the activation)."""
    quick = uses_quick_gelu(model_name)
    text = str(path)
    origin = None
    for folder, (tag_quick, tag) in _hub_activation_index().items():
        if folder in text:
            origin = (tag_quick, f"it is open_clip's download for {tag}")
            break
    if origin is None and "openai" in text.lower():
        origin = (True, "its path names OpenAI, whose CLIP weights were trained with QuickGELU")
    if origin is None or origin[0] == quick:
        return
    base = model_name[:-len("-quickgelu")] if model_name.endswith("-quickgelu") else model_name
    wanted = f"{base}-quickgelu" if origin[0] else base
    if wanted not in open_clip.list_models():
        wanted = f"an open_clip model name with quick_gelu {str(origin[0]).lower()}"
    raise WeightsError(
        f"weights {text!r} were trained with {'QuickGELU' if origin[0] else 'GELU'} ({origin[1]}), but model "
        f"{model_name!r} runs {activation_name(model_name)}: the outputs would be silently wrong. Use "
        f"model:={wanted}. (If the file really was trained with {activation_name(model_name)}, "
        f"move or rename it so that its path no longer says otherwise.)")


def load_open_clip(model_name: str, pretrained: str) -> Tuple[nn.Module, str, str]:
    """(model, weights label for descriptions, weights id for caches) for ``pretrained``:
    'random', a local checkpoint file, or an open_clip pretrained tag."""
    available = open_clip.list_models()
    if model_name not in available:
        vits = [name for name in available if name.startswith("ViT-")]
        raise ValueError(f"unknown open_clip model {model_name!r}; available include "
                         f"{', '.join(vits[:12])} ... ({len(available)} in open_clip.list_models())")
    if pretrained == "random":
        with _quiet_open_clip():
            model = open_clip.create_model(model_name, pretrained=None)
        return model, "random", f"random-{uuid.uuid4().hex[:12]}"
    if looks_like_path(pretrained):
        path = Path(pretrained).expanduser().resolve()
        check_activation_matches_weights(model_name, path)
        state_dict = extract_state_dict(read_checkpoint(path))
        if state_dict and all(key.startswith("module.") for key in state_dict):
            state_dict = {key[len("module."):]: value for key, value in state_dict.items()}
        with _quiet_open_clip():
            model = open_clip.create_model(model_name, pretrained=None)
        load_strict(model, state_dict, source=str(path))
        return model, f"{path.name}, {activation_name(model_name)}", f"{path}@{os.stat(path).st_mtime_ns}"
    tag_config = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not tag_config:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise WeightsError(f"unknown pretrained tag {pretrained!r} for {model_name}; valid tags: "
                           f"{', '.join(tags) or 'none (use a local file)'}. {HOW_TO_SUPPLY}")
    try:
        # Weights trained with QuickGELU are run with QuickGELU whatever the config's default.
        model = open_clip.create_model(model_name, pretrained=pretrained,
                                       force_quick_gelu=bool(tag_config.get("quick_gelu", False)))
    except Exception as error:
        raise WeightsError(
            f"could not load open_clip weights {model_name}/{pretrained}: tried "
            f"open_clip.create_model({model_name!r}, pretrained={pretrained!r}), which downloads into "
            f"or reads from open_clip's cache (Hugging Face hub cache under HF_HOME; HF_HUB_OFFLINE=1 "
            f"uses the cache only), and it failed: {str(error).rstrip('.')}. Offline, download the "
            f"weights elsewhere and pass the file. {HOW_TO_SUPPLY}"
        ) from error
    return model, pretrained, pretrained


def as_mmseg_vit(visual: nn.Module) -> None:
    """CLIP's image tower as MaskCLIP's mmseg ``VisionTransformer`` runs it, in place: every MLP
    activation GELU (``act_cfg=dict(type='GELU')``) and every LayerNorm eps 1e-6 (``norm_cfg``),
    whatever the weights were trained with (OpenAI's: QuickGELU, eps 1e-5)."""
    for module in visual.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = MMSEG_LAYER_NORM_EPS
    for block in visual.transformer.resblocks:
        block.mlp.gelu = nn.GELU()


@register_backend("dense_clip")
def build_dense_clip(config: SegmenterConfig) -> DenseClipBackend:
    """The dense_clip backend for ``config.model`` with weights ``config.pretrained``."""
    options = config.dense_clip
    if options.mode not in DENSE_CLIP_MODES:
        raise ValueError(f"unknown dense_clip.mode {options.mode!r}; accepted: {', '.join(DENSE_CLIP_MODES)}")
    if options.image_tower not in IMAGE_TOWERS:
        raise ValueError(f"unknown dense_clip.image_tower {options.image_tower!r}; accepted: {', '.join(IMAGE_TOWERS)}")
    clip, weights_label, weights_id = load_open_clip(config.model, config.pretrained)
    if options.image_tower == "mmseg":
        as_mmseg_vit(clip.visual)
        weights_label += "; image tower as mmseg's ViT: GELU, LayerNorm eps 1e-6"
    backend = DenseClipBackend(clip, config.model, mode=options.mode, gaussian_std=options.gaussian_std,
                               window=options.window, stride=options.stride,
                               positional_resize=options.positional_resize, window_merge=options.window_merge,
                               partial_patches=options.partial_patches, normalization=options.normalization)
    backend.description = f"dense_clip/{options.mode} {config.model} ({weights_label})"
    backend.text_model_id = f"open_clip/{config.model}/{weights_id}"
    return backend
