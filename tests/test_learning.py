"""The learning loop learns: GRPO moves a policy toward the rewarded action.

A one-turn environment rewards "look" and not "inventory". A tiny model is first taught to say
either (SFT on both, so it samples each about half the time); a few GRPO steps through the real
rollout manager, advantages and learner must then make "look" clearly more likely.
"""

from __future__ import annotations

import random
import string
from typing import Any

import gymnasium as gym

from branchgym.agents.hf import HFPolicy
from branchgym.agents.learner import Learner, LearnerConfig, TokenSample, samples_from_groups
from branchgym.rollouts.manager import RolloutConfig, RolloutManager
from branchgym.tasks.suite import task_refs
from branchgym.train import with_advantages
from tests.conftest import build_tiny_lm

TEXT = gym.spaces.Text(max_length=256, charset=string.printable)


class SayLook(gym.Env[str, str]):
    """One turn: reward 1 for "look", 0 for anything else."""

    observation_space = TEXT
    action_space = TEXT

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return "Choose: look or inventory.", {"instruction": "say look"}

    def step(self, action: str):
        won = action.strip() == "look"
        return "Done.", float(won), True, False, {"won": won, "valid_action": True}


def share_of_look(manager: RolloutManager, n: int = 64) -> float:
    groups = manager.rollout(task_refs("test/SayLook-v0", "seen", n // 8))
    return sum(t.won for g in groups for t in g.trajectories) / n


def test_grpo_makes_the_rewarded_action_more_likely(tiny_tok, codec):
    model = build_tiny_lm(tiny_tok, seed=0)
    pad = tiny_tok.pad_token_id
    prompt = codec.observation_ids(SayLook().reset()[0])
    demos = []
    for action in ("look", "inventory"):
        ids = prompt + codec.action_ids(action)
        mask = [False] * len(prompt) + [True] * (len(ids) - len(prompt))
        demos.append(TokenSample(tuple(ids), (0.0,) * len(ids), tuple(mask)))
    sft = Learner(model, pad, LearnerConfig(lr=3e-3))
    for _ in range(60):
        sft.sft_step(demos)

    policy = HFPolicy(model, tiny_tok, pad, seed=0)
    cfg = RolloutConfig(samples_per_task=8, max_turns=1, max_action_tokens=6)
    manager = RolloutManager(SayLook, policy, codec, cfg)
    before = share_of_look(manager)
    assert 0.15 < before < 0.85, "SFT should leave both actions likely"

    learner = Learner(model, pad, LearnerConfig(lr=1e-3, minibatch_size=32, micro_batch_size=32))
    rng = random.Random(0)
    for step in range(15):
        tasks = task_refs("test/SayLook-v0", "train", 4, start=4 * step)
        groups = [with_advantages(g, std_normalize=True) for g in manager.rollout(tasks)]
        learner.rl_step(samples_from_groups(groups), rng)
        policy.reset_cache()
    after = share_of_look(manager)
    assert after > before + 0.2, (before, after)
