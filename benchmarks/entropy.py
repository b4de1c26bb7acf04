"""How far the top-k entropy estimate is from the exact entropy, on the tiny model.

    branchgym bench entropy

vLLM and OpenAI-compatible servers return only the top ``k`` (20) log-probs per token, so the
vLLM and HTTP backends estimate entropy from them (``branchgym.agents.entropy``). This samples
GRPO groups with the warm-started tiny model on Household-v0 and SearchQA-v0, scores every
sampled token's position under the full vocabulary, and compares per position:

- ``exact``: the full-vocabulary entropy (what the HF backend reports);
- ``lower_bound``: the tail charged at the k-th probability;
- ``upper_bound``: the tail spread evenly over the rest of the vocabulary;
- ``midpoint``: the mean of the two bounds, ``topk_entropy``'s estimate when |V| is known;
- ``head_only``: ``-sum p log p`` over the k listed tokens, ignoring the tail.

Keys per environment and estimator: mean absolute error (nats), mean error relative to the
exact entropy where that is above 0.1 nats, the 99th-percentile absolute error, and the
Pearson correlation with the exact entropy (what the branching rules need is the ranking).
Also the mean tail mass the top k leave out.
"""

from __future__ import annotations

import math
from statistics import fmean

import torch

from branchgym.agents.entropy import topk_entropy, topk_entropy_bounds
from branchgym.rollouts.manager import RolloutConfig, RolloutManager
from branchgym.tasks.suite import task_refs
from branchgym.trajectory import flatten
from branchgym.warmstart import BENCH_ENVS as ENVS
from branchgym.warmstart import warm_start


def position_entropies(model, ids: list[int], mask: list[bool], k: int) -> list[tuple]:
    """(exact, estimate, upper, head_only, tail mass, midpoint) at each sampled position."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :-1].float()
    logp = torch.log_softmax(logits, dim=-1)
    vocab = logp.shape[-1]
    out = []
    for pos in (i - 1 for i in range(1, len(ids)) if mask[i]):
        row = logp[pos]
        exact = float(-(row.exp() * row).sum())
        top = row.topk(k).values.tolist()
        low, high = topk_entropy_bounds(top, vocab)
        head = -sum(math.exp(lp) * lp for lp in top)
        tail = max(0.0, 1.0 - sum(math.exp(lp) for lp in top))
        out.append((exact, low, high, head, tail, topk_entropy(top, vocab)))
    return out


def pearson(xs: list[float], ys: list[float]) -> float:
    mx, my = fmean(xs), fmean(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
    sy = math.sqrt(sum((y - my) ** 2 for y in ys))
    return sxy / (sx * sy) if sx and sy else float("nan")


def errors(rows: list[tuple], col: int) -> dict:
    exact = [r[0] for r in rows]
    est = [r[col] for r in rows]
    abs_err = sorted(abs(e - x) for e, x in zip(est, exact, strict=True))
    rel = [abs(e - x) / x for e, x in zip(est, exact, strict=True) if x > 0.1]
    return {
        "mean_abs_error": fmean(abs_err),
        "p99_abs_error": abs_err[int(0.99 * (len(abs_err) - 1))],
        "mean_rel_error": fmean(rel) if rel else float("nan"),
        "correlation": pearson(exact, est),
    }


def bench_env(name: str, tasks: int, samples: int, demos: int, sft_steps: int, k: int, seed):
    env_id, kwargs, restate = ENVS[name]
    warm = warm_start(env_id, kwargs, restate, demos, sft_steps, seed)
    cfg = RolloutConfig(samples_per_task=samples, max_turns=15, seed=seed)
    manager = RolloutManager(warm.make_env, warm.policy, warm.codec, cfg)
    rows: list[tuple] = []
    for group in manager.rollout(task_refs(env_id, "seen", tasks)):
        for traj in group.trajectories:
            ids, _, mask = flatten(group, traj)
            rows += position_entropies(warm.model, ids, mask, k)
    return {
        "env": env_id,
        "vocab_size": warm.model.config.vocab_size,
        "positions": len(rows),
        "mean_exact_entropy": fmean(r[0] for r in rows),
        "mean_tail_mass": fmean(r[4] for r in rows),
        "lower_bound": errors(rows, 1),
        "upper_bound": errors(rows, 2),
        "midpoint": errors(rows, 5),
        "head_only": errors(rows, 3),
    }


def main(
    tasks: int = 16,
    samples: int = 8,
    demos: int = 600,
    sft_steps: int = 150,
    k: int = 20,
    seed: int = 0,
) -> dict:
    torch.set_num_threads(1)
    results = {name: bench_env(name, tasks, samples, demos, sft_steps, k, seed) for name in ENVS}
    config = {"tasks": tasks, "samples": samples, "demos": demos, "sft_steps": sft_steps, "k": k}
    return {"benchmark": "entropy", "config": {**config, "seed": seed}, **results}
