"""The branching rules of ARPO and AEPO, as small pure functions and their typed configs.

The rollout manager asks two questions of these rules. *How many full samples first?* GRPO and
ARPO fix it; AEPO derives it from entropy pre-monitoring (``aepo_global_samples``). *Branch
here?* After every tool result the manager measures the mean entropy of the first ``k`` tokens
the policy generates after it, compares it with the path's own baseline (the first ``k`` tokens
of its first turn, measured in the same rollout: never carried across steps, never keyed by
batch slot), and turns the rise into a branch probability (``arpo_probability`` /
``aepo_probability``), which ``decide`` turns into a yes or no.

*When are branch slots granted?* ``schedule="online"`` grants them as decisions come in, turn
by turn, as the released ARPO code does; since the first tool results come first, the budget
is spent within a turn or two of the prompt and branches share little. ``"deferred"`` (the
default) lets a tree's full samples finish, keeping every yes-decision as a candidate with its
environment snapshot, then grants the slots to the strongest candidates over the whole tree,
wherever they sit along the paths: early spending is one of the released code's defects.

The formulas, and where branchgym departs from the authors' released code, are in the
README's "Branching rollouts (ARPO and AEPO)" section; every function here has a
hand-computed test in ``tests/test_branching.py``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Rule = Literal["threshold", "sample"]
PreMonitor = Literal["probe", "history"]
Schedule = Literal["deferred", "online"]


@dataclass(frozen=True)
class ARPOConfig:
    """ARPO's entropy-based adaptive rollout (defaults from the authors' scripts)."""

    budget: int = 16  # M: trajectories per task, full samples and branches together
    initial: int = 8  # N: full samples; M - N slots are left for branches
    k: int = 20  # tokens whose mean entropy is compared
    alpha: float = 0.5
    beta: float = 0.2
    tau: float = 0.5  # the paper's threshold, used when rule == "threshold"
    rule: Rule = "threshold"  # "sample": branch with probability clip(P, 0, 1), as the code does
    branches: int = 1  # Z: new paths per branch decision; the parent continues too
    normalize: bool = True  # divide the entropy rise by log|V|, so the rule is scale-free
    schedule: Schedule = "deferred"  # when slots are granted: see the module docstring


@dataclass(frozen=True)
class AEPOConfig:
    """AEPO's entropy-balanced rollout: pre-monitored budget split and a streak penalty."""

    budget: int = 16  # k in the paper: trajectories per task
    k: int = 20
    alpha: float = 0.5
    gamma: float = 0.2  # weight of the entropy rise in the branch probability
    split_beta: float = 0.5  # beta of m = k * sigmoid(beta * (H_root - H_tool))
    tau: float = 0.5
    rule: Rule = "threshold"
    branches: int = 1
    penalty: float = 0.05  # P(l) = min(1, penalty * l), l consecutive branches on this path
    pre_monitor: PreMonitor = "probe"  # "history": last step's statistics for the same task
    keep_probe: bool = True  # the probe is a full sample: keep it (the released code drops it)
    normalize: bool = True
    schedule: Schedule = "deferred"


def head_entropy(entropies: Sequence[float], k: int) -> float:
    """Mean entropy of the first ``k`` tokens (all of them when fewer were generated)."""
    head = entropies[:k]
    return sum(head) / len(head) if head else 0.0


def tail_entropy(entropies: Sequence[float], k: int) -> float:
    """Mean entropy of the last ``k`` tokens: the turn just before a tool result."""
    tail = entropies[-k:] if k else ()
    return sum(tail) / len(tail) if tail else 0.0


def entropy_rise(h_t: float, h_init: float, vocab_size: int | None) -> float:
    """``dH = H_t - H_init``, divided by ``log|V|`` when the vocabulary size is given."""
    rise = h_t - h_init
    return rise / math.log(vocab_size) if vocab_size and vocab_size > 1 else rise


def arpo_probability(rise: float, alpha: float, beta: float) -> float:
    """ARPO: ``P_t = alpha + beta * dH_t``."""
    return alpha + beta * rise


def aepo_probability(rise: float, alpha: float, gamma: float, streak: int, penalty: float):
    """AEPO: ``(alpha + gamma * dH_t) * (1 - min(1, penalty * l))``, l counted on this path."""
    return (alpha + gamma * rise) * (1.0 - min(1.0, penalty * streak))


def decide(probability: float, rule: Rule, tau: float, rng: random.Random) -> bool:
    """Branch or not: ``P > tau`` (the paper) or a coin with ``clip(P, 0, 1)`` (the code)."""
    if rule == "threshold":
        return probability > tau
    return rng.random() < min(1.0, max(0.0, probability))


def aepo_global_samples(budget: int, h_root: float, h_tool: float, beta: float) -> int:
    """``m = clamp(round(k * sigmoid(beta * (H_root - H_tool))), 1, k)`` full samples.

    High entropy after tool results (``H_tool > H_root``) shifts the budget to branches.
    """
    share = 1.0 / (1.0 + math.exp(-beta * (h_root - h_tool)))
    return min(budget, max(1, round(budget * share)))
