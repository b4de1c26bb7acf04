"""The embedded default model: a small Llama-style causal LM built from a config.

No weights are downloaded. ``tiny_model`` builds a sub-million-parameter model whose vocabulary
matches the tokenizer trained on the environments' text; any Hugging Face path can replace it.

Why Llama and not Qwen2: a policy folder holds the model and its tokenizer side by side, and
transformers' ``AutoTokenizer`` overrides the saved tokenizer class for ``qwen2`` configs with
Qwen2's own pre-tokenizer (it splits " 3" into two tokens), so a reloaded Qwen2 policy would
encode text differently from the tokenizer it was trained with. ``llama`` has no such override.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LlamaConfig, LlamaForCausalLM


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of the default model."""

    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 384
    max_positions: int = 1024


def tiny_model(vocab_size: int, pad_id: int, eos_id: int, cfg: TinyModelConfig) -> LlamaForCausalLM:
    config = LlamaConfig(
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
    return LlamaForCausalLM(config)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
