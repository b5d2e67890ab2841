"""CLIP text encoding trimmed to the tokens that matter.

CLIP's text transformer is causal and pools the end-of-text token (the largest token id).
Tokens after the longest end-of-text position in a batch cannot influence the pooled
features, so encoding only ``[:, :L]`` gives the same embeddings as the full 77-token
forward at a fraction of the cost (prompts are ~10-20 tokens). It takes an open_clip
``CLIP`` or a bare ``TextTransformer`` (ViL-Seg's trainable tower); models that pool
differently fall back to their full forward.
"""
from __future__ import annotations

import functools

import open_clip
import torch
from open_clip.transformer import text_global_pool
from torch import nn


@functools.lru_cache(maxsize=4)
def clip_tokenizer(context_length: int) -> open_clip.tokenizer.SimpleTokenizer:
    """CLIP's BPE tokenizer padding/truncating to ``context_length`` tokens (LSeg's and
    ViL-Seg's text towers), built once per length."""
    return open_clip.tokenizer.SimpleTokenizer(context_length=context_length)


def encode_text_trimmed(clip: nn.Module, token_ids: torch.Tensor) -> torch.Tensor:
    """Text embeddings [N, D] (not normalized) from token ids [N, T], equal to
    ``clip.encode_text(token_ids)`` (a ``TextTransformer``: ``clip(token_ids)``)."""
    pool_type = getattr(clip, "text_pool_type", None) or getattr(clip, "pool_type", None)
    trimmable = (pool_type == "argmax" and getattr(clip, "attn_mask", None) is not None
                 and hasattr(clip, "token_embedding") and hasattr(clip, "ln_final"))
    if not trimmable:
        return clip.encode_text(token_ids) if hasattr(clip, "encode_text") else clip(token_ids)
    length = int(token_ids.argmax(dim=-1).max()) + 1
    token_ids = token_ids[:, :length]  # [N, L]
    cast_dtype = clip.transformer.get_cast_dtype()
    x = clip.token_embedding(token_ids).to(cast_dtype) + clip.positional_embedding[:length].to(cast_dtype)
    x = clip.transformer(x, attn_mask=clip.attn_mask[:length, :length])  # [N, L, C]
    x = text_global_pool(clip.ln_final(x), token_ids, "argmax")  # [N, C]
    if isinstance(x, tuple):  # older open_clip (2.26) returns (pooled, tokens)
        x = x[0]
    projection = clip.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, nn.Linear) else x @ projection  # [N, D]
