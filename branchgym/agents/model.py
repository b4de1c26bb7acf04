"""The embedded default model: a small Llama-style causal LM built from a config.

No weights are downloaded. ``tiny_model`` builds a sub-million-parameter model whose vocabulary
matches the tokenizer trained on the environments' text; ``load_pretrained`` puts any Hugging
Face causal LM folder (or hub id, where a hub can be reached) in its place.

Why Llama and not Qwen2: a policy folder holds the model and its tokenizer side by side, and
transformers' ``AutoTokenizer`` overrides the saved tokenizer class for ``qwen2`` configs with
Qwen2's own pre-tokenizer (it splits " 3" into two tokens), so a reloaded Qwen2 policy would
encode text differently from the tokenizer it was trained with. ``llama`` has no such override.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from branchgym.agents.protocol import TurnFormat
from branchgym.agents.tokenizer import PAD


class ModelLoadError(ValueError):
    """A model path or id could not be loaded as a causal LM with a tokenizer."""


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


def load_pretrained(
    path: str, fmt: TurnFormat | None = None, chat_template: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Any Hugging Face causal LM and its tokenizer, made ready for the turn protocol.

    The protocol's tokens (``<|obs|>``, ``<|act|>``, ``<|end|>``) and a pad token are added as
    special tokens where the tokenizer lacks them, and the embeddings grow to match; a policy
    folder written by ``branchgym train`` already has them and loads unchanged. With
    ``chat_template`` the protocol is the tokenizer's own chat template and nothing is added
    but a pad token.

    Raises:
        ModelLoadError: the path holds no loadable model or tokenizer (the message names it).
    """
    fmt = fmt or TurnFormat()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path)
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"cannot load a causal LM from {path!r}: {first}") from exc
    if chat_template:
        fmt = TurnFormat.from_chat_template(tokenizer)
    vocab = tokenizer.get_vocab()
    missing = [t for t in fmt.special_tokens() if t not in vocab]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD})
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
