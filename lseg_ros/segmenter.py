"""The public engine API: build from a config, set labels, segment images.

    segmenter = Segmenter(SegmenterConfig(backend="dense_clip", model="ViT-B-16"))
    segmenter.set_labels(["door", "chair", "floor"])
    result = segmenter.segment(rgb)          # HxWx3 uint8
    result.mask, result.confidences, result.labels, result.timings

Label embeddings are computed once per label (cached); every frame reuses them.
"""
from __future__ import annotations

import itertools
import threading
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .build import build_image_side, resolve_runtime
from .build import resolve_device  # noqa: F401  (re-exported: lseg_ros.segmenter API)
from .config import SegmenterConfig
from .label_maps import LabelRules, classify_bands, plan_outputs, resize_logits
from .postprocess import cluster_pixel_embeddings, pamr
from .prompt_bank import PromptBank, load_prompt_bank
from .preprocess import PinnedStaging, mmseg_input_size, model_input_size, split_batch, to_model_input, window_starts
from .text import MAX_LABEL_PROMPTS, LabelEncoder
from .validation import LabelLimits, check_labels, check_texts, split_synonyms
from .validation import SYNONYM_SEPARATOR, parse_label_text  # noqa: F401  (re-exported: lseg_ros.segmenter API)



@dataclass
class SegmentationResult:
    """Output for one image."""

    #: [H, W] label indices: value i is labels[i]; below-threshold pixels are unknown_value.
    #: uint8 while every value fits in 8 bits, else uint16.
    mask: np.ndarray
    #: [N, Hc, Wc] softmax over labels (with synonyms: each label's best name's probability,
    #: softmax over all names), float32 (or float16: config confidence_dtype), or None when
    #: not requested. Full size ([N, H, W]) unless the config's confidence_scale is below 1 or
    #: that exceeds half of memory_budget_mb; then both sides are scaled by
    #: ``confidence_scale`` (rounded down to whole pixels).
    confidences: Optional[np.ndarray]
    labels: List[str]
    unknown_value: int
    #: generation of the label set that produced this result (see LabelSet.generation)
    generation: int = 0
    #: confidence map size / mask size: 1.0 at full resolution
    confidence_scale: float = 1.0
    #: seconds per stage: preprocess, backbone, classify, postprocess (device time from CUDA
    #: events with stage_timings "events", wall time with "sync" and on the CPU), and total
    #: (wall time of the call); shared by a batch
    timings: Dict[str, float] = field(default_factory=dict)
    #: [h, w, D] float16, the L2-normalized pixel embeddings the labels were matched against,
    #: at the model's output grid (pixel-major), or None when not requested. Without
    #: clustering, PAMR or a backend's logit refinement (LSeg's arch_option), a pixel's label
    #: logit is ``logit_scale * embeddings[y, x] . encode_texts([label])[0]``. For a backend
    #: with a learned label head (lmseg's cost aggregation) it is the fused image feature whose
    #: cosine with a label is the raw cost before aggregation, not the logit.
    embeddings: Optional[np.ndarray] = None
    #: (x, y): source-image pixels per embedding grid cell (cell (j, i) covers image columns
    #: [j * sx, (j + 1) * sx) and rows [i * sy, (i + 1) * sy))
    embedding_scale: tuple = (1.0, 1.0)


@dataclass(frozen=True)
class LabelSet:
    """A label set as a value: names, per-label thresholds and cached embeddings, built off
    the frame path (:meth:`Segmenter.prepare_labels`) and swapped in whole
    (:meth:`Segmenter.use_labels`)."""

    names: List[str]  # one per label; a label with synonyms reads "person; man; woman"
    #: the descriptions each label was encoded with: the given ones, or the prompt bank's for
    #: a label given none (config attribute_prompts)
    descriptions: List[List[str]]
    thresholds: torch.Tensor  # [N] float32
    label_embeddings: torch.Tensor  # [M, D] float32, L2-normalized: one per query name
    #: 0 until the set is put in use; then 1, 2, ... in the order sets were put in use
    generation: int = 0
    #: [M] int64: the label of each query name (None when every label has one name, M == N)
    name_groups: Optional[torch.Tensor] = None
    #: whether any threshold is above 0 (known on the host: no device synchronization per frame)
    has_thresholds: bool = False

    @property
    def query_names(self) -> List[str]:
        """Every name of every label, in order (what the text encoder embedded)."""
        return [name for label in self.names for name in split_synonyms(label)]


