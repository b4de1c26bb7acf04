"""Multi-turn rollouts on the HF backend, its cache housekeeping on against off.

    branchgym bench rollout-cache

``HFPolicy`` keeps one batched KV cache across turns. Three things keep it tight: compaction
(``compact_at``: a call that starts with more than that share of the cache's width unused by its
longest row gathers every row's tokens to the front), parking (``park_min_rows``: once half of
a batch of at least that many rows has stopped, the stopped rows leave the batch until the call
ends) and split prefills (short suffixes fed apart from long ones where one batch would pad
them by a quarter; off with parking). For Household-v0 and SearchQA-v0 it warm-starts the
tiny model on expert demonstrations, then rolls out the same tasks with GRPO (16 samples) and
ARPO (M=16, N=8), each under both settings in turn, for ``repeats`` rounds. Keys per
environment and sampler:

- ``attention_cells_ratio``: the cells of every attention matrix the model computed (rows x
  query positions x cache columns, summed over forward passes), on over off. Seeded and
  repeatable: the direct measure of the work the holes cost.
- ``row_positions_ratio``: rows x positions run through the model (the MLP's work), on over off.
- ``cpu_ratio`` / ``wall_ratio``: the median over rounds of the rollout's process CPU time and
  wall time, on over off (this machine's timings swing by 20% between identical runs).
- ``tokens_on`` / ``tokens_off``: tokens generated. Every request samples from its own uniform
  draws, so both settings sample the same paths (up to float rounding at a CDF boundary).
"""

from __future__ import annotations

import time
from dataclasses import replace
from statistics import median

import torch

from branchgym.agents.hf import HFPolicy
from branchgym.rollouts.branching import ARPOConfig
from branchgym.rollouts.manager import RolloutConfig, RolloutManager
from branchgym.tasks.suite import task_refs
from branchgym.warmstart import BENCH_ENVS as ENVS
from branchgym.warmstart import warm_start

SETTINGS = {"on": {}, "off": {"compact_at": 1.0, "park_min_rows": 0}}


class WorkCounter:
    """Wraps ``model.forward`` to count the rows x positions and attention cells it computes."""

    def __init__(self, model) -> None:
        self.rows = self.cells = 0
        self._inner = model.forward
        model.forward = self

    def __call__(self, *args, **kwargs):
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        self.rows += ids.shape[0] * ids.shape[1]
        self.cells += ids.shape[0] * ids.shape[1] * mask.shape[1]
        return self._inner(*args, **kwargs)


def _run(warm, cfg: RolloutConfig, refs, setting: dict, counter: WorkCounter) -> dict:
    pad = warm.tokenizer.pad_token_id
    policy = HFPolicy(warm.model, warm.tokenizer, pad, seed=cfg.seed, **setting)
    manager = RolloutManager(warm.make_env, policy, warm.codec, cfg)
    counter.rows = counter.cells = 0
    wall, cpu = time.perf_counter(), time.process_time()
    groups = manager.rollout(refs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    tokens = sum(len(s.token_ids) for g in groups for s in g.segments if s.logprobs)
    return {"rows": counter.rows, "cells": counter.cells, "wall": wall, "cpu": cpu, "tok": tokens}


def bench_env(name: str, tasks: int, demos: int, sft_steps: int, seed: int, repeats: int) -> dict:
    env_id, kwargs, restate = ENVS[name]
    warm = warm_start(env_id, kwargs, restate, demos, sft_steps, seed)
    counter = WorkCounter(warm.model)
    base = RolloutConfig(max_turns=15, seed=seed)
    samplers = {
        "grpo": replace(base, samples_per_task=16),
        "arpo": replace(base, algo="arpo", arpo=ARPOConfig(budget=16, initial=8)),
    }
    refs = task_refs(env_id, "seen", tasks)
    runs: dict[tuple[str, str], list[dict]] = {}
    for _ in range(repeats):
        for sampler, cfg in samplers.items():
            for label, setting in SETTINGS.items():
                runs.setdefault((sampler, label), []).append(
                    _run(warm, cfg, refs, setting, counter)
                )
    out: dict = {"env": env_id}
    for sampler in samplers:
        on, off = runs[(sampler, "on")], runs[(sampler, "off")]
        out[sampler] = {
            "attention_cells_ratio": sum(r["cells"] for r in on) / sum(r["cells"] for r in off),
            "row_positions_ratio": sum(r["rows"] for r in on) / sum(r["rows"] for r in off),
            "cpu_ratio": median(a["cpu"] / b["cpu"] for a, b in zip(on, off, strict=True)),
            "wall_ratio": median(a["wall"] / b["wall"] for a, b in zip(on, off, strict=True)),
            "wall_s_on": median(r["wall"] for r in on),
            "wall_s_off": median(r["wall"] for r in off),
            "tokens_on": sum(r["tok"] for r in on),
            "tokens_off": sum(r["tok"] for r in off),
        }
    return out


def main(
    tasks: int = 16, demos: int = 600, sft_steps: int = 150, seed: int = 0, repeats: int = 3
) -> dict:
    torch.set_num_threads(1)
    config = {"tasks": tasks, "demos": demos, "sft_steps": sft_steps, "repeats": repeats}
    results = {name: bench_env(name, tasks, demos, sft_steps, seed, repeats) for name in ENVS}
    return {"benchmark": "rollout-cache", "config": {**config, "seed": seed}, **results}
