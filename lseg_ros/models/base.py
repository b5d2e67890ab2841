"""The interface every segmentation backend implements, and the backend registry.

A backend is a torch module that maps normalized images to dense pixel embeddings in
the embedding space of its own text encoder:

    forward(images [B, 3, H, W]) -> pixel_embeddings [B, D, h, w]
    encode_text(token_ids [N, T]) -> text_embeddings [N, D]   (not normalized)

Backends register under a name with :func:`register_backend`; everything (CLI, node,
training, evaluation) builds them through :func:`build_backend`.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Mapping, Sequence, Tuple

import torch
from torch import nn

from ..config import SegmenterConfig

_BACKENDS: Dict[str, Callable[[SegmenterConfig], "SegmentationBackend"]] = {}


def register_backend(name: str):
    """Decorator: ``@register_backend("dense_clip") def build(config) -> SegmentationBackend``."""

    def decorator(builder):
        if name in _BACKENDS:
            raise ValueError(f"backend {name!r} is already registered")
        _BACKENDS[name] = builder
        return builder

    return decorator


def available_backends() -> List[str]:
    _import_builtin_backends()
    return sorted(_BACKENDS)


def build_backend(config: SegmenterConfig) -> "SegmentationBackend":
    """Build the backend ``config.backend`` with the weights ``config.pretrained``."""
    _import_builtin_backends()
    try:
        builder = _BACKENDS[config.backend]
    except KeyError:
        raise ValueError(f"unknown backend {config.backend!r}; available: {sorted(_BACKENDS)}") from None
    return builder(config)


def get_preset(presets: Mapping[str, Any], name: str, family: str) -> Any:
    """``presets[name]``; ValueError naming the ``family`` ("LSeg", "LMSeg", "ViL-Seg"), the bad
    name and the accepted ones (the backends' preset tables use it)."""
    try:
        return presets[name]
    except KeyError:
        raise ValueError(f"unknown {family} preset model={name!r}; accepted: {', '.join(sorted(presets))}") \
            from None


def _import_builtin_backends() -> None:
    # Importing the modules runs their @register_backend decorators.
    from . import dense_clip, lmseg, lseg, vilseg  # noqa: F401


class SegmentationBackend(nn.Module):
    """Base class: image -> pixel embeddings, token ids -> text embeddings."""

    #: registry name of the backend
    backend_name: str = ""
    #: input normalization (RGB, applied to [0, 1] images)
    image_mean: Tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    image_std: Tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    #: the model input's height and width are rounded to a multiple of this
    input_multiple: int = 16
    #: the backend's own final upsample of label logits, applied before any resize to an
    #: output size (LSeg: ``scratch.output_conv``, x2 bilinear with align_corners=True); 1 = none
    logits_upsample: int = 1
    #: softmax temperature over labels when the config leaves it at 0
    default_logit_scale: float = 100.0
    #: prompt template set when the config says "default"
    default_prompt_templates: str = "imagenet"
    #: mostly convolutions (channels_last helps on the CPU; see acceleration.resolve_memory_format)
    conv_heavy: bool = False

    # What a backend can do beyond forward/encode_text. The Segmenter, lseg-train, lseg-eval
    # and lseg-export read these; a backend overrides the ones it supports.
    #: takes inputs of any size (a last partial patch dropped or padded): input_resize mmseg
    drops_partial_patches: bool = False
    #: sliding window over inputs larger than it, in model-input pixels; 0 = none
    window: int = 0
    #: stride of that window, in model-input pixels
    stride: int = 0
    #: how the windows merge: "logits" (the Segmenter classifies each window and averages the
    #: logits, as NACLIP, SCLIP and ClearCLIP) or "embeddings" (``forward`` averages them)
    window_merge: str = "embeddings"
    #: lseg-train can train it: image_parameters, decoder_parameters, text_parameters,
    #: freeze_text and net_state_dict are implemented
    trainable: bool = False
    #: ``forward`` returns image features that ``label_logits`` turns into label logits with a
    #: learned head that sees all labels at once (lmseg's cost aggregation), instead of pixel
    #: embeddings the Segmenter matches by cosine; ``pixel_embeddings`` reads the embeddings
    #: out of those features; lseg-train uses per-class binary cross-entropy
    label_head: bool = False
    #: the network runs at one input size (CAT-Seg's 384x384 grid): the Segmenter resizes each
    #: frame to fixed_input x fixed_input (aspect not kept); 0 = sized by short_side/max_long_side
    fixed_input: int = 0

    def __init__(self) -> None:
        super().__init__()
        #: describes architecture and weights, e.g. "dense_clip/naclip ViT-B-16 (openai)"
        self.description = ""
        #: identifies the text encoder for the label-embedding cache
        self.text_model_id = ""

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids [N, T] for the text encoder."""
        raise NotImplementedError

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Text embeddings [N, D] (not normalized) from token ids [N, T]."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pixel embeddings [B, D, h, w] (not necessarily normalized) from normalized images."""
        raise NotImplementedError

    def dense_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """Pixel embeddings of one forward over the whole input, never windowed (what each
        sliding window runs); the same as ``forward`` for a backend without a window."""
        return self(images)

    def pixel_embeddings(self, features: torch.Tensor) -> torch.Tensor:
        """The pixel embeddings [B, D, h, w] in ``forward``'s output (all of it, except for a
        ``label_head`` backend)."""
        return features

    def label_logits(self, features: torch.Tensor, label_embeddings: torch.Tensor) -> torch.Tensor:
        """Label logits [B, N, h', w'] (float32) of ``forward``'s features for normalized label
        embeddings [N, D] (``label_head`` backends only)."""
        raise NotImplementedError(f"backend {self.backend_name!r} matches embeddings by cosine")

    def image_side_modules(self) -> List[nn.Module]:
        """The modules ``forward`` runs (not the text encoder): what int8 quantization of the
        image side (``quantize: int8``) converts."""
        raise NotImplementedError(f"backend {self.backend_name!r} does not name its image-side modules")

    def release_image_side(self) -> int:
        """Drop the weights only ``forward`` uses (the image side runs elsewhere: runtime
        onnxruntime); returns the number of parameters dropped. After it only the text side,
        ``refine_logits`` and the preprocessing attributes remain usable."""
        return 0

    # ---------------------------------------------------- training (trainable backends)
    def image_parameters(self) -> Iterator[nn.Parameter]:
        """The image encoder's parameters (the backbone learning rate)."""
        raise NotImplementedError(f"backend {self.backend_name!r} cannot be trained")

    def decoder_parameters(self) -> Iterator[nn.Parameter]:
        """The decoder's / heads' parameters (the decoder learning rate)."""
        raise NotImplementedError(f"backend {self.backend_name!r} cannot be trained")

    def text_parameters(self) -> Iterator[nn.Parameter]:
        """The text encoder's parameters (frozen unless the objective trains them)."""
        raise NotImplementedError(f"backend {self.backend_name!r} cannot be trained")

    def freeze_text(self) -> "SegmentationBackend":
        raise NotImplementedError(f"backend {self.backend_name!r} cannot be trained")

    def net_state_dict(self) -> Dict[str, torch.Tensor]:
        """The trained network's weights, as the backend's weight loading accepts them."""
        raise NotImplementedError(f"backend {self.backend_name!r} cannot be trained")

    def refine_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Backend-specific refinement of label logits [B, N, h, w] (identity by default;
        LSeg's spatial-regularization blocks act here)."""
        return logits

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype
