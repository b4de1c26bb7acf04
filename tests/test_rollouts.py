"""RolloutManager: group shape, segment alternation, end reasons and per-path env failures."""

from __future__ import annotations

import itertools
from typing import ClassVar

import gymnasium as gym
import pytest

import branchgym.envs
from branchgym.agents.hf import HFPolicy
from branchgym.agents.policy import Generation, ScriptedPolicy
from branchgym.rollouts.manager import RolloutConfig, RolloutManager
from branchgym.tasks.suite import task_refs
from branchgym.trajectory import EndReason, SegmentKind, flatten

ENV_ID = "branchgym/Household-v0"


def make_env():
    return branchgym.envs.make(ENV_ID)


def tasks(n: int):
    return task_refs(ENV_ID, "train", n)


def say(codec, action: str, logprob: float = -0.5, finish="stop") -> Generation:
    ids = tuple(codec.action_ids(action))
    return Generation(ids, " " + action, (logprob,) * len(ids), (1.0,) * len(ids), finish)


def check_tree(group, cfg: RolloutConfig) -> None:
    """The structural invariants every group must satisfy."""
    root = group.segments[0]
    assert root.kind is SegmentKind.ENV and root.parent_id is None
    assert len(group.trajectories) == cfg.samples_per_task
    for traj in group.trajectories:
        path = list(group.path(traj))
        assert path[0].id == root.id
        assert traj.leaf_id == traj.segment_ids[-1]
        for i, seg in enumerate(path):
            assert seg.kind is (SegmentKind.ENV if i % 2 == 0 else SegmentKind.MODEL)
            if i:
                assert seg.parent_id == path[i - 1].id
            if seg.kind is SegmentKind.MODEL:
                assert len(seg.logprobs) == len(seg.entropies) == len(seg.token_ids) > 0
            else:
                assert seg.logprobs == seg.entropies == ()
        assert isinstance(traj.end_reason, EndReason)
        assert 1 <= traj.n_turns <= cfg.max_turns
        assert traj.n_turns == sum(s.kind is SegmentKind.MODEL for s in path)
        assert path[-1].end_reason is traj.end_reason
        assert path[-1].reward == traj.ret


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_hf_rollout_group_structure(tiny_lm, tiny_tok, codec, temperature):
    policy = HFPolicy(tiny_lm, tiny_tok, tiny_tok.pad_token_id, seed=0)
    cfg = RolloutConfig(
        samples_per_task=3, max_turns=3, max_action_tokens=8, temperature=temperature
    )
    groups = RolloutManager(make_env, policy, codec, cfg).rollout(tasks(2), step=5, version=2)
    assert [g.task for g in groups] == tasks(2)
    env = make_env()
    for group in groups:
        assert (group.step, group.policy_version) == (5, 2)
        opening, _ = env.reset(seed=group.task.seed)
        assert group.segments[0].text == opening
        assert list(group.segments[0].token_ids) == codec.observation_ids(opening)
        check_tree(group, cfg)
        for traj in group.trajectories:
            assert traj.end_reason in (EndReason.LENGTH, EndReason.TURN_LIMIT, EndReason.TERMINATED)
            assert traj.ret == 0.0 and not traj.won  # a random 32-wide model does not win
            # every model segment is exactly what the policy sampled, ending in <|end|> unless cut
            for seg in group.path(traj):
                if seg.kind is SegmentKind.MODEL and seg.end_reason is not EndReason.LENGTH:
                    assert seg.token_ids[-1] == codec.stop_id
    if temperature == 0.0:  # greedy paths of one task are identical
        for group in groups:
            firsts = {list(group.path(t))[1].token_ids for t in group.trajectories}
            assert len(firsts) == 1


def sessions_in_order(policy) -> list[str]:
    return list(dict.fromkeys(r.session for r in policy.requests))


def assert_stored_as_seen(group, policy) -> None:
    """Each path's stored tokens are exactly the last prefix its policy saw plus its answer."""
    asked = [t for t in group.trajectories if t.n_turns > 0]  # a failed reset never asks
    for session, traj in zip(sessions_in_order(policy), asked, strict=True):
        last = [r for r in policy.requests if r.session == session][-1]
        ids, _, _ = flatten(group, traj)
        model_ids = [s for s in group.path(traj) if s.kind is SegmentKind.MODEL][-1].token_ids
        assert ids[: len(last.prefix)] == list(last.prefix)
        assert ids[len(last.prefix) : len(last.prefix) + len(model_ids)] == list(model_ids)


def test_requests_carry_exactly_the_stored_path(codec):
    policy = ScriptedPolicy(lambda req: say(codec, "look"))
    cfg = RolloutConfig(samples_per_task=2, max_turns=3)
    (group,) = RolloutManager(make_env, policy, codec, cfg).rollout(tasks(1))
    assert len(policy.requests) == 2 * 3
    sessions = sessions_in_order(policy)
    assert len(sessions) == 2 and None not in sessions
    look = "You are in the middle of a room. Looking quickly around you, you see nothing."
    for s in sessions:
        prefixes = [r.prefix for r in policy.requests if r.session == s]
        assert len(prefixes) == 3
        assert list(prefixes[0]) == list(group.segments[0].token_ids)
        for a, b in itertools.pairwise(prefixes):
            assert b[: len(a)] == a  # a turn only appends: the KV cache can be reused
            assert list(b[len(a) :]) == codec.action_ids("look") + codec.observation_ids(look)
    assert all(r.params.stop_token_ids == (codec.stop_id,) for r in policy.requests)
    assert all(r.params.max_new_tokens == cfg.max_action_tokens for r in policy.requests)
    assert_stored_as_seen(group, policy)


def test_looking_forever_hits_the_turn_limit(codec):
    policy = ScriptedPolicy(lambda req: say(codec, "look"))
    cfg = RolloutConfig(samples_per_task=2, max_turns=4)
    groups = RolloutManager(make_env, policy, codec, cfg).rollout(tasks(2))
    for group in groups:
        check_tree(group, cfg)
        for traj in group.trajectories:
            assert traj.end_reason is EndReason.TURN_LIMIT
            assert traj.n_turns == cfg.max_turns
            assert (traj.ret, traj.won) == (0.0, False)
            assert len(traj.segment_ids) == 1 + 2 * cfg.max_turns - 1  # ends on the model turn


class InfoSpy(gym.Wrapper):
    """Keeps the latest info so a scripted policy can read the expert's plan."""

    latest: ClassVar[dict] = {}

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        InfoSpy.latest = info
        return obs, info

    def step(self, action):
        out = self.env.step(action)
        InfoSpy.latest = out[4]
        return out


def test_expert_script_wins_and_terminates(codec):
    policy = ScriptedPolicy(lambda req: say(codec, InfoSpy.latest["expert_plan"][0]))
    cfg = RolloutConfig(samples_per_task=1, max_turns=20)
    manager = RolloutManager(lambda: InfoSpy(make_env()), policy, codec, cfg)
    for task in tasks(5):
        (group,) = manager.rollout([task])
        (traj,) = group.trajectories
        check_tree(group, cfg)
        assert traj.end_reason is EndReason.TERMINATED
        assert (traj.ret, traj.won) == (1.0, True)
        assert group.segments[traj.leaf_id].kind is SegmentKind.MODEL


def test_length_finish_ends_the_path_without_stepping(codec):
    policy = ScriptedPolicy(lambda req: say(codec, "look", finish="length"))
    cfg = RolloutConfig(samples_per_task=2, max_turns=5)
    (group,) = RolloutManager(make_env, policy, codec, cfg).rollout(tasks(1))
    check_tree(group, cfg)
    assert [t.end_reason for t in group.trajectories] == [EndReason.LENGTH] * 2
    assert [t.n_turns for t in group.trajectories] == [1, 1]


def test_token_budget_ends_the_path(codec):
    policy = ScriptedPolicy(lambda req: say(codec, "look"))
    cfg = RolloutConfig(samples_per_task=1, max_turns=50, max_total_tokens=300)
    (group,) = RolloutManager(make_env, policy, codec, cfg).rollout(tasks(1))
    (traj,) = group.trajectories
    assert traj.end_reason is EndReason.LENGTH
    assert traj.n_turns < cfg.max_turns
    ids, _, _ = flatten(group, traj)
    assert len(ids) <= cfg.max_total_tokens  # the observation that did not fit is not kept
    last = list(group.path(traj))[-1]
    assert last.token_ids == () and last.text.startswith("observation of ")
    assert "rollout.max_total_tokens (300)" in last.text
    assert max(len(r.prefix) for r in policy.requests) + cfg.max_action_tokens <= 300


class FailingStep(gym.Wrapper):
    """Raises on its ``fail_on``-th step."""

    def __init__(self, env, fail_on: int) -> None:
        super().__init__(env)
        self.fail_on = fail_on
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps == self.fail_on:
            raise RuntimeError("simulator crashed")
        return self.env.step(action)


class FailingReset(gym.Wrapper):
    def reset(self, **kwargs):
        raise RuntimeError("no such task")


def factory(broken: int, wrapper):
    """Env factory whose ``broken``-th env (0-based) is wrapped in ``wrapper``."""
    made = []

    def make():
        env = make_env()
        env = wrapper(env) if len(made) == broken else env
        made.append(env)
        return env

    return make


def test_env_error_in_step_ends_only_that_path(codec):
    policy = ScriptedPolicy(lambda req: say(codec, "look"))
    cfg = RolloutConfig(samples_per_task=3, max_turns=4)
    make = factory(4, lambda env: FailingStep(env, fail_on=2))  # task 1, sample 1
    groups = RolloutManager(make, policy, codec, cfg).rollout(tasks(2))
    ends = [[t.end_reason for t in g.trajectories] for g in groups]
    assert ends == [
        [EndReason.TURN_LIMIT] * 3,
        [EndReason.TURN_LIMIT, EndReason.ENV_ERROR, EndReason.TURN_LIMIT],
    ]
    broken = groups[1].trajectories[1]
    assert broken.n_turns == 2
    leaf = groups[1].segments[broken.leaf_id]
    assert leaf.kind is SegmentKind.ENV and leaf.token_ids == ()
    assert "simulator crashed" in leaf.text
    for g in groups:
        check_tree(g, cfg)


