"""Log-probs and full-vocabulary entropies under the current weights: the learner's side.

The output head runs a chunk of positions at a time (under activation checkpointing when
gradients are on), so no [tokens x vocab] float32 tensor is ever built whole; at Qwen's
151,936-token vocabulary that tensor alone would be 2.4 GB for 4,096 tokens. ``HFPolicy.score``
and the learner both read log-probs from here, padded (``sequence_logprobs``) or packed
(``packed_logprobs``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel

from branchgym.agents.lora import decoder
from branchgym.agents.packing import PackedBatch, unpack


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists into ``ids`` and ``mask`` tensors of shape [B, max_len]."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


HEAD_CHUNK = 256  # positions per output-head slice: at Qwen's 151,936 vocabulary, 13% of the
# unchunked peak memory with the backward pass (``branchgym bench learner``); 1,024 was 30%


ChunkStats = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def chunk_stats(
    head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, temperature: float
):
    logp_all = torch.log_softmax(head(hidden).float() / temperature, dim=-1)
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    ent = -(logp_all.exp() * logp_all).sum(-1)
    return logp, ent


def sequence_logprobs(
    model: PreTrainedModel,
    ids: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
    chunk: int = HEAD_CHUNK,
    stats: ChunkStats | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of token t+1 given tokens <= t, and the entropy there: two [B, T-1] tensors.

    ``temperature`` divides the logits first, so an RL update scores tokens under the very
    distribution they were sampled from (``HFPolicy`` samples from ``softmax(logits / T)``);
    otherwise the PPO ratio of an on-policy sample would not start at 1.

    The output head runs on ``chunk`` positions at a time, under activation checkpointing
    when gradients are on, so peak memory grows with ``chunk * vocab``, not ``T * vocab``.
    """
    lm = decoder(model)  # through LoRA adapters, if any
    out = lm.base_model(input_ids=ids, attention_mask=mask, use_cache=False)
    hidden = out.last_hidden_state[:, :-1]
    head = lm.get_output_embeddings()
    return head_logprobs(head, hidden, ids[:, 1:], temperature, chunk, stats)


def packed_logprobs(
    model: PreTrainedModel,
    packed: PackedBatch,
    temperature: float = 1.0,
    chunk: int = HEAD_CHUNK,
    stats: ChunkStats | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``sequence_logprobs`` of packed sequences, back in the padded ``[B, max_len - 1]``
    layout (see ``packing``). No attention mask is passed: transformers reads the sequence
    boundaries from the restarting position ids."""
    lm = decoder(model)
    out = lm.base_model(input_ids=packed.ids, position_ids=packed.position_ids, use_cache=False)
    hidden = out.last_hidden_state[:, :-1]
    head = lm.get_output_embeddings()
    logp, ent = head_logprobs(head, hidden, packed.ids[:, 1:], temperature, chunk, stats)
    return unpack(logp, packed), unpack(ent, packed)


def head_logprobs(
    head: torch.nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    chunk: int = HEAD_CHUNK,
    stats: ChunkStats | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of ``targets`` and entropies from final hidden states, ``chunk`` positions
    at a time: only a ``[B, chunk, vocab]`` slice of logits exists at once, and under
    gradients each slice is recomputed in the backward pass instead of kept.

    ``stats`` replaces ``chunk_stats`` (the learner passes a ``torch.compile``d copy, whose
    fused kernels read each slice of logits about twice instead of about ten times)."""
    stats = stats or chunk_stats
    parts = []
    for start in range(0, hidden.shape[1], chunk):
        h, t = hidden[:, start : start + chunk], targets[:, start : start + chunk]
        if torch.is_grad_enabled():
            parts.append(checkpoint(stats, head, h, t, temperature, use_reentrant=False))
        else:
            parts.append(stats(head, h, t, temperature))
    logp = torch.cat([p[0] for p in parts], dim=1)
    ent = torch.cat([p[1] for p in parts], dim=1)
    return logp, ent
