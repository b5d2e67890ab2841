"""Label text -> L2-normalized label embeddings, computed once and cached.

A label is encoded through every template of a template set (embeddings averaged, as in
CLIP's prompt ensembling). Optional descriptions or synonyms of the label (LMSeg-style
enriched prompts, e.g. "a wooden door with a handle") are encoded as written and pooled
with the label's own embedding by mean or element-wise max.

The cache key is (text model, template set, pooling, label, descriptions): a robot that
switches its query from "door" to "chair" and back pays one text forward for "chair"
and none for the return to "door".

Cost is bounded per call: a call encodes (distinct labels) x (templates) + (their
descriptions) prompts, at most ``max_prompts`` (ValueError naming both counts, raised
before any forward); prompts are encoded ``batch_size`` at a time and pooled per group of
at most ``group_prompts``, so peak memory does not grow with the request; the cache holds
at most ``max_cache_entries`` label embeddings (more only while one request needs them).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .prompts import get_templates

CacheKey = Tuple[str, str, str, str, Tuple[str, ...]]


#: most prompts one encode() call may ask for by default (Segmenter.max_label_prompts):
#: 255 labels x (80 templates + 32 descriptions) fit, with a margin
MAX_LABEL_PROMPTS = 32768


class LabelEncoder:
    """Encodes label sets with a backend's text tower and caches label embeddings."""

    def __init__(self, backend, template_set: str = "imagenet", pooling: str = "mean",
                 batch_size: int = 256, max_cache_entries: int = 4096, max_prompts: int = MAX_LABEL_PROMPTS,
                 group_prompts: int = 2048) -> None:
        if pooling not in ("mean", "max"):
            raise ValueError(f"unknown description pooling {pooling!r}; accepted: mean, max")
        self.backend = backend
        self.template_set = template_set
        self.templates = get_templates(template_set)
        self.pooling = pooling
        self.batch_size = batch_size
        self.max_cache_entries = max_cache_entries
        #: most prompts one encode() call may ask for (cached or not: the answer does not
        #: depend on the cache)
        self.max_prompts = max_prompts
        #: prompts encoded and pooled together: bounds the prompt embeddings held at once
        self.group_prompts = group_prompts
        # least recently used entries are dropped first once max_cache_entries is exceeded
        self._cache: "OrderedDict[CacheKey, torch.Tensor]" = OrderedDict()
        #: number of text-encoder forward passes run so far (for tests and diagnostics)
        self.forward_count = 0
        #: checked between forward batches; when it returns True encoding stops (InterruptedError)
        self.should_stop = lambda: False
        # encode() may be called from several threads (the node's label thread and its
        # ~/encode_text service): one at a time, so the cache and forward_count stay consistent
        self._lock = threading.RLock()

    def cache_key(self, label: str, descriptions: Sequence[str] = ()) -> CacheKey:
        return (self.backend.text_model_id, self.template_set, self.pooling, label, tuple(descriptions))

    def is_cached(self, label: str, descriptions: Sequence[str] = ()) -> bool:
        return self.cache_key(label, descriptions) in self._cache

    def prompt_count(self, labels: Sequence[str], descriptions: Optional[Sequence[Sequence[str]]] = None) -> int:
        """Prompts that encoding ``labels`` takes without a cache: distinct (label, descriptions)
        x templates + their descriptions."""
        descriptions = descriptions or [()] * len(labels)
        distinct = dict.fromkeys((label, tuple(desc)) for label, desc in zip(labels, descriptions))
        return sum(len(self.templates) + len(desc) for _, desc in distinct)

    def check_prompt_count(self, labels: Sequence[str], descriptions: Optional[Sequence[Sequence[str]]] = None,
                           limit: Optional[int] = None, what: str = "labels") -> int:
        """The prompt count of a request; ValueError naming it and the limit (``max_prompts``
        unless ``limit``) when it is over."""
        limit = self.max_prompts if limit is None else limit
        count = self.prompt_count(labels, descriptions)
        if count > limit:
            templates = len(self.templates)
            raise ValueError(f"{len(labels)} {what} need {count} text prompts ({templates} template"
                             f"{'s' if templates != 1 else ''} ({self.template_set}) each, descriptions included); "
                             f"at most {limit} are accepted per call: send fewer {what} per call")
        return count

    @torch.inference_mode()
    def encode(self, labels: Sequence[str], descriptions: Optional[Sequence[Sequence[str]]] = None,
               max_prompts: Optional[int] = None, what: str = "labels") -> torch.Tensor:
        """label_embeddings [N, D], float32, L2-normalized, on the backend's device (thread-safe).
        ValueError (before any forward) when the request needs more than ``max_prompts``
        (default: the encoder's) prompts; ``what`` names the request's items in it."""
        self.check_prompt_count(labels, descriptions, max_prompts, what)
        with self._lock:
            return self._encode(labels, descriptions)

    def _encode(self, labels, descriptions):
        descriptions = descriptions or [()] * len(labels)
        if len(descriptions) != len(labels):
            raise ValueError(f"got {len(descriptions)} description lists for {len(labels)} labels")
        keys = [self.cache_key(label, tuple(desc)) for label, desc in zip(labels, descriptions)]
        missing = [key for key in dict.fromkeys(keys) if key not in self._cache]
        if missing:
            self._encode_missing(missing)
        for key in keys:
            self._cache.move_to_end(key)
        label_embeddings = torch.stack([self._cache[key] for key in keys]).to(self.backend.device)
        # evict only after the request is served, never its own entries
        while len(self._cache) > max(self.max_cache_entries, len(set(keys))):
            self._cache.popitem(last=False)
        return label_embeddings

    def _encode_missing(self, keys: List[CacheKey]) -> None:
        # The prompts of a group of missing labels (about group_prompts), in one flat list, are
        # encoded in few forwards and pooled before the next group's are built.
        group: List[CacheKey] = []
        size = 0
        for key in keys:
            group.append(key)
            size += len(self.templates) + len(key[4])
            if size >= self.group_prompts:
                self._encode_group(group)
                group, size = [], 0
        if group:
            self._encode_group(group)

    def _encode_group(self, keys: List[CacheKey]) -> None:
        prompts: List[str] = []
        spans = []
        for _, _, _, label, desc in keys:
            start = len(prompts)
            prompts.extend(template.format(label) for template in self.templates)
            prompts.extend(desc)
            spans.append((start, len(self.templates), len(desc)))
        prompt_embeddings = self._encode_prompts(prompts)  # [P, D]
        for key, (start, n_templates, n_desc) in zip(keys, spans):
            label_embedding = F.normalize(prompt_embeddings[start:start + n_templates].mean(0), dim=-1)
            if n_desc:
                desc = prompt_embeddings[start + n_templates:start + n_templates + n_desc]
                phrases = torch.cat([label_embedding[None], desc], dim=0)  # [1 + n_desc, D]
                pooled = phrases.mean(0) if self.pooling == "mean" else phrases.max(0).values
                label_embedding = F.normalize(pooled, dim=-1)
            self._cache[key] = label_embedding

    def _encode_prompts(self, prompts: List[str]) -> torch.Tensor:
        """Normalized prompt embeddings [P, D], float32."""
        chunks = []
        for start in range(0, len(prompts), self.batch_size):
            if self.should_stop():
                raise InterruptedError("label encoding interrupted (shutting down)")
            token_ids = self.backend.tokenize(prompts[start:start + self.batch_size]).to(self.backend.device)
            self.forward_count += 1
            chunks.append(F.normalize(self.backend.encode_text(token_ids).float(), dim=-1))
        return torch.cat(chunks, dim=0)

    def clear(self) -> None:
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)
