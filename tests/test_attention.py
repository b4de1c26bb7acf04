"""Sampling attention: masked grouped-query SDPA without copying heads, same numbers."""

from __future__ import annotations

import pytest
import torch
from transformers import AttentionInterface

from branchgym.agents import attention
from branchgym.agents.model import TinyModelConfig, tiny_model


@pytest.fixture
def model():
    torch.manual_seed(0)
    return tiny_model(300, 0, 1, TinyModelConfig())  # 4 query heads, 2 key/value heads


def test_masked_gqa_matches_transformers_sdpa_and_is_restored(model, monkeypatch):
    calls = []
    monkeypatch.setitem(
        AttentionInterface._global_mapping,
        attention.NAME,
        lambda *a, **k: calls.append(1) or attention.gqa_sdpa(*a, **k),
    )
    ids = torch.randint(2, 300, (3, 20))
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # left padding
    mask[1, 7] = 0  # a hole, as a branch leaves in its parent's row
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask).logits
        with attention.gqa_attention(model):
            got = model(input_ids=ids, attention_mask=mask).logits
    assert calls  # the replacement ran ...
    assert model.config._attn_implementation == "sdpa"  # ... and is gone after the block
    torch.testing.assert_close(got[mask.bool()], want[mask.bool()], atol=1e-5, rtol=0)


def test_other_attention_implementations_are_left_alone(model):
    model.config._attn_implementation = "eager"
    with attention.gqa_attention(model):
        assert model.config._attn_implementation == "eager"
