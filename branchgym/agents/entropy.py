"""Entropy from the top-k log-probs a server returns, with the tail mass accounted for.

vLLM and OpenAI-compatible servers return at most ~20 log-probs per position, not the whole
distribution. Summing ``-p log p`` over those alone ignores the probability mass ``r = 1 - sum
p_i`` left in the other ``|V| - k`` tokens, and under-estimates the entropy exactly where the
branching rules care: at uncertain positions, where the tail is heavy.

The estimator charges the tail as if it were made of tokens as likely as the k-th one: ``r /
p_k`` tokens of probability ``p_k`` each, contributing ``-r log p_k``. No tail token can be
likelier than ``p_k`` (the list is the top k), so this is the least entropy the tail can hold:
the estimate is a lower bound of the exact entropy, and it is exact when the tail is empty.
The other extreme, the tail spread evenly over the ``|V| - k`` tokens, gives the upper bound
``-r log(r / (|V| - k))`` (``topk_entropy_bounds``). The benchmark ``branchgym bench entropy``
measures the error of both against the exact entropy on the tiny model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def _top(logprobs: Iterable[float]) -> tuple[float, float, float]:
    """(entropy of the listed tokens, tail mass, smallest listed probability)."""
    probs = sorted((math.exp(lp) for lp in logprobs), reverse=True)
    if not probs:
        raise ValueError("the top-k entropy needs at least one log-prob")
    head = -sum(p * math.log(p) for p in probs if p > 0)
    tail = max(0.0, 1.0 - sum(probs))
    return head, tail, probs[-1]


def topk_entropy(logprobs: Iterable[float]) -> float:
    """Estimated entropy (nats) of a distribution known by its top-k log-probs."""
    head, tail, p_k = _top(logprobs)
    if tail <= 0.0 or p_k <= 0.0:
        return head
    return head - tail * math.log(p_k)


def topk_entropy_bounds(logprobs: Iterable[float], vocab_size: int) -> tuple[float, float]:
    """The least and the most entropy a distribution with these top-k log-probs can have."""
    listed = list(logprobs)
    head, tail, p_k = _top(listed)
    rest = vocab_size - len(listed)
    if tail <= 0.0 or rest <= 0:
        return head, head
    low = head - tail * math.log(p_k) if p_k > 0 else head
    return low, head - tail * math.log(tail / rest)
