"""A tiny policy warm-started on expert demonstrations, for benchmarks and quick experiments.

``branchgym train`` runs the full recipe; benchmarks only need a policy whose paths look like a
trained agent's (multi-turn, peaked where the task is clear), made in a minute from nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import torch
from transformers import PreTrainedModel

from branchgym import envs
from branchgym.agents.hf import HFPolicy
from branchgym.agents.learner import Learner, LearnerConfig
from branchgym.agents.protocol import TurnCodec
from branchgym.config import SFTConfig, TrainConfig
from branchgym.demos import expert_demos
from branchgym.envs.wrappers import RestateInstruction
from branchgym.tasks.suite import task_refs
from branchgym.train import build_policy_model, sft_lr

BENCH_ENVS = {  # name: (env id, its kwargs, restate the instruction every turn)
    "household": ("branchgym/Household-v0", {"max_receptacles": 8}, True),
    "searchqa": ("branchgym/SearchQA-v0", {}, False),
}


@dataclass
class WarmStart:
    make_env: Callable[[], gym.Env]
    model: PreTrainedModel
    tokenizer: object
    codec: TurnCodec
    policy: HFPolicy


def warm_start(
    env_id: str, env_kwargs: dict, restate: bool, demos: int, steps: int, seed: int
) -> WarmStart:
    """The embedded tiny model after ``steps`` SFT steps (batch 16) on ``demos`` expert episodes."""

    def make_env() -> gym.Env:
        env = envs.make(env_id, **env_kwargs)
        return RestateInstruction(env) if restate else env

    torch.manual_seed(seed)
    model, tok = build_policy_model(TrainConfig(env_id=env_id, seed=seed), make_env)
    codec = TurnCodec(tok)
    samples = expert_demos(make_env, task_refs(env_id, "train", demos), codec, 0.5, seed)
    learner = Learner(model, tok.pad_token_id, LearnerConfig())
    rng = random.Random(seed)
    for step in range(steps):
        learner.set_lr(sft_lr(SFTConfig.lr, step, steps))
        learner.sft_step(rng.sample(samples, 16))
    return WarmStart(make_env, model, tok, codec, HFPolicy(model, tok, tok.pad_token_id, seed=seed))