class Segmenter:
    """Open-vocabulary semantic segmentation with a registered backend."""

    #: most text prompts (names x templates + descriptions) one set_labels/prepare_labels may
    #: encode: 255 labels x (80 templates + 32 descriptions) fit (benchmarks/bench_text.py)
    max_label_prompts = MAX_LABEL_PROMPTS
    #: most text prompts one encode_texts call may encode: 102 texts with 80 templates,
    #: 8192 with one (a few seconds with the tiny CLIP on a CPU core; benchmarks/bench_text.py)
    max_text_prompts = 8192

    def __init__(self, config: Optional[SegmenterConfig] = None, limits: Optional[LabelLimits] = None) -> None:
        self.config = config = (config or SegmenterConfig()).validate()
        #: what a label set or text list may hold (the node passes its max_labels, max_label_chars
        #: and max_prompts_per_label); replace it to change them
        self.limits = limits or LabelLimits()
        runtime = resolve_runtime(config)
        self.device, self.precision, self.dtype = runtime.device, runtime.precision, runtime.dtype
        #: problems with the settings that do not stop the engine (the node logs them)
        self.warnings: List[str] = list(runtime.warnings)
        side = build_image_side(config, runtime)
        self.backend = side.backend
        self.memory_format = side.memory_format
        #: the image side as the frame path calls it: images [B, 3, h, w] -> embeddings [B, D, h', w']
        #: (whole input), and per sliding window (dense_embeddings)
        self.image_forward, self.window_forward = side.image_forward, side.window_forward
        #: torch parameters dropped because another runtime runs the image side
        self.released_parameters = side.released_parameters
        self._staging = PinnedStaging() if self.device.type == "cuda" else None
        #: what each speed setting became on this device ("auto" resolved)
        self.settings = side.settings(runtime, config)
        templates = self.config.prompt_templates
        if templates == "default":
            templates = self.backend.default_prompt_templates
        self.label_encoder = LabelEncoder(self.backend, templates, self.config.description_pooling)
        #: descriptions for labels given none (LMSeg attribute prompts), or None when off
        self.prompt_bank: Optional[PromptBank] = None
        if config.attribute_prompts_enabled():
            self.prompt_bank = load_prompt_bank([config.prompt_bank] if config.prompt_bank else [])
            self.settings["attribute_prompts"] = f"on ({len(self.prompt_bank)} classes in the prompt bank)"
        else:
            self.settings["attribute_prompts"] = "off"
            if config.prompt_bank:
                warning = (f"prompt_bank {config.prompt_bank!r} is not used: attribute_prompts "
                           f"{config.attribute_prompts!r} is off for backend {config.backend!r}; set "
                           "attribute_prompts: on to use it")
                self.warnings.append(warning)
                warnings.warn(warning, RuntimeWarning, stacklevel=2)
        self.logit_scale = self.config.logit_scale or self.backend.default_logit_scale
        if self.backend.label_head and config.postprocess.cluster_k > 0:
            raise ValueError(f"postprocess.cluster_k {config.postprocess.cluster_k} clusters pixel embeddings "
                             f"before cosine matching; backend {config.backend!r} ({self.backend.description}) "
                             f"classifies with a learned head over all labels: set postprocess.cluster_k 0")
        self.label_set: Optional[LabelSet] = None
        self._generations = itertools.count(1)
        self._generation_lock = threading.Lock()
        if self.config.labels:
            self.set_labels(self.config.labels)
        if config.warmup_height and config.warmup_width:
            self.warmup(config.warmup_height, config.warmup_width)

    def set_threshold(self, value: float) -> None:
        """The confidence threshold of labels without their own, for label sets prepared from
        now on (a prepared set keeps the thresholds it was checked with); ValueError outside
        [0, 1]."""
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"threshold {value} out of range; accepted: [0, 1]")
        self.config.threshold = value

    def stop_encoding_when(self, should_stop: Callable[[], bool]) -> None:
        """Label and text encoding check ``should_stop()`` between text forward batches and
        stop with InterruptedError once it is true (a node shutting down; ``lambda: True``
        stops an encoding in progress)."""
        self.label_encoder.should_stop = should_stop

    def warmup(self, height: int, width: int, batch: int = 1, repeats: int = 2) -> float:
        """Segment a ``height`` x ``width`` gray frame (``batch`` of them) ``repeats`` times, so
        that compilation, CUDA graph capture and kernel selection happen now, not on the first
        real frame; returns the last run's seconds. Uses the active labels (or 'object')."""
        label_set = self.label_set or self.prepare_labels(["object"])
        frames = np.full((batch, height, width, 3), 127, dtype=np.uint8)
        seconds = 0.0
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            self._segment(list(frames), label_set, True, None, False)
            seconds = time.perf_counter() - start
        return seconds

    # ----------------------------------------------------------------- labels
    @property
    def labels(self) -> List[str]:
        return list(self.label_set.names) if self.label_set else []

    @property
    def description(self) -> str:
        return self.backend.description

    def validate_labels(self, labels: Sequence[str], descriptions=None, thresholds=None):
        """Checked copies of (labels, descriptions, thresholds) within :attr:`limits` and this
        config's threshold, threshold_label and unknown_value; ValueError names the bad value
        (:func:`lseg_ros.validation.check_labels`)."""
        return check_labels(labels, descriptions, thresholds, self.limits, default_threshold=self.config.threshold,
                            threshold_label=self.config.threshold_label, unknown_value=self.config.unknown_value)

    def validate_texts(self, texts: Sequence[str]) -> List[str]:
        """Checked, stripped copies of free texts to embed (:meth:`encode_texts`) within
        :attr:`limits`; ValueError names the bad one (:func:`lseg_ros.validation.check_texts`)."""
        return check_texts(texts, self.limits)

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """[N, D] float32 L2-normalized embeddings of free texts, in the space of the pixel
        embeddings (:attr:`SegmentationResult.embeddings`): the label encoder with the same
        prompt templates and cache the labels use, so ``encode_texts(["door"])`` is the
        embedding a label "door" is matched with. Thread-safe. ValueError when the texts need
        more than :attr:`max_text_prompts` prompts (texts x templates)."""
        return self.label_encoder.encode(self.validate_texts(texts), max_prompts=self.max_text_prompts, what="texts")

    def set_labels(self, labels: Sequence[str], descriptions: Optional[Sequence[Sequence[str]]] = None,
                   thresholds: Optional[Sequence[Optional[float]]] = None) -> List[str]:
        """Replace the active label set. Known labels cost no text forward."""
        label_set = self.prepare_labels(labels, descriptions, thresholds)
        self.use_labels(label_set)
        return list(label_set.names)

    def prepare_labels(self, labels: Sequence[str], descriptions: Optional[Sequence[Sequence[str]]] = None,
                       thresholds: Optional[Sequence[Optional[float]]] = None) -> LabelSet:
        """A checked, encoded label set that is not in use yet (the active one is untouched).

        The text forward happens here, so a program can prepare a set in one thread while
        another keeps segmenting; only one thread at a time may prepare (the cache is not
        locked)."""
        labels, descriptions, thresholds = self.validate_labels(labels, descriptions, thresholds)
        descriptions = self.bank_descriptions(labels, descriptions)
        names = [split_synonyms(label) for label in labels]
        flat = [name for group in names for name in group]
        flat_descriptions = [descriptions[index] for index, group in enumerate(names) for _ in group]
        label_embeddings = self.label_encoder.encode(flat, flat_descriptions, max_prompts=self.max_label_prompts,
                                                     what="label names")  # [M, D]
        groups = None
        if len(flat) != len(labels):
            groups = torch.tensor([index for index, group in enumerate(names) for _ in group], dtype=torch.int64,
                                  device=self.device)
        return LabelSet(labels, descriptions, torch.tensor(thresholds, dtype=torch.float32, device=self.device),
                        label_embeddings, name_groups=groups, has_thresholds=any(value > 0 for value in thresholds))

    def bank_descriptions(self, labels: Sequence[str], descriptions: Sequence[Sequence[str]]) -> List[List[str]]:
        """``descriptions`` (checked, one list per label) with the prompt bank's descriptions
        (at most ``limits.max_descriptions``) for each label given none, when attribute prompts are on;
        given descriptions always win."""
        if self.prompt_bank is None:
            return [list(given) for given in descriptions]
        return [list(given) if given else self.prompt_bank.descriptions(label, self.limits.max_descriptions)
                for label, given in zip(labels, descriptions)]

    def use_labels(self, label_set: Optional[LabelSet]) -> int:
        """Swap in a prepared label set (None: no labels, segmentation pauses) under the next
        generation number, which it returns; frames segmented from now on use it."""
        with self._generation_lock:
            generation = next(self._generations)
            self.label_set = None if label_set is None else replace(label_set, generation=generation)
        return generation

    # ---------------------------------------------------------------- segment
    @torch.inference_mode()
    def segment(self, images, return_confidences: bool = True, output_size: Optional[tuple] = None,
                return_embeddings: bool = False) -> Union[SegmentationResult, List[SegmentationResult]]:
        """Segment an RGB uint8 HxWx3 image (or a batch: BxHxWx3 array or list of images).

        Returns one SegmentationResult, or a list for a batch. ``output_size`` (H, W)
        overrides the config's output size; the default is each image's own size.
        ``return_embeddings`` adds the normalized pixel embeddings (float16, on the host).
        """
        label_set = self.label_set
        if label_set is None:
            raise RuntimeError("no labels set; call set_labels([...]) first")
        rgb_images, is_batch = split_batch(images)
        if is_batch and len({image.shape for image in rgb_images}) > 1:
            results = [self.segment(image, return_confidences, output_size, return_embeddings)
                       for image in rgb_images]
            return results
        results = self._segment(rgb_images, label_set, return_confidences, output_size, return_embeddings)
        return results if is_batch else results[0]

    def _segment(self, rgb_images: List[np.ndarray], label_set: LabelSet, return_confidences: bool,
                 output_size: Optional[tuple], return_embeddings: bool) -> List[SegmentationResult]:
        """Results of same-size RGB uint8 images with ``label_set``: the frame path. On CUDA the
        frames go to the device once (pinned, asynchronous), everything runs there, and the
        masks come back in one copy; nothing waits for the device before that copy unless
        stage_timings is "sync"."""
        timings: Dict[str, float] = {}
        clock = _StageClock(self.device, timings, self.config.stage_timings)

        height, width = rgb_images[0].shape[:2]
        model_input = self.model_input(rgb_images)  # [B, 3, h, w]
        clock.lap("preprocess")

        window, stride = self.backend_window(model_input)
        embeddings = None
        if window:
            # the references' sliding window: per-window logits at window size, averaged
            logits = self.sliding_window_logits(model_input, label_set.label_embeddings, window, stride,
                                                embeddings_out=[] if return_embeddings else None)
            if return_embeddings:
                logits, embeddings = logits
            clock.lap("backbone")  # backbone and classification, window by window
            timings["classify"] = 0.0
        else:
            pixel_embeddings = self.image_forward(model_input)  # [B, D, h', w'] (or a label head's features)
            clock.lap("backbone")
            logits = self.classify(pixel_embeddings, label_set.label_embeddings, model_input)  # [B, N, h', w']
            if return_embeddings:
                embeddings = self.backend.pixel_embeddings(pixel_embeddings)
            clock.lap("classify")
        if embeddings is not None:  # [B, h', w', D] float16 on the host, normalized as classify does
            embeddings = F.normalize(embeddings.float(), dim=1).permute(0, 2, 3, 1).half().cpu().numpy()

        out_size = tuple(output_size or (self.config.output_height or height, self.config.output_width or width))
        if self.config.input_resize == "mmseg":
            # the papers' segmentors resize logits to the model input first, then to the output
            logits = self.resize_logits(logits, model_input.shape[-2:], model_input)
        post = self.config.postprocess
        if post.pamr_iters > 0 and post.pamr_on == "output_logits":
            logits = self.output_pamr(logits, model_input, out_size)
        pre_scale = self.logits_pre_scale(logits, model_input)
        finished = [self._finish(image_logits, label_set, out_size, return_confidences, pre_scale)
                    for image_logits in logits]
        masks = torch.stack([mask for mask, _ in finished]).cpu().numpy()  # the one copy of the masks
        if masks.dtype != np.uint8:
            masks = masks.astype(np.uint16)
        clock.lap("postprocess")
        clock.finish()
        results = []
        for index, (_, result) in enumerate(finished):
            result.mask = masks[index]
            result.timings = dict(timings)
            if embeddings is not None:
                result.embeddings = embeddings[index]
                result.embedding_scale = (width / embeddings.shape[2], height / embeddings.shape[1])
            results.append(result)
        return results

    def model_input(self, rgb_images: Sequence[np.ndarray]) -> torch.Tensor:
        """Normalized model input [B, 3, h, w] of same-size RGB uint8 images, sized and resampled
        as ``input_resize`` says (see :mod:`lseg_ros.preprocess`)."""
        height, width = rgb_images[0].shape[:2]
        config = self.config
        if config.input_resize == "mmseg":
            size = mmseg_input_size(height, width, config.short_side, config.max_long_side)
            return to_model_input(rgb_images, size, self.backend.image_mean, self.backend.image_std,
                                  self.device, self.dtype, antialias=False, eight_bit=True, staging=self._staging,
                                  memory_format=self.memory_format)
        fixed = self.backend.fixed_input
        size = (fixed, fixed) if fixed else model_input_size(height, width, config.short_side, config.max_long_side,
                                                             self.backend.input_multiple)
        return to_model_input(rgb_images, size, self.backend.image_mean, self.backend.image_std,
                              self.device, self.dtype, staging=self._staging, memory_format=self.memory_format)

    def output_pamr(self, logits: torch.Tensor, model_input: torch.Tensor, out_size: tuple) -> torch.Tensor:
        """NACLIP's PAMR: logits [B, N, H, W] resized to ``out_size``, refined there with the
        model input resized to it (bilinear) as the guide; PAMR is linear in the logits, so
        the temperature may be applied before or after."""
        logits = self.resize_logits(logits, out_size, model_input)
        guide = F.interpolate(model_input.float(), size=out_size, mode="bilinear", align_corners=False)
        post = self.config.postprocess
        return pamr(guide, logits, post.pamr_iters, post.pamr_dilations)

    def logits_pre_scale(self, logits: torch.Tensor, model_input: torch.Tensor) -> int:
        """The backend's own upsample factor still to apply to ``classify`` logits (1 once they
        are at the model-input resolution, as after PAMR)."""
        if tuple(logits.shape[-2:]) == tuple(model_input.shape[-2:]):
            return 1
        return self.backend.logits_upsample

    def resize_logits(self, logits: torch.Tensor, size, model_input: torch.Tensor) -> torch.Tensor:
        """``classify`` logits [B, N, h, w] at ``size`` as the backend's reference code resizes
        them: its own final upsample (LSeg: x2 bilinear, align_corners=True), then bilinear."""
        return resize_logits(logits, tuple(size), self.logits_pre_scale(logits, model_input))

    def backend_window(self, model_input: torch.Tensor) -> tuple:
        """(window, stride) in model-input pixels when the backend's sliding window is to be
        merged as label logits (dense_clip.window_merge "logits") and the input exceeds it;
        (0, 0) otherwise (no window, or the backend averages embeddings itself)."""
        window = int(self.backend.window)
        if not window or self.backend.window_merge != "logits":
            return 0, 0
        height, width = model_input.shape[-2:]
        if height <= window and width <= window:
            return 0, 0
        return window, int(self.backend.stride)

    def sliding_window_logits(self, model_input: torch.Tensor, label_embeddings: torch.Tensor,
                              window: int, stride: int, embeddings_out: Optional[list] = None):
        """Logits [B, N, H, W] at the model-input size, as NACLIP's, SCLIP's and ClearCLIP's
        ``forward_slide``: each window (``window`` pixels, ``stride`` apart, the last one
        flush with the border; a side shorter than the window is taken whole) is classified
        on its own, its logits resized to the window, summed where windows overlap and divided
        by the count. PAMR, when configured, runs once on the merged logits.

        With ``embeddings_out`` (a list) it returns (logits, embeddings): the windows' pixel
        embeddings averaged where they overlap on the whole input's patch grid (each window
        normalized first), [B, D, H / p, W / p]."""
        batch, _, height, width = model_input.shape
        window_h, window_w = min(window, height), min(window, width)
        total = torch.zeros((batch, label_embeddings.shape[0], height, width), device=model_input.device)
        count = torch.zeros((1, 1, height, width), device=model_input.device)
        grid_sum = grid_count = None
        for top in window_starts(height, window_h, stride):
            for left in window_starts(width, window_w, stride):
                crop = model_input[..., top:top + window_h, left:left + window_w]
                embeddings = self.window_forward(crop)
                if embeddings_out is not None:
                    grid_sum, grid_count = _add_window_embeddings(grid_sum, grid_count,
                                                                  self.backend.pixel_embeddings(embeddings), top, left,
                                                                  height, width, window_h, window_w)
                with torch.autocast(device_type=crop.device.type, enabled=False):
                    logits = self._cosine_logits(embeddings, label_embeddings)
                total[..., top:top + window_h, left:left + window_w] += self.resize_logits(logits, (window_h, window_w),
                                                                                         crop)
                count[..., top:top + window_h, left:left + window_w] += 1
        logits = total / count
        with torch.autocast(device_type=model_input.device.type, enabled=False):
            logits = self._pamr(logits, model_input)
        if embeddings_out is None:
            return logits
        return logits, grid_sum / grid_count.clamp_min(1)

    def input_logits(self, model_input: torch.Tensor, label_embeddings: Optional[torch.Tensor] = None,
                     window: int = 0, stride: int = 0) -> torch.Tensor:
        """Label logits [B, N, H, W] at the size of ``model_input`` [B, 3, H, W], through the
        image side as the frame path runs it (``image_forward``: compiled, exported or quantized
        as configured) and ``classify``: the backend's own sliding window when it merges logits;
        with ``window`` > 0 and a larger input, that window instead (``stride`` default 2/3 of
        it), as the references' evaluations slide it. The active labels unless
        ``label_embeddings`` [N, D] are given. Evaluation and training take their logits here."""
        if label_embeddings is None:
            label_embeddings = self.label_set.label_embeddings
        height, width = model_input.shape[-2:]
        if window > 0 and (height > window or width > window):
            multiple = self.backend.input_multiple
            if window % multiple:
                raise ValueError(f"window {window} must be a multiple of the backend's input multiple {multiple}")
            return self.sliding_window_logits(model_input, label_embeddings, window, stride or window * 2 // 3)
        backend_window, backend_stride = self.backend_window(model_input)
        if backend_window:
            return self.sliding_window_logits(model_input, label_embeddings, backend_window, backend_stride)
        logits = self.classify(self.image_forward(model_input), label_embeddings, model_input)
        return self.resize_logits(logits, (height, width), model_input)

    def classify(self, pixel_embeddings: torch.Tensor, label_embeddings: torch.Tensor,
                 model_input: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits [B, N, h, w] = logit_scale * cosine(pixel embedding, label embedding), float32
        (also under autocast, as in training), at the backend's resolution (at the model-input
        resolution after PAMR)."""
        with torch.autocast(device_type=pixel_embeddings.device.type, enabled=False):
            return self._classify(pixel_embeddings, label_embeddings, model_input)

    def _classify(self, pixel_embeddings, label_embeddings, model_input):
        logits = self._cosine_logits(pixel_embeddings, label_embeddings)
        return self._pamr(logits, model_input) if model_input is not None else logits

    def _cosine_logits(self, pixel_embeddings, label_embeddings):
        """[B, N, h, w] scaled cosine logits (clustered, refined by the backend) at its resolution;
        a ``label_head`` backend's own logits (scaled) for its features."""
        if self.backend.label_head:
            return self.backend.label_logits(pixel_embeddings, label_embeddings) * self.logit_scale
        pixel_embeddings = F.normalize(pixel_embeddings.float(), dim=1)  # [B, D, h, w]
        post = self.config.postprocess
        if post.cluster_k > 0:
            pixel_embeddings = cluster_pixel_embeddings(pixel_embeddings, post.cluster_k, post.cluster_iters)
        logits = torch.einsum("bdhw,nd->bnhw", pixel_embeddings, label_embeddings) * self.logit_scale
        return self.backend.refine_logits(logits)

    def _pamr(self, logits, model_input):
        """PAMR at model-input resolution, guided by the (normalized) input image (when configured)."""
        post = self.config.postprocess
        if post.pamr_iters <= 0 or post.pamr_on != "input_probabilities":
            return logits
        logits = self.resize_logits(logits, model_input.shape[-2:], model_input)
        probabilities = pamr(model_input.float(), logits.softmax(1), post.pamr_iters, post.pamr_dilations)
        return probabilities.clamp_min(1e-8).log()  # [B, N, H, W] at model-input size

    def _finish(self, logits: torch.Tensor, label_set: LabelSet, out_size: tuple,
                return_confidences: bool, pre_scale: int = 1) -> tuple:
        """(mask [H, W] on the device, result without its mask) of one image's logits [N, h, w]
        at ``out_size``, within the config's memory budget (see :mod:`lseg_ros.label_maps`)."""
        unknown = self.config.unknown_value
        mask_dtype = torch.uint8 if max(unknown, len(label_set.names) - 1) <= 255 else torch.int32
        thresholds = label_set.thresholds if label_set.has_thresholds else None
        below = self.config.threshold_label
        rules = LabelRules(len(label_set.names), label_set.name_groups, thresholds,
                           below if below >= 0 else unknown, self.config.area_threshold, below)
        plan = plan_outputs(len(label_set.names), tuple(logits.shape[-2:]), out_size,
                            self.config.memory_budget_mb * 1024 * 1024, self.config.confidence_scale)
        confidence_dtype = torch.float16 if self.config.confidence_dtype == "float16" else torch.float32
        mask, confidences = classify_bands(logits, plan, rules, mask_dtype, return_confidences, pre_scale,
                                           confidence_dtype)
        return mask, SegmentationResult(None, confidences, list(label_set.names), unknown,
                                        generation=label_set.generation,
                                        confidence_scale=plan.confidence_scale if return_confidences else 1.0)


def _add_window_embeddings(grid_sum, grid_count, embeddings, top, left, height, width, window_h, window_w):
    """Add one window's normalized embeddings [B, D, gh, gw] to the whole input's grid sums;
    the grid has the window's cell size (window_h / gh input pixels per cell)."""
    batch, dim, gh, gw = embeddings.shape
    cell_h, cell_w = window_h / gh, window_w / gw
    if grid_sum is None:
        grid_sum = embeddings.new_zeros((batch, dim, int(height // cell_h), int(width // cell_w)), dtype=torch.float32)
        grid_count = embeddings.new_zeros((1, 1) + grid_sum.shape[-2:], dtype=torch.float32)
    gy = min(int(round(top / cell_h)), grid_sum.shape[-2] - gh)
    gx = min(int(round(left / cell_w)), grid_sum.shape[-1] - gw)
    grid_sum[..., gy:gy + gh, gx:gx + gw] += F.normalize(embeddings.float(), dim=1)
    grid_count[..., gy:gy + gh, gx:gx + gw] += 1
    return grid_sum, grid_count


class _StageClock:
    """Time per pipeline stage, as ``mode`` (config stage_timings) says: "sync" synchronizes
    CUDA after each stage (wall time, each stage charged its own work); "events" records a
    CUDA event per stage and reads them in :meth:`finish`, after the results' copy to the
    host has synchronized anyway (on the CPU, wall time); "off" keeps the total only."""

    def __init__(self, device: torch.device, timings: Dict[str, float], mode: str = "events") -> None:
        self.cuda = device.type == "cuda"
        self.mode = mode
        self.timings = timings
        self.start = self.last = time.perf_counter()
        self.events: List[tuple] = []
        if self.cuda and mode == "events":
            self.events.append(("", _record_event(device)))
        self.device = device

    def lap(self, stage: str) -> None:
        if self.mode == "off":
            return
        if self.cuda and self.mode == "events":
            self.events.append((stage, _record_event(self.device)))
            return
        if self.cuda:
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.timings[stage] = now - self.last
        self.last = now

    def finish(self) -> None:
        """Read the events (their work is done: call after a synchronizing copy) and the total."""
        for (_, before), (stage, after) in zip(self.events, self.events[1:]):
            after.synchronize()
            self.timings[stage] = before.elapsed_time(after) / 1000.0
        self.timings["total"] = time.perf_counter() - self.start


def _record_event(device: torch.device):
    event = torch.cuda.Event(enable_timing=True)
    event.record(torch.cuda.current_stream(device))
    return event