@pytest.mark.parametrize("broken", [0, 1])
def test_env_error_in_reset_ends_only_that_path(codec, broken):
    policy = ScriptedPolicy(lambda req: say(codec, "look"))
    cfg = RolloutConfig(samples_per_task=3, max_turns=2)
    manager = RolloutManager(factory(broken, FailingReset), policy, codec, cfg)
    (group,) = manager.rollout(tasks(1))
    ends = [t.end_reason for t in group.trajectories]
    assert ends[broken] is EndReason.ENV_ERROR
    assert [e for i, e in enumerate(ends) if i != broken] == [EndReason.TURN_LIMIT] * 2
    assert group.trajectories[broken].n_turns == 0
    # The healthy paths are stored with the prompt they were actually given.
    opening, _ = make_env().reset(seed=tasks(1)[0].seed)
    for i, traj in enumerate(group.trajectories):
        if i != broken:
            first = next(group.path(traj))
            assert first.text == opening
            assert first.end_reason is None  # not the leaf of a healthy path
    assert_stored_as_seen(group, policy)


def test_tool_envs_stop_generation_at_closing_tags(codec):
    """SearchQA asks to stop at ``</search>``/``</answer>``; an action that ended there (no stop
    token sampled) gets the stop token as a masked token before the result, so every turn
    ends the way the demonstrations do."""

    def act(req):
        call = "<search>x</search>"
        ids = tuple(codec.action_ids(call)[:-1])  # stopped at the closing tag, not at <|end|>
        return Generation(ids, call, (-0.5,) * len(ids), (1.0,) * len(ids), "stop")

    policy = ScriptedPolicy(act)
    cfg = RolloutConfig(samples_per_task=1, max_turns=2)
    (group,) = RolloutManager(
        lambda: branchgym.envs.make("branchgym/SearchQA-v0"), policy, codec, cfg
    ).rollout(task_refs("branchgym/SearchQA-v0", "train", 1))
    assert all(r.params.stop == ("</search>", "</answer>") for r in policy.requests)
    result = next(s for s in group.segments[2:] if s.kind is SegmentKind.ENV)
    assert result.token_ids[0] == codec.stop_id and result.text.startswith("<result>")
    assert list(result.token_ids[1:]) == codec.observation_ids(result.text)


class HugeObservation(gym.Wrapper):
    """Answers its first step with an observation far over any token budget."""

    def step(self, action):
        _, reward, terminated, truncated, info = self.env.step(action)
        return "a very long tool result " * 2000, reward, terminated, truncated, info


def test_an_observation_over_the_token_budget_is_not_stored(codec):
    policy = ScriptedPolicy(lambda req: say(codec, "look"))
    cfg = RolloutConfig(samples_per_task=1, max_turns=5, max_total_tokens=256)
    make = factory(0, HugeObservation)
    (group,) = RolloutManager(make, policy, codec, cfg).rollout(tasks(1))
    (traj,) = group.trajectories
    assert traj.end_reason is EndReason.LENGTH and traj.n_turns == 1
    ids, _, _ = flatten(group, traj)
    assert len(ids) <= 256  # a tool result of thousands of tokens never reaches the learner
    assert list(group.path(traj))[-1].text.startswith("observation of ")


def test_a_prompt_over_the_token_budget_ends_the_path_with_a_clear_error(codec):
    policy = ScriptedPolicy(lambda req: say(codec, "look"))
    cfg = RolloutConfig(samples_per_task=2, max_turns=5, max_total_tokens=20)
    (group,) = RolloutManager(make_env, policy, codec, cfg).rollout(tasks(1))
    assert [t.end_reason for t in group.trajectories] == [EndReason.ENV_ERROR] * 2
    assert not policy.requests  # nothing was generated from a prompt that does not fit
    (leaf,) = {group.segments[t.leaf_id].text for t in group.trajectories}
    assert "rollout.max_total_tokens (20)" in leaf


def test_the_snapshot_check_survives_a_failing_factory_and_runs_once(codec):
    # The check makes one env of its own. A factory that fails then costs the step nothing,
    # as under GRPO, not the whole step; and once the check passed it is not made again.
    from branchgym.rollouts.branching import ARPOConfig

    made = []

    def make():
        made.append(1)
        if len(made) == 1:
            raise ConnectionError("server blip")
        return make_env()

    policy = ScriptedPolicy(lambda req: say(codec, "look"))
    cfg = RolloutConfig(algo="arpo", arpo=ARPOConfig(budget=4, initial=2), max_turns=2)
    manager = RolloutManager(make, policy, codec, cfg)
    counts = []
    for _ in range(3):
        before = len(made)
        (group,) = manager.rollout(tasks(1))
        assert len(group.trajectories) == 4  # every slot spent: one env per path
        assert all(t.end_reason is EndReason.TURN_LIMIT for t in group.trajectories)
        counts.append(len(made) - before)
    assert counts == [5, 5, 4]  # the failed check, the passing one, then none
