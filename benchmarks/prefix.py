"""Continuations from a shared prefix, with and without reusing its KV cache.

    branchgym bench prefix

The branching manager continues every branch from its parent's KV cache. This measures what
that buys on the tiny model: ``branches`` (16) continuations of ``new_tokens`` (32) tokens each
from one ``prefix_tokens`` (512) token prefix, generated in one batch by the HF backend,

- *with reuse*: the prefix is encoded once under a parent session, and each continuation names
  it as ``parent_session`` (what a branch does);
- *without*: a fresh cache, every continuation encodes the whole prefix itself.

``tokens_ratio`` counts the tokens run through the model (reuse over no reuse), and
``wall_ratio`` the wall-clock time, the better of ``repeats`` runs each. Goals: ``tokens_ratio
<= 0.15`` (the prefix is computed once) and ``wall_ratio <= 0.7``.
"""

from __future__ import annotations

import time

import torch

from branchgym.agents.hf import HFPolicy
from branchgym.agents.model import TinyModelConfig, tiny_model
from branchgym.agents.policy import GenerationRequest, SamplingParams

VOCAB, PAD, EOS = 1024, 0, 1


class _Counter:
    """Counts the real (unmasked) and the padded tokens of every forward pass."""

    def __init__(self, policy: HFPolicy) -> None:
        self.real = self.padded = 0
        inner = policy._forward

        def forward(ids, chunk_mask, pos):
            self.real += int(chunk_mask.sum())
            self.padded += ids.numel()
            return inner(ids, chunk_mask, pos)

        policy._forward = forward  # type: ignore[method-assign]


def _run(policy: HFPolicy, prefix: tuple[int, ...], branches: int, new: int, reuse: bool):
    policy.reset_cache()
    params = SamplingParams(max_new_tokens=new, temperature=1.0)
    counter = _Counter(policy)
    start = time.perf_counter()
    if reuse:  # the parent: encodes the prefix, samples one token (the tool call, say)
        policy.generate([GenerationRequest(prefix, SamplingParams(max_new_tokens=1), "root")])
    parent = "root" if reuse else None
    policy.generate([GenerationRequest(prefix, params, f"b{i}", parent) for i in range(branches)])
    wall = time.perf_counter() - start
    policy._forward = type(policy)._forward.__get__(policy)  # type: ignore[method-assign]
    return counter.real, counter.padded, wall


def main(
    prefix_tokens: int = 512,
    branches: int = 16,
    new_tokens: int = 32,
    repeats: int = 5,
    threads: int = 1,
    seed: int = 0,
) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    cfg = TinyModelConfig(max_positions=prefix_tokens + new_tokens + 8)
    model = tiny_model(VOCAB, PAD, EOS, cfg)
    # A tokenizer is only needed to decode text; ids are enough here.
    policy = HFPolicy(model, _IdsTokenizer(), PAD, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    prefix = tuple(torch.randint(2, VOCAB, (prefix_tokens,), generator=gen).tolist())
    runs = {}
    for reuse in (True, False):
        _run(policy, prefix, branches, new_tokens, reuse)  # warm-up
        best = min(
            (_run(policy, prefix, branches, new_tokens, reuse) for _ in range(repeats)),
            key=lambda r: r[2],
        )
        runs[reuse] = best
    (r_real, r_pad, r_wall), (n_real, n_pad, n_wall) = runs[True], runs[False]
    return {
        "benchmark": "prefix",
        "config": {
            "prefix_tokens": prefix_tokens,
            "branches": branches,
            "new_tokens": new_tokens,
            "repeats": repeats,
            "threads": threads,
        },
        "tokens_ratio": r_real / n_real,
        "wall_ratio": r_wall / n_wall,
        "reuse": {"tokens": r_real, "tokens_with_padding": r_pad, "wall_s": r_wall},
        "no_reuse": {"tokens": n_real, "tokens_with_padding": n_pad, "wall_s": n_wall},
        "goals": {
            "tokens_ratio_at_most_0.15": r_real / n_real <= 0.15,
            "wall_ratio_at_most_0.7": r_wall / n_wall <= 0.7,
        },
    }


class _IdsTokenizer:
    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return " ".join(map(str, ids))
