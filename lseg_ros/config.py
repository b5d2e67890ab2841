"""One typed configuration for the segmentation engine.

Every field here is, under the same (dotted) name:
  * a key in ``config/lseg.yaml``,
  * a ``--name`` option of the command-line tools,
  * a declared ROS parameter of ``lseg_node``.
Defaults are written here once; everything else derives from these dataclasses.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import yaml

from .profiles import PROFILE_NAMES, deep_merge, nest, profile_settings


@dataclass(frozen=True)
class Range:
    """The accepted values of a number field (of each item of a list field): ``low`` to
    ``high``, None = unbounded, an ``open`` end excluded. One source for the validation's
    error ("accepted: an integer in [16, 65536] (MB)") and the ROS parameter descriptor's
    FloatingPointRange/IntegerRange (which is always closed: an open end is refused by the
    validation when the node reads its parameters)."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    note: str = ""  # appended to the accepted text, e.g. "(0 = torch's default)"

    def contains(self, value: Any) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def accepted(self, integer: bool) -> str:
        """'an integer in [16, 65536] (MB)', 'a value in (0, 1]', 'an integer >= 0', '> 0'."""
        kind = "an integer" if integer else "a value"
        low, high = (f"{end:g}" if isinstance(end, float) else str(end) for end in (self.low, self.high))
        if self.low is not None and self.high is not None:
            text = f"{kind} in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {low}"
        else:
            text = f"{kind} {'<' if self.high_open else '<='} {high}"
        return f"{text} {self.note}" if self.note else text


def setting(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING, *,
            bounds: Optional[Range] = None, switch: bool = False, path: str = ""):
    """A dataclass field carrying its documentation in metadata['doc'], the accepted range of a
    number in metadata['bounds'] (checked by :func:`range_checks`, published in the ROS
    parameter descriptors), and metadata['switch'] for a string setting whose values include
    on/off (a YAML or ROS boolean given for it reads as "on"/"off"). ``path`` marks a field
    that names a file or folder, resolved against the YAML file it is written in
    (:func:`load_yaml_config`): "file" (any non-empty value) or "weights" (a value that looks
    like a path, not a pretrained tag such as "openai")."""
    metadata = {"doc": text}
    if bounds is not None:
        metadata["bounds"] = bounds
    if switch:
        metadata["switch"] = True
    if path:
        metadata["path"] = path
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


#: dense_clip.positional_resize values
POSITIONAL_RESIZES = ("auto", "scale_factor", "size")


@dataclass
class DenseClipConfig:
    mode: str = setting("Last-block modification: maskclip | sclip | clearclip | naclip | catseg (CAT-Seg's: "
                        "value path with the class token as every token's residual, then the FFN).", "naclip")
    gaussian_std: float = setting("naclip: std (in patches) of the neighbourhood prior.", 5.0,
                                  bounds=Range(0.0, low_open=True))
    positional_resize: str = setting("How the positional embedding is resized to other patch grids "
                                     "(bicubic): scale_factor (NACLIP, SCLIP, ClearCLIP: scale factor "
                                     "(grid + 0.1) / pretraining grid) | size (MaskCLIP, CAT-Seg: to the grid size) | "
                                     "auto (size for maskclip and catseg, scale_factor otherwise).", "auto")
    window: int = setting("Sliding-window size in model-input pixels; 0 disables.", 0,
                          bounds=Range(0, 4096, note="(0 disables)"))
    stride: int = setting("Sliding-window stride in model-input pixels.", 224, bounds=Range(1, 4096))
    window_merge: str = setting("How overlapping windows merge: logits (NACLIP, SCLIP, ClearCLIP: each "
                                "window's label logits resized to the window, averaged) | embeddings "
                                "(pixel embeddings averaged on the patch grid; one classification).", "logits")
    partial_patches: str = setting("Inputs that are not patch multiples (input_resize mmseg): crop (the last "
                                   "partial row and column of patches are dropped, as CLIP's patch conv drops "
                                   "them: NACLIP, SCLIP, ClearCLIP) | pad (zero-padded at the bottom and right "
                                   "to whole patches after normalization, the positional embedding resized to "
                                   "that grid: MaskCLIP's mmseg PatchEmbed).", "crop")
    normalization: str = setting("Image mean/std: clip (the model's own, CLIP's) | imagenet (mean 123.675, "
                                 "116.28, 103.53, std 58.395, 57.12, 57.375 on 0-255: MaskCLIP's configs).", "clip")
    image_tower: str = setting("The image tower as run: clip (as the weights were trained: the model's "
                               "activation and LayerNorm eps) | mmseg (MaskCLIP's port of CLIP's ViT to mmseg's "
                               "VisionTransformer: GELU and LayerNorm eps 1e-6 in the image tower, whatever the "
                               "weights were trained with; the text tower unchanged).", "clip")

    def checks(self, prefix: str = "") -> list:
        """(ok, dotted name, accepted) of this sub-config's choices, names under ``prefix``
        (SegmenterConfig.validate runs them with the field's name)."""
        return [
            (self.mode in ("maskclip", "sclip", "clearclip", "naclip", "catseg"), prefix + "mode",
             "maskclip, sclip, clearclip, naclip, catseg"),
            (self.positional_resize in POSITIONAL_RESIZES, prefix + "positional_resize",
             ", ".join(POSITIONAL_RESIZES)),
            (self.window_merge in ("logits", "embeddings"), prefix + "window_merge",
             "logits, embeddings"),
            (self.partial_patches in ("crop", "pad"), prefix + "partial_patches", "crop, pad"),
            (self.normalization in ("clip", "imagenet"), prefix + "normalization", "clip, imagenet"),
            (self.image_tower in ("clip", "mmseg"), prefix + "image_tower", "clip, mmseg"),
        ]

    def validate(self) -> "DenseClipConfig":
        check_values(self, range_checks(self) + self.checks())
        return self


@dataclass
class LSegConfig:
    arch_option: int = setting("lang-seg's arch_option: the spatial-regularization head after the label "
                               "logits. 0 none; 1 bottleneck blocks (3x3 conv shared by all label maps plus "
                               "the per-pixel max over labels); 2 depthwise blocks (the 3x3 conv only). "
                               "Must match the checkpoint: 1 and 2 have the same keys.", 0,
                               bounds=Range(0, 2, note="(0 none, 1 bottleneck, 2 depthwise)"))
    block_depth: int = setting("Spatial-regularization blocks with arch_option 1 or 2 (as upstream, 0 "
                               "still runs one block; the last block has no activation).", 0, bounds=Range(0, 16))
    activation: str = setting("Activation in the spatial-regularization blocks: lrelu | tanh | relu.", "lrelu")

    def checks(self, prefix: str = "") -> list:
        """(ok, dotted name, accepted) of this sub-config's choices, names under ``prefix``
        (SegmenterConfig.validate runs them with the field's name)."""
        return [
            (self.arch_option != 0 or self.block_depth == 0, prefix + "arch_option/" + prefix + "block_depth",
             "block_depth 0 with arch_option 0; for regularization blocks set arch_option 1 (bottleneck, "
             "what block_depth > 0 alone selected before) or 2 (depthwise)"),
            (self.activation in ("lrelu", "tanh", "relu"), prefix + "activation", "lrelu, tanh, relu"),
        ]

    def validate(self) -> "LSegConfig":
        check_values(self, range_checks(self) + self.checks())
        return self


@dataclass
class VilSegConfig:
    clusters: int = setting("ViL-Seg's online clustering head: number of clusters K (must match the "
                            "checkpoint).", 16, bounds=Range(2, 1024))
    cluster_inference: bool = setting("Classify each cluster's mean embedding (ViL-Seg); false classifies "
                                      "every patch on its own.", True)


@dataclass
class LMSegConfig:
    head: str = setting("aggregation (LMSeg as its paper describes it: a cost volume of the fused CLIP+SAM "
                        "features against the labels, refined by CAT-Seg's spatial and class aggregation; "
                        "loads CAT-Seg checkpoints; cost grows with the label count) | cosine (the fused "
                        "features decoded to pixel embeddings matched by cosine; cost flat in the label "
                        "count; checkpoints trained with it).", "aggregation")
    clip_model: str = setting("open_clip ViT of the CLIP branch (image and text towers); empty = the preset's "
                              "(lmseg_tiny: lmseg_tiny_clip, lmseg_vitb16_sam_b/_sam_l and catseg_vitb16_384: ViT-B-16, "
                              "catseg_vitl14_336: ViT-L-14-336).", "")
    clip_pretrained: str = setting("CLIP weights when pretrained is 'random' (the network built from its parts): "
                                   "an open_clip tag (e.g. openai), a local file, or random. Ignored when "
                                   "pretrained is an lmseg checkpoint (it holds the whole network).", "random", path="weights")
    max_aggregated_labels: int = setting("head aggregation: most labels refined per frame; with more, those "
                                         "of highest peak raw cosine are refined and the others get logit -100 "
                                         "(CAT-Seg's own top-k, 256 in its code). Bounds the cost of large label "
                                         "sets; 0 = 256.", 0, bounds=Range(0, 4096, note="(0 = 256)"))
    clip_mode: str = setting("head cosine: how dense CLIP features are read from the last block (dense_clip "
                             "machinery): maskclip (value path, residual and FFN kept) | sclip | clearclip | "
                             "naclip. The aggregation head reads CAT-Seg's (dense_clip mode catseg).",
                             "maskclip")
    sam_model: str = setting("timm SAM image encoder (samvit_base_patch16, samvit_large_patch16, "
                             "samvit_huge_patch16); empty = the preset's (lmseg_tiny: a 2-block samvit; catseg_*: none).", "")
    sam_checkpoint: str = setting("SAM weights when pretrained is 'random': the official segment-anything file "
                                  "(e.g. sam_vit_b_01ec64.pth: image_encoder.* keys, prompt encoder and mask "
                                  "decoder dropped) or a timm samvit state dict, loaded strictly; empty = random. "
                                  "Ignored when pretrained is an lmseg checkpoint.", "", path="weights")
    decoder_width: int = setting("head cosine: channels of the fused features and the decoder; 0 = the "
                                 "preset's.", 0,
                                 bounds=Range(0, 4096, note="(0 = the preset's)"))
    fusion_init: float = setting("Initial fusion weight w in F = w * F_clip + (1 - w) * F_sam (both projected to "
                                 "decoder_width); w = sigmoid(a learned scalar), so 0 < w < 1.", 0.5,
                                 bounds=Range(0.0, 1.0, low_open=True, high_open=True))
    freeze_clip: bool = setting("Training: keep the CLIP image tower frozen (LMSeg does; the text tower is "
                                "always frozen). Set false for a randomly initialized tower.", True)
    freeze_sam: bool = setting("Training: keep the SAM image encoder frozen (LMSeg does). Set false for a "
                               "randomly initialized encoder.", True)

    def checks(self, prefix: str = "") -> list:
        """(ok, dotted name, accepted) of this sub-config's choices, names under ``prefix``
        (SegmenterConfig.validate runs them with the field's name)."""
        return [
            (self.head in ("aggregation", "cosine"), prefix + "head", "aggregation, cosine"),
            (self.clip_mode in ("maskclip", "sclip", "clearclip", "naclip"), prefix + "clip_mode",
             "maskclip, sclip, clearclip, naclip"),
        ]

    def validate(self) -> "LMSegConfig":
        check_values(self, range_checks(self) + self.checks())
        return self


@dataclass
class PostprocessConfig:
    cluster_k: int = setting("ViL-Seg-style clustering: group pixel embeddings into K clusters "
                             "and classify each cluster as a whole; 0 disables.", 0,
                             bounds=Range(0, 1024, note="(0 disables)"))
    cluster_iters: int = setting("k-means iterations for clustering.", 10, bounds=Range(1, 1000))
    pamr_iters: int = setting("PAMR refinement iterations on the logits; 0 disables.", 0,
                              bounds=Range(0, 100, note="(0 disables)"))
    pamr_dilations: List[int] = setting("PAMR neighbourhood dilations.", factory=lambda: [1, 2], bounds=Range(1, 64))
    pamr_on: str = setting("Where PAMR runs: input_probabilities (label probabilities at the model-input "
                           "resolution: fast) | output_logits (NACLIP: the logits at the output resolution, "
                           "guided by the model input resized to it; memory grows with output size x names).",
                           "input_probabilities")

    def checks(self, prefix: str = "") -> list:
        """(ok, dotted name, accepted) of this sub-config's choices, names under ``prefix``
        (SegmenterConfig.validate runs them with the field's name)."""
        return [
            (self.pamr_on in ("input_probabilities", "output_logits"), prefix + "pamr_on",
             "input_probabilities, output_logits"),
            (bool(self.pamr_dilations), prefix + "pamr_dilations",
             "a non-empty list of integers in [1, 64]"),
        ]

    def validate(self) -> "PostprocessConfig":
        check_values(self, range_checks(self) + self.checks())
        return self


@dataclass
class SegmenterConfig:
    profile: str = setting("Named settings to start from: robot (the node's real-time default) | naclip | "
                           "sclip | clearclip | maskclip | lseg (a paper's evaluation settings; see the "
                           "profile table in docs/models.md). Fields set explicitly override the profile.", "robot")
    backend: str = setting("Registered backend: dense_clip | lseg | lmseg | vilseg.", "dense_clip")
    model: str = setting("Architecture: an open_clip model name (dense_clip), an LSeg preset "
                         "(lseg_vitl16_384, lseg_vitb32_384, lseg_vitb16_384, lseg_tiny), an LMSeg preset "
                         "(lmseg_vitb16_sam_b, lmseg_vitb16_sam_l, catseg_vitb16_384, catseg_vitl14_336, lmseg_tiny) "
                         "or a ViL-Seg preset "
                         "(vilseg_vitb16, vilseg_vits16, vilseg_tiny).", "ViT-B-16")
    pretrained: str = setting("Weights: an open_clip pretrained tag (e.g. openai), a local file "
                              "(.safetensors/.pt/.pth/.ckpt), or 'random' (explicit, tests only). lmseg: a "
                              "checkpoint written by lseg-train (the whole network), an official CAT-Seg "
                              "checkpoint (model_base.pth, model_large.pth), or 'random': built from "
                              "lmseg.clip_pretrained and lmseg.sam_checkpoint with a random head.", "openai", path="weights")
    device: str = setting("auto (CUDA when available) | cpu | cuda | cuda:N.", "auto")
    precision: str = setting("auto (fp16 on CUDA, fp32 on the CPU) | fp32 | fp16 (CUDA only) | bf16 (CUDA, or a "
                             "CPU with AVX512-BF16/AMX: elsewhere emulated and 8-14x slower, which is warned "
                             "about).", "fp32")
    num_threads: int = setting("CPU threads torch uses (torch.set_num_threads; process-wide); 0 = torch's "
                               "default (one per core). On a robot whose cores are shared with other "
                               "processes, fewer threads can be faster.", 0,
                               bounds=Range(0, 1024, note="(0 = torch's default)"))
    mha_fastpath: str = setting("nn.MultiheadAttention's fused inference kernel, which open_clip's blocks "
                                "take (process-wide): auto (off on the CPU, where the plain path measured "
                                "faster, on for CUDA) | on | off.", "auto", switch=True)
    memory_format: str = setting("Tensor layout of the image side: auto (channels_last for conv-heavy "
                                 "backends (lseg) on the CPU, where it measured faster) | contiguous | "
                                 "channels_last.", "auto")
    quantize: str = setting("none | int8: dynamic int8 quantization of the image side's linear layers "
                            "(CPU only; faster, masks not identical: see docs/performance.md).", "none")
    compile: str = setting("none | torch (torch.compile of the image side) | cuda_graphs (the image side "
                           "captured as a CUDA graph per input size: CUDA only, fixed frame size). Set "
                           "warmup_height/warmup_width so the first frame is not slow.", "none")
    warmup_height: int = setting("Height of a frame segmented once at start (compilation, CUDA graph capture, "
                                 "kernel selection) so the first real frame is not slow; 0 = no warm-up. "
                                 "Use the camera's frame size.", 0, bounds=Range(0, 16384, note="(0 = no warm-up)"))
    warmup_width: int = setting("Width of the warm-up frame; 0 = no warm-up.", 0,
                                bounds=Range(0, 16384, note="(0 = no warm-up)"))
    stage_timings: str = setting("Per-stage times in each result's timings: events (CUDA events, no "
                                 "synchronization; wall clock on the CPU) | sync (synchronize after each "
                                 "stage: exact wall times, slower on CUDA) | off (the total only).", "events",
                                 switch=True)
    confidence_dtype: str = setting("float32 | float16: dtype of the confidence maps copied to the host "
                                    "(float16 halves the copy; values differ by < 5e-4).", "float32")
    confidence_scale: float = setting("Confidence maps at this fraction of the output size (0 < s <= 1; the "
                                      "mask stays full size). 10 full-size float32 maps of a 640x480 frame "
                                      "are 12 MB.", 1.0, bounds=Range(0.0, 1.0, low_open=True))
    runtime: str = setting("What runs the image side: torch | onnxruntime (the ONNX file onnx_model, written "
                           "by lseg-export; TensorRT, CUDA or CPU execution provider, in that order, when "
                           "present). The text side always runs in torch.", "torch")
    onnx_model: str = setting("runtime onnxruntime: the exported image side (.onnx; relative to the YAML "
                              "file it is written in).", "", path="file")
    tensorrt_cache_dir: str = setting("runtime onnxruntime: folder for TensorRT engines (built on the first "
                                      "run, reused after); empty = no cache.", "", path="file")
    short_side: int = setting("Model input short side in pixels.", 448, bounds=Range(32, 4096))
    max_long_side: int = setting("Cap on the model input long side in pixels.", 896, bounds=Range(32, 8192))
    input_resize: str = setting("How images become model inputs: snap (short side to short_side, long side "
                                "capped, both rounded to the patch multiple, antialiased) | mmseg (the "
                                "papers' Resize(keep_ratio): scale min(short_side/short, max_long_side/long), "
                                "sides int(x*scale+0.5), bilinear without antialiasing, 8-bit; a last "
                                "partial patch is dropped or padded: dense_clip.partial_patches).", "snap")
    output_height: int = setting("Output mask height; 0 = the input image height.", 0,
                                 bounds=Range(0, 16384, note="(0 = the input's)"))
    output_width: int = setting("Output mask width; 0 = the input image width.", 0,
                                bounds=Range(0, 16384, note="(0 = the input's)"))
    memory_budget_mb: int = setting("Per-frame memory (MB) for upsampling logits to the output size and "
                                    "holding confidence maps. Upsampling runs in bands that fit in half "
                                    "of it; confidence maps larger than the other half are returned at a "
                                    "reduced resolution (recorded with them).", 512,
                                    bounds=Range(16, 65536, note="(MB)"))
    logit_scale: float = setting("Softmax temperature over labels; 0 = the backend's own "
                                 "(100 for CLIP, 1/0.07 for LSeg).", 0.0,
                                 bounds=Range(0.0, note="(0 = the backend's own)"))
    threshold: float = setting("Default minimum confidence; pixels below get unknown_value (or "
                               "threshold_label).", 0.0, bounds=Range(0.0, 1.0))
    unknown_value: int = setting("Mask value for pixels below their label's threshold.", 255, bounds=Range(0, 65535))
    threshold_label: int = setting("Label index that pixels below their threshold take instead of "
                                   "unknown_value (the papers' background class, index 0); -1 = "
                                   "unknown_value.", -1, bounds=Range(-1, 65535, note="(-1 = unknown_value)"))
    area_threshold: float = setting("SCLIP's area filter: a label (other than threshold_label) whose pixels "
                                    "make up less than this fraction of all pixels not given threshold_label "
                                    "is dropped, its pixels taking their next best label; 0 disables.", 0.0,
                                    bounds=Range(0.0, 1.0, high_open=True, note="(0 disables)"))
    prompt_templates: str = setting("none | single | imagenet | maskclip (imagenet + MaskCLIP's five '... in "
                                    "the scene.') | catseg (CAT-Seg's 'A photo of a {} in the scene') | default "
                                    "(the backend's own: imagenet for dense_clip and lmseg head cosine, catseg "
                                    "for lmseg head aggregation, none for lseg).", "default")
    description_pooling: str = setting("How a label's prompts and descriptions combine: mean | max.", "mean")
    attribute_prompts: str = setting("LMSeg-style attribute-enriched prompts: a label given no descriptions takes "
                                     "the prompt bank's descriptions of its color, shape and material (the shipped "
                                     "bank, with prompt_bank over it): auto (on for backend lmseg except its "
                                     "catseg_* presets, off for the others) | on | off.", "auto", switch=True)
    prompt_bank: str = setting("A user prompt bank (.json, format lseg_ros.prompt_bank/1; relative to the YAML "
                               "file it is written in) whose classes replace or add to the shipped bank's; "
                               "empty = the shipped bank only.", "", path="file")
    labels: List[str] = setting("Labels used until a query sets others.",
                                factory=lambda: ["floor", "wall", "door", "chair", "table", "person"])
    dense_clip: DenseClipConfig = setting("dense_clip backend options.", factory=DenseClipConfig)
    lseg: LSegConfig = setting("lseg backend options.", factory=LSegConfig)
    lmseg: LMSegConfig = setting("lmseg backend options.", factory=LMSegConfig)
    vilseg: VilSegConfig = setting("vilseg backend options.", factory=VilSegConfig)
    postprocess: PostprocessConfig = setting("Optional post-processing.", factory=PostprocessConfig)

    # ------------------------------------------------------------------ loading
    @staticmethod
    def profile_base(data: Mapping[str, Any]) -> Dict[str, Any]:
        """``data`` over the settings of its ``profile`` (explicit keys win)."""
        return deep_merge(profile_layer(data), data)

    @classmethod
    def for_profile(cls, name: str, dataset: Optional[str] = None, **fields) -> "SegmenterConfig":
        """The profile's configuration (with its ``dataset`` settings), then ``fields``."""
        data = deep_merge(profile_layer({"profile": name}, dataset), {"profile": name})
        return from_dict(cls, deep_merge(data, fields), source=f"profile {name}")

    @classmethod
    def from_yaml(cls, path: str | Path, extra: Optional[Mapping[str, Any]] = None,
                  beneath: Optional[Mapping[str, Any]] = None) -> "SegmenterConfig":
        """The file's configuration; ``extra`` keys override it, ``beneath`` keys lie under it;
        relative file paths in it are relative to the file (:func:`load_yaml_config`)."""
        return load_yaml_config(cls, path, extra, beneath)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def attribute_prompts_enabled(self) -> bool:
        """Whether ``attribute_prompts`` resolves on: "auto" is on for backend lmseg only (not its
        catseg_* presets)."""
        return resolve_attribute_prompts(self.attribute_prompts, self.backend, self.model)

    def validate(self) -> "SegmenterConfig":
        checks = range_checks(self) + [
            (self.precision in ("auto", "fp32", "fp16", "bf16"), "precision", "auto, fp32, fp16, bf16"),
            (self.mha_fastpath in ("auto", "on", "off"), "mha_fastpath", "auto, on, off"),
            (self.memory_format in ("auto", "contiguous", "channels_last"), "memory_format",
             "auto, contiguous, channels_last"),
            (self.quantize in ("none", "int8"), "quantize", "none, int8"),
            (self.compile in ("none", "torch", "cuda_graphs"), "compile", "none, torch, cuda_graphs"),
            ((self.warmup_height == 0) == (self.warmup_width == 0), "warmup_height/warmup_width",
             "both 0 (no warm-up) or both > 0"),
            (self.stage_timings in ("off", "events", "sync"), "stage_timings", "off, events, sync"),
            (self.confidence_dtype in ("float32", "float16"), "confidence_dtype", "float32, float16"),
            (self.runtime in ("torch", "onnxruntime"), "runtime", "torch, onnxruntime"),
            (self.runtime != "onnxruntime" or bool(self.onnx_model), "runtime/onnx_model",
             "onnx_model set to an exported .onnx file (lseg-export) with runtime onnxruntime"),
            (self.max_long_side >= self.short_side, "max_long_side", f">= short_side ({self.short_side})"),
            (self.profile in PROFILE_NAMES, "profile", ", ".join(PROFILE_NAMES)),
            (self.input_resize in ("snap", "mmseg"), "input_resize", "snap, mmseg"),
            (self.prompt_templates in ("none", "single", "imagenet", "maskclip", "default"), "prompt_templates",
             "none, single, imagenet, maskclip, default"),
            (self.description_pooling in ("mean", "max"), "description_pooling", "mean, max"),
            (self.attribute_prompts in ("auto", "on", "off"), "attribute_prompts", "auto, on, off"),
            (not self.prompt_bank or self.prompt_bank.lower().endswith(".json"), "prompt_bank",
             "empty or a .json prompt bank file (format lseg_ros.prompt_bank/1)"),
        ]
        for name in ("dense_clip", "lseg", "lmseg", "postprocess"):  # each sub-config's own checks
            checks += getattr(self, name).checks(prefix=name + ".")
        check_values(self, checks)
        return self


# ---------------------------------------------------------------------- helpers
def field_metadata(cls, prefix: str = "") -> Dict[str, Mapping[str, Any]]:
    """{'dotted.name': metadata} for every leaf field of ``cls`` (doc, bounds, switch)."""
    metadata: Dict[str, Mapping[str, Any]] = {}
    types = _field_types(cls)
    for f in dataclasses.fields(cls):
        if _is_dataclass_type(types[f.name]):
            metadata.update(field_metadata(types[f.name], prefix + f.name + "."))
        else:
            metadata[prefix + f.name] = f.metadata
    return metadata


def field_bounds(cls) -> Dict[str, "Range"]:
    """{'dotted.name': Range} of every leaf field of ``cls`` that has one."""
    return {name: meta["bounds"] for name, meta in field_metadata(cls).items() if "bounds" in meta}


def switch_fields(cls) -> List[str]:
    """Dotted names of the string settings whose values include on/off (see :func:`setting`)."""
    return [name for name, meta in field_metadata(cls).items() if meta.get("switch")]


def range_checks(config: Any) -> list:
    """``(ok, name, accepted)`` checks (for :func:`check_values`) of every field of ``config``
    with bounds: a number within them, or a list whose every item is."""
    flat = flatten(config)
    types = {name: tp for name, (tp, _, _) in field_docs(type(config)).items()}
    checks = []
    for name, bounds in field_bounds(type(config)).items():
        value, tp = flat[name], types[name]
        if typing.get_origin(tp) in (list, List):
            (item_tp,) = typing.get_args(tp)
            ok = all(bounds.contains(item) for item in value)
            accepted = f"a list of {bounds.accepted(item_tp is int).replace('an integer', 'integers', 1)}"
        else:
            ok, accepted = bounds.contains(value), bounds.accepted(tp is int)
        checks.append((ok, name, accepted))
    return checks


def check_values(config: Any, checks, what: str = "config value") -> None:
    """Raise ValueError for the first ``(ok, name, accepted)`` check that failed, naming the
    field(s) (dotted; ``a/b`` for a check over two fields), their values and what is accepted."""
    flat = flatten(config)
    for ok, name, accepted in checks:
        if not ok:
            fields = name.split("/")
            value = flat[name] if len(fields) == 1 else {field_name: flat[field_name] for field_name in fields}
            raise ValueError(f"invalid {what} {name}={value!r}; accepted: {accepted}")


#: weights file suffixes: torch.load(weights_only=True) and safetensors (lseg_ros.weights reads them)
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
SAFETENSORS_SUFFIXES = (".safetensors",)


def looks_like_path(pretrained: str) -> bool:
    """True when ``pretrained`` names a file rather than a pretrained tag."""
    return (os.sep in pretrained or pretrained.startswith((".", "~"))
            or pretrained.endswith(TORCH_SUFFIXES + SAFETENSORS_SUFFIXES))


def profile_layer(data: Mapping[str, Any], dataset: Optional[str] = None) -> Dict[str, Any]:
    """The nested settings of the profile ``data`` names (robot when none), with its settings for
    ``dataset`` (a dataset kind) when given: the layer every configuration lies on. Empty for
    an unknown profile name (validate() names it)."""
    name = data.get("profile", "robot") if isinstance(data, Mapping) else "robot"
    if not isinstance(name, str) or name not in PROFILE_NAMES:
        return {}
    return nest(profile_settings(name, dataset))


def read_yaml_mapping(path: str | Path) -> Any:
    """The YAML file's content ({} for an empty file)."""
    with open(path, "r", encoding="utf-8") as stream:
        return yaml.safe_load(stream) or {}


def load_yaml_config(cls, path: str | Path, extra: Optional[Mapping[str, Any]] = None,
                     beneath: Optional[Mapping[str, Any]] = None, relative_to_file: bool = True):
    """A ``cls`` configuration from the YAML file ``path`` (every config class loads here):
    ``extra`` keys override the file's, ``beneath`` keys lie under them, and with
    ``relative_to_file`` the fields marked as paths (``setting(path=...)``) that are relative
    are made relative to the file's folder, not to the caller's working directory (a training
    YAML, including a run's config.yaml, keeps them relative to the working directory)."""
    data = read_yaml_mapping(path)
    if isinstance(data, Mapping):
        data = deep_merge(deep_merge(beneath or {}, data), extra or {})
    config = from_dict(cls, data, source=str(path))
    if relative_to_file:
        resolve_relative_paths(config, Path(path).resolve().parent)
    return config


def resolve_relative_paths(config: Any, folder: Path) -> None:
    """Fields of ``config`` (and its sub-configs) marked ``path`` "file" (when set) or "weights"
    (when the value looks like a file, not a tag) that are relative become ``folder / value``."""
    types = _field_types(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if _is_dataclass_type(types[f.name]):
            resolve_relative_paths(value, folder)
            continue
        kind = f.metadata.get("path")
        if not kind or not value or (kind == "weights" and not looks_like_path(value)):
            continue
        if not Path(value).expanduser().is_absolute():
            setattr(config, f.name, str(folder / Path(value).expanduser()))


def _field_types(cls) -> Dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def coerce(value: Any, tp: Any, name: str, switch: bool = False) -> Any:
    """``value`` as type ``tp`` (field ``name``); for a ``switch`` field (values include on/off)
    a boolean is "on"/"off": YAML 1.1 and ROS read an unquoted on/off/yes/no/true/false as one."""
    origin = typing.get_origin(tp)
    if origin in (list, List):
        (item_tp,) = typing.get_args(tp) or (str,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config field {name} expects a list, got {value!r}")
        return [coerce(v, item_tp, name) for v in value]
    if tp is bool:
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"config field {name} expects a boolean, got {value!r}")
        return bool(value)
    if tp in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"config field {name} expects {tp.__name__}, got {value!r}")
        try:
            converted = tp(value)
        except (TypeError, ValueError):
            raise ValueError(f"config field {name} expects {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and value != converted:
            raise ValueError(f"config field {name} expects an integer, got {value!r}")
        return converted
    if tp is str:
        if isinstance(value, bool):
            if switch:
                return "on" if value else "off"
            raise ValueError(f"config field {name} expects a string, got the boolean {value!r} (YAML reads "
                             "unquoted yes/no/on/off/true/false as booleans: quote the value)")
        if not isinstance(value, (str, int, float)):
            raise ValueError(f"config field {name} expects a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls, data: Mapping[str, Any], source: str = "config", prefix: str = ""):
    """Build dataclass ``cls`` from a nested dict; unknown keys are an error."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: expected a mapping for {prefix or cls.__name__}, got {data!r}")
    if hasattr(cls, "profile_base"):
        data = cls.profile_base(data)
    types = _field_types(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{source}: unknown config key(s) {[prefix + k for k in unknown]}; "
                         f"known: {sorted(prefix + k for k in known)}")
    kwargs = {}
    metadata = {f.name: f.metadata for f in dataclasses.fields(cls)}
    for name, value in data.items():
        tp = types[name]
        if _is_dataclass_type(tp):
            kwargs[name] = from_dict(tp, value or {}, source, prefix + name + ".")
        else:
            kwargs[name] = coerce(value, tp, prefix + name, switch=bool(metadata[name].get("switch")))
    return cls(**kwargs)


def flatten(config: Any, prefix: str = "") -> Dict[str, Any]:
    """Nested dataclass -> {'dense_clip.mode': 'naclip', ...}."""
    flat: Dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            flat.update(flatten(value, prefix + f.name + "."))
        else:
            flat[prefix + f.name] = value
    return flat


def field_docs(cls, prefix: str = "") -> Dict[str, tuple]:
    """{'dotted.name': (type, default, doc)} for every leaf field of ``cls``."""
    docs: Dict[str, tuple] = {}
    types = _field_types(cls)
    default = cls()
    for f in dataclasses.fields(cls):
        tp = types[f.name]
        if _is_dataclass_type(tp):
            docs.update(field_docs(tp, prefix + f.name + "."))
        else:
            docs[prefix + f.name] = (tp, getattr(default, f.name), f.metadata.get("doc", ""))
    return docs


def with_overrides(config: Any, overrides: Mapping[str, Any]):
    """Return a copy of ``config`` with dotted-name overrides applied (values coerced)."""
    nested = dataclasses.asdict(config)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = nested
        for part in parts[:-1]:
            if part not in node or not isinstance(node[part], dict):
                raise ValueError(f"unknown config key {dotted!r}")
            node = node[part]
        if parts[-1] not in node:
            raise ValueError(f"unknown config key {dotted!r}; known: {sorted(flatten(config))}")
        node[parts[-1]] = value
    return from_dict(type(config), nested)


def add_config_arguments(parser: argparse.ArgumentParser, cls=SegmenterConfig) -> None:
    """Add ``--dotted.name`` (and ``--dotted-name``) options for every config field."""
    group = parser.add_argument_group("configuration (override --config file values)")
    for name, (tp, default, doc) in field_docs(cls).items():
        flags = [f"--{name}"]
        if "_" in name or "." in name:
            flags.append("--" + name.replace("_", "-").replace(".", "-"))
        group.add_argument(*flags, dest=f"cfg:{name}", default=None, metavar=_metavar(tp),
                           help=f"{doc} (default: {default})")


def _metavar(tp) -> str:
    if typing.get_origin(tp) in (list, List):
        return "A,B,..."
    return getattr(tp, "__name__", "VALUE").upper()


def config_from_args(args: argparse.Namespace, cls=SegmenterConfig, dataset: Optional[str] = None):
    """Config from ``--config FILE`` (if given) plus command-line overrides; a profile (from
    either) lies beneath both, with its settings for ``dataset`` (a dataset kind) when given."""
    path = getattr(args, "config", None)
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg:") and v is not None}
    profiles = nest({k: v for k, v in overrides.items() if k.split(".")[-1] == "profile"})
    overrides = {k: v for k, v in overrides.items() if k.split(".")[-1] != "profile"}
    beneath: Dict[str, Any] = {}  # the profile's settings for the dataset, under the file's keys
    if dataset is not None and cls is SegmenterConfig:
        file_data = read_yaml_mapping(path) if path else {}
        name = profiles.get("profile") or (file_data.get("profile") if isinstance(file_data, Mapping) else None)
        if name in PROFILE_NAMES:
            beneath = profile_layer({"profile": name}, dataset)
    if path:
        config = load_yaml_config(cls, path, extra=profiles, beneath=beneath)
    else:
        config = from_dict(cls, deep_merge(beneath, profiles), source="command line")
    config = with_overrides(config, overrides) if overrides else config
    return config.validate() if hasattr(config, "validate") else config


#: config attribute_prompts values
ATTRIBUTE_PROMPT_MODES = ("auto", "on", "off")
#: backends for which attribute_prompts "auto" means on
AUTO_ON_BACKENDS = ("lmseg",)


def resolve_attribute_prompts(mode: str, backend: str, model: str = "") -> bool:
    """Whether attribute prompts are used: config ``attribute_prompts`` ``mode`` (auto | on | off)
    for ``backend`` and ``model``; auto is on for the LMSeg backend only, except its CAT-Seg
    presets (``catseg_*``: CAT-Seg as released, one prompt per class)."""
    if mode not in ATTRIBUTE_PROMPT_MODES:
        raise ValueError(f"invalid config value attribute_prompts={mode!r}; accepted: "
                         f"{', '.join(ATTRIBUTE_PROMPT_MODES)}")
    if mode == "auto":
        return backend in AUTO_ON_BACKENDS and not model.startswith("catseg_")
    return mode == "on"


# ------------------------------------------------------------ ROS 2 parameter files
def params_file_data(values: Mapping[str, Any], node_name: str = "lseg_node") -> Dict[str, Any]:
    """The ROS 2 ``--params-file`` layout of ``values`` (dotted parameter names) for the node
    ``node_name`` in any namespace: ``{"/**/<node_name>": {"ros__parameters": values}}``.
    Empty lists are left out (rclpy cannot type them from a file)."""
    return {f"/**/{node_name}": {"ros__parameters": {name: value for name, value in values.items()
                                                     if value != []}}}


def write_params_file(path: str | Path, values: Mapping[str, Any], node_name: str = "lseg_node",
                      header: str = "") -> Path:
    """Write :func:`params_file_data` as YAML to ``path`` (after ``header``, comment lines);
    every parameter file lseg_ros writes goes through here."""
    path = Path(path)
    path.write_text(header + yaml.safe_dump(params_file_data(values, node_name), sort_keys=False),
                    encoding="utf-8")
    return path
