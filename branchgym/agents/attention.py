"""SDPA attention for sampling on a CPU without copying key and value heads.

transformers' SDPA attention passes ``enable_gqa`` to PyTorch only when there is no attention
mask; with one, it first repeats every key and value head of grouped-query attention (a copy of
the whole cache, every layer, every decode step). ``HFPolicy`` nearly always decodes with a
mask: its rows have different lengths, and a branch hides the cached tokens its parent wrote
after the branch point. PyTorch's CPU kernels take a mask and ``enable_gqa`` together, with
identical results (tested), so ``gqa_sdpa`` does that on a CPU: one decode step's attention of
16 rows over 544 cached tokens took 0.33 ms instead of 1.98. Everything else goes to
transformers' own function.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

NAME = "branchgym_sdpa"


def gqa_sdpa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers' ``sdpa_attention_forward``, but a masked grouped-query attention on a CPU
    runs PyTorch's kernel with ``enable_gqa`` instead of repeating the key and value heads."""
    plain = (
        attention_mask is None
        or query.device.type != "cpu"
        or key.shape[1] == query.shape[1]
        or kwargs.get("position_bias") is not None
        or kwargs.get("cache") is not None
    )
    if plain:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    out = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=dropout,
        scale=scaling,
        enable_gqa=True,
    )
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, gqa_sdpa)
AttentionMaskInterface.register(NAME, sdpa_mask)


@contextmanager
def gqa_attention(model) -> Iterator[None]:
    """Run ``model`` with ``gqa_sdpa`` inside the block if it uses SDPA (restored after)."""
    config = model.config
    before = getattr(config, "_attn_implementation", None)
    if before != "sdpa":
        yield
        return
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = before
