"""The embedded default model: a small Qwen2-style causal LM built from a config.

No weights are downloaded. ``tiny_model`` builds a few-million-parameter model whose vocabulary
matches the tokenizer trained on the environments' text; any Hugging Face path can replace it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of the default model."""

    hidden_size: int = 256
    layers: int = 3
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 768
    max_positions: int = 1024


def tiny_model(vocab_size: int, pad_id: int, eos_id: int, cfg: TinyModelConfig) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=True,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=None,
    )
    return Qwen2ForCausalLM(config)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
