"""The learner: SFT on expert demonstrations, PPO steps on rollout groups, loss masks."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest
import torch

import branchgym.envs
from branchgym.agents.hf import HFPolicy
from branchgym.agents.learner import Learner, LearnerConfig, TokenSample, samples_from_groups
from branchgym.demos import expert_demos
from branchgym.rollouts.manager import RolloutConfig, RolloutManager
from branchgym.tasks.suite import task_refs
from branchgym.train import with_advantages
from tests.conftest import build_tiny_lm

ENV_ID = "branchgym/Household-v0"


def make_env():
    return branchgym.envs.make(ENV_ID)


def test_sft_reduces_loss_on_expert_demos(tiny_lm, codec):
    demos = expert_demos(make_env, task_refs(ENV_ID, "train", 4), codec, noise=0.0, seed=0)
    assert all(any(d.mask) and not all(d.mask) for d in demos)
    learner = Learner(tiny_lm, codec.tokenizer.pad_token_id, LearnerConfig(lr=3e-3))
    losses = [learner.sft_step(demos) for _ in range(30)]
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.7 * losses[0]


def test_search_demos_look_elsewhere_and_still_reach_the_goal(codec, tiny_tok):
    # noise=1: every search-phase `go to` becomes a detour, and a detour to a closed
    # receptacle is followed by opening it; the expert's plan then resumes and wins.
    demos = expert_demos(make_env, task_refs(ENV_ID, "train", 20), codec, noise=1.0, seed=0)
    texts = [tiny_tok.decode(list(d.ids)) for d in demos]
    assert all("You pick up" in t for t in texts)
    assert sum(t.count("You arrive at") for t in texts) > sum(
        t.count("You pick up") for t in texts
    ) + len(texts)  # more arrivals than one search stop and one delivery stop per episode
    assert any("is closed.<|act|> open " in t for t in texts)
    for demo in demos:  # every action token is trained, every observation token is not
        acts = [t for t, m in zip(demo.ids, demo.mask, strict=True) if m]
        assert acts.count(codec.stop_id) == sum(1 for t in demo.ids if t == codec.stop_id)


@pytest.fixture
def rollout_groups(tiny_lm, tiny_tok, codec):
    policy = HFPolicy(tiny_lm, tiny_tok, tiny_tok.pad_token_id, seed=0)
    cfg = RolloutConfig(samples_per_task=3, max_turns=2, max_action_tokens=6)
    manager = RolloutManager(make_env, policy, codec, cfg)
    return [with_advantages(g, std_normalize=False) for g in manager.rollout(tasks(2))]


def test_tempered_rollouts_start_the_ratio_at_one(tiny_lm, tiny_tok, codec):
    # Rollouts sampled at T=0.5 record log-probs of softmax(logits / 0.5); the learner must
    # score under the same temperature or an on-policy ratio would not be 1.
    policy = HFPolicy(tiny_lm, tiny_tok, tiny_tok.pad_token_id, seed=0)
    cfg = RolloutConfig(samples_per_task=3, max_turns=2, max_action_tokens=6, temperature=0.5)
    groups = RolloutManager(make_env, policy, codec, cfg).rollout(tasks(2))
    samples = [replace(s, advantage=1.0) for s in samples_from_groups(groups)]
    lcfg = LearnerConfig(minibatch_size=6, micro_batch_size=6)
    metrics = Learner(tiny_lm, tiny_tok.pad_token_id, lcfg, temperature=0.5).rl_step(
        samples, random.Random(0)
    )
    assert metrics["ratio_mean"] == pytest.approx(1.0, abs=1e-3)
    assert abs(metrics["approx_kl"]) < 1e-3
    with pytest.raises(ValueError, match="temperature"):
        Learner(tiny_lm, tiny_tok.pad_token_id, lcfg, temperature=0.0)


def tasks(n):
    return task_refs(ENV_ID, "train", n)


def test_rl_step_runs_and_first_ratio_is_one(rollout_groups, tiny_lm, tiny_tok):
    samples = samples_from_groups(rollout_groups)
    assert len(samples) == 6
    # A random policy never wins, so every advantage is 0; give them signs so the loss pulls.
    samples = [replace(s, advantage=1.0 if i % 2 else -1.0) for i, s in enumerate(samples)]
    learner = Learner(
        tiny_lm, tiny_tok.pad_token_id, LearnerConfig(minibatch_size=6, micro_batch_size=4)
    )
    metrics = learner.rl_step(samples, random.Random(0))
    for key in ("clip_frac", "entropy", "grad_norm", "approx_kl", "ratio_mean", "loss"):
        assert key in metrics and math.isfinite(metrics[key]), key
    # One minibatch, measured before its optimiser step: the learner's log-probs are the very
    # log-probs the rollout recorded, so the ratio is 1 and nothing is clipped.
    assert abs(metrics["approx_kl"]) < 1e-3
    assert metrics["ratio_mean"] == pytest.approx(1.0, abs=1e-3)
    assert metrics["clip_frac"] == 0.0
    assert metrics["grad_norm"] > 0
    assert metrics["entropy"] > 0
    assert learner.version == 1


def test_samples_from_groups_masks_exactly_the_model_tokens(rollout_groups):
    pairs = [(g, t) for g in rollout_groups for t in g.trajectories]
    samples = samples_from_groups(rollout_groups)
    assert len(samples) == len(pairs)
    for (group, traj), sample in zip(pairs, samples, strict=True):
        path = list(group.path(traj))
        assert sample.ids == tuple(i for s in path for i in s.token_ids)
        assert len(sample.ids) == len(sample.old_logprobs) == len(sample.mask)
        assert sample.mask[0] is False
        assert sum(sample.mask) == sum(len(s.token_ids) for s in path if s.kind.value == "model")
        assert sample.advantage == traj.advantage
        for lp, m in zip(sample.old_logprobs, sample.mask, strict=True):
            assert (lp <= 0) if m else (lp == 0.0)


def signed(rollout_groups):
    samples = samples_from_groups(rollout_groups)
    return [replace(s, advantage=1.0 if i % 2 else -1.0) for i, s in enumerate(samples)]


def test_kl_to_the_reference_is_zero_first_and_never_built_at_coefficient_zero(
    rollout_groups, tiny_lm, tiny_tok
):
    cfg = LearnerConfig(minibatch_size=2, micro_batch_size=2, lr=1e-2)
    plain = Learner(tiny_lm, tiny_tok.pad_token_id, cfg)
    plain.rl_step(signed(rollout_groups), random.Random(0))
    assert plain._reference is None  # kl_coef 0: no reference model is ever made
    learner = Learner(tiny_lm, tiny_tok.pad_token_id, replace(cfg, kl_coef=0.1))
    first, *_ = [learner._minibatch(signed(rollout_groups)[i : i + 2]) for i in range(0, 6, 2)]
    assert first["kl_ref"] == pytest.approx(0.0, abs=1e-7)  # the copy is the policy itself
    later = learner.rl_step(signed(rollout_groups), random.Random(0))
    assert later["kl_ref"] > 0  # the policy has moved away from its frozen copy


@pytest.mark.parametrize("penalty", ["clip_cov", "kl_cov"])
def test_covariance_penalties_run_in_the_learner(rollout_groups, tiny_lm, tiny_tok, penalty):
    cfg = LearnerConfig(
        minibatch_size=6,
        micro_batch_size=6,
        cov_penalty=penalty,
        clip_cov_ratio=0.5,
        clip_cov_bounds=(-10.0, 10.0),
        kl_cov_ratio=0.5,
        dual_clip=3.0,
    )
    learner = Learner(tiny_lm, tiny_tok.pad_token_id, cfg)
    metrics = learner.rl_step(signed(rollout_groups), random.Random(0))
    assert all(math.isfinite(v) for v in metrics.values())
    state = learner.state_dict()
    assert torch.equal(state["cov_rng"], learner._cov_generator.get_state())


def test_the_tool_call_bonus_shapes_advantages_not_stored_returns(rollout_groups):
    group = rollout_groups[0]  # a random policy: every return is 0
    calls = [t.tool_calls for t in group.trajectories]
    shaped = with_advantages(group, std_normalize=False, bonus=lambda t: 0.1 * t.tool_calls)
    assert shaped.returns == group.returns
    mean = sum(0.1 * c for c in calls) / len(calls)
    for t, c in zip(shaped.trajectories, calls, strict=True):
        assert t.advantage == pytest.approx(0.1 * c - mean)


@pytest.mark.parametrize("algo", ["arpo", "aepo"])
def test_evaluation_samples_independent_episodes_whatever_rl_samples_with(
    algo, tiny_lm, tiny_tok, codec
):
    """A branching sampler in the RL config must not turn each held-out task into a tree."""
    from branchgym.config import EvalConfig, TrainConfig
    from branchgym.train import evaluate_policy

    rollout = RolloutConfig(algo=algo, max_turns=2, max_action_tokens=4)
    cfg = TrainConfig(rollout=rollout, eval=EvalConfig(episodes=6, batch_size=6, greedy=False))
    policy = HFPolicy(tiny_lm, tiny_tok, tiny_tok.pad_token_id, seed=0)
    result = evaluate_policy(make_env, policy, codec, cfg)
    assert result["sampled"].episodes == 6


def test_rl_starts_from_a_fresh_optimiser_so_sft_momentum_moves_nothing(tiny_lm, codec):
    import io

    from rich.console import Console
    from rich.progress import Progress

    from branchgym.config import SFTConfig, TrainConfig
    from branchgym.train import run_sft

    demos = expert_demos(make_env, task_refs(ENV_ID, "train", 4), codec, noise=0.0, seed=0)
    cfg = TrainConfig(sft=replace(SFTConfig(), epochs=2, batch_size=2))
    learner = Learner(tiny_lm, codec.tokenizer.pad_token_id, LearnerConfig())
    with Progress(console=Console(file=io.StringIO())) as bar:
        run_sft(learner, demos, cfg, bar)
    assert not learner.optimizer.state  # SFT's moments are gone
    assert learner.optimizer.param_groups[0]["lr"] == cfg.learner.lr
    before = [p.detach().clone() for p in tiny_lm.parameters()]
    learner.rl_step(demos, random.Random(0))  # every advantage 0: no gradient signal at all
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_lm.parameters(), strict=True))


def _minibatch_grads(tok, samples, cfg: LearnerConfig) -> torch.Tensor:
    """The gradient one ``_minibatch`` accumulates (lr 0, no clipping) on a fresh tiny model."""
    model = build_tiny_lm(tok)
    with torch.no_grad():  # a random model's entropies all sit near log|V|: spread them out
        model.get_output_embeddings().weight.mul_(30.0)
    learner = Learner(model, tok.pad_token_id, replace(cfg, max_grad_norm=1e9))
    learner.set_lr(0.0)
    if cfg.kl_coef:  # a reference that differs from the policy, so the KL term has a gradient
        learner.set_reference(build_tiny_lm(tok, seed=1))
    learner._minibatch(samples)
    return torch.cat([p.grad.flatten() for p in learner.model.parameters() if p.grad is not None])


@pytest.mark.parametrize(
    "aggregation", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
)
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"entropy_advantage": 0.2},
        {"cov_penalty": "kl_cov", "kl_cov_ratio": 0.3},
        {"kl_coef": 0.1},
    ],
    ids=["plain", "aepo-entropy", "kl-cov", "kl-ref"],
)
def test_micro_batches_add_up_to_the_whole_minibatchs_gradient(tiny_tok, aggregation, extra):
    # Sequences of 5 to 40 tokens, model and observation segments, advantages of both signs
    # and sizes. Micro-batches of 6, 2 and 1 must give one gradient: each micro-batch's loss is
    # weighted by its share under the aggregation, and AEPO's z-scores and KL-Cov's tokens
    # come from the whole minibatch.
    rng = random.Random(0)
    samples = []
    for i, n in enumerate((40, 5, 23, 12, 31, 8)):
        mask = tuple(j > 0 and (j // 4) % 2 == 0 for j in range(n))  # 4 model, 4 env tokens
        ids = tuple(rng.randrange(3, len(tiny_tok)) for _ in range(n))
        old = tuple(-rng.uniform(2.0, 8.0) if m else 0.0 for m in mask)
        samples.append(TokenSample(ids, old, mask, advantage=(-1) ** i * (1 + i)))
    grads = [
        _minibatch_grads(
            tiny_tok,
            samples,
            LearnerConfig(
                minibatch_size=6, micro_batch_size=micro, aggregation=aggregation, **extra
            ),
        )
        for micro in (6, 2, 1)
    ]
    assert grads[0].abs().sum() > 0
    for other in grads[1:]:
        torch.testing.assert_close(other, grads[0], atol=1e-6, rtol=1e-4)


def test_replayed_samples_use_spears_replay_clip_cov_settings(tiny_tok, monkeypatch):
    # SPEAR's replay loss picks Clip-Cov tokens with r = 0.02 in (1, 40); on-policy steps use
    # r = 2e-4 in (1, 5). ``rl_step(replay=True)`` is how the SIL step asks for the former.
    import branchgym.agents.learner as learner_module

    seen = []

    def spy(cov, mask, ratio, lb, ub, generator):
        seen.append((ratio, lb, ub))
        return torch.zeros_like(mask, dtype=torch.bool)

    monkeypatch.setattr(learner_module, "clip_cov_mask", spy)
    sample = TokenSample(tuple(range(3, 13)), (0.0,) + (-2.0,) * 9, (False,) + (True,) * 9, 1.0)
    cfg = LearnerConfig(minibatch_size=1, micro_batch_size=1, cov_penalty="clip_cov")
    learner = Learner(build_tiny_lm(tiny_tok), tiny_tok.pad_token_id, cfg)
    learner.rl_step([sample], random.Random(0))
    learner.rl_step([sample], random.Random(0), replay=True)
    assert seen == [(2e-4, 1.0, 5.0), (0.02, 1.0, 40.0)]
