"""ARPO and AEPO branching: the rules by hand, and where the manager branches and spends budget.

The scripted policy sets every turn's entropies from a table keyed by (path, turn), where paths
are numbered in the order the policy first hears from them, so each test states exactly where
entropy rises and checks exactly where the tree branches.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any, ClassVar

import gymnasium as gym
import pytest

from branchgym.agents.hf import HFPolicy
from branchgym.agents.policy import Generation, GenerationRequest, ScriptedPolicy
from branchgym.envs.errors import ToolError
from branchgym.rollouts import branching as rules
from branchgym.rollouts.branching import AEPOConfig, ARPOConfig
from branchgym.rollouts.manager import BranchingUnsupported, RolloutConfig, RolloutManager
from branchgym.rollouts.metrics import entropy_profile, tree_stats
from branchgym.tasks.suite import task_refs
from branchgym.trajectory import EndReason, Group, SegmentKind, TaskRef, flatten
from tests.conftest import make_household

TEXT = gym.spaces.Text(max_length=4096)


class LogEnv(gym.Env[str, str]):
    """A stateful env whose observation is its whole action log: restores are visible."""

    observation_space = TEXT
    action_space = TEXT
    hang_on: ClassVar[str] = ""  # an action that makes step() hang

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.log = [f"s{seed}"]
        return " ".join(self.log), {}

    def step(self, action: str):
        if action == self.hang_on:
            time.sleep(30)
        self.log.append(action)
        return " ".join(self.log), 0.0, False, False, {"won": False}

    def snapshot(self) -> list[str]:
        return list(self.log)

    def restore(self, snap: list[str]) -> None:
        self.log = list(snap)


class NoSnapshotEnv(gym.Env[str, str]):
    observation_space = TEXT
    action_space = TEXT

    def reset(self, *, seed=None, options=None):
        return "hello", {}

    def step(self, action):
        return "hello", 0.0, False, False, {}


class Heat:
    """A script: path i says ``a<i>``; its turn-t entropies come from ``table[(i, t)]``."""

    def __init__(self, codec, table: dict[tuple[int, int], float], default: float = 1.0):
        self.codec, self.table, self.default = codec, table, default
        self.order: dict[str | None, int] = {}

    def __call__(self, req: GenerationRequest) -> Generation:
        i = self.order.setdefault(req.session, len(self.order))
        turn = req.prefix.count(self.codec.stop_id) + 1
        h = self.table.get((i, turn), self.default)
        ids = tuple(self.codec.action_ids(f"a{i}"))
        return Generation(ids, f"a{i}", (-0.5,) * len(ids), (h,) * len(ids), "stop")


TASK = TaskRef("test/Log-v0", seed=7)


def run(codec, table, algo="arpo", tasks=(TASK,), env=LogEnv, **cfg: Any):
    sampler = {k: cfg.pop(k) for k in ("arpo", "aepo") if k in cfg}
    config = RolloutConfig(algo=algo, max_turns=cfg.pop("max_turns", 4), **sampler, **cfg)
    heat = Heat(codec, table)
    policy = ScriptedPolicy(heat)
    manager = RolloutManager(env, policy, codec, config)
    return manager, policy, heat, manager.rollout(list(tasks))


def arpo(**kw) -> ARPOConfig:
    return ARPOConfig(**{"k": 2, "normalize": False, **kw})


def check_tree(group: Group) -> None:
    """Every path starts at the shared prompt, alternates env/model and ends on its own leaf."""
    root = group.segments[0]
    assert root.kind is SegmentKind.ENV and root.parent_id is None
    assert len({t.leaf_id for t in group.trajectories}) == len(group.trajectories)
    for traj in group.trajectories:
        path = list(group.path(traj))
        assert path[0] is root
        for i, seg in enumerate(path):
            assert seg.kind is (SegmentKind.ENV if i % 2 == 0 else SegmentKind.MODEL)
            assert i == 0 or seg.parent_id == path[i - 1].id
        assert traj.n_turns == sum(s.kind is SegmentKind.MODEL for s in path)
        assert path[-1].end_reason is traj.end_reason


def branch_points(group: Group) -> dict[int, int]:
    """Tool-result segment id -> number of paths that continue from it, where more than one."""
    kids: dict[int, int] = {}
    for seg in group.segments:
        if seg.parent_id is not None and group.segment(seg.parent_id).parent_id is not None:
            kids[seg.parent_id] = kids.get(seg.parent_id, 0) + 1
    return {k: v for k, v in kids.items() if v > 1}


# -- the rules, by hand ----------------------------------------------------------------------


def test_entropy_windows():
    assert rules.head_entropy([1.0, 2.0, 3.0, 4.0], 2) == 1.5
    assert rules.head_entropy([1.0, 2.0], 20) == 1.5  # fewer than k tokens: all of them
    assert rules.tail_entropy([1.0, 2.0, 3.0, 4.0], 3) == 3.0
    assert rules.head_entropy([], 20) == 0.0


def test_entropy_rise_is_scale_free_when_normalised():
    assert rules.entropy_rise(1.0, 0.5, None) == 0.5
    # 0.5 / ln(100) = 0.5 / 4.60517 = 0.108574
    assert rules.entropy_rise(1.0, 0.5, 100) == pytest.approx(0.108574, abs=1e-6)


def test_arpo_and_aepo_probabilities():
    assert rules.arpo_probability(0.1, alpha=0.5, beta=0.2) == pytest.approx(0.52)
    # (0.5 + 0.2 * 0.1) * (1 - min(1, 0.05 * 3)) = 0.52 * 0.85 = 0.442
    assert rules.aepo_probability(0.1, 0.5, 0.2, streak=3, penalty=0.05) == pytest.approx(0.442)
    assert rules.aepo_probability(0.1, 0.5, 0.2, streak=0, penalty=0.05) == pytest.approx(0.52)
    assert rules.aepo_probability(5.0, 0.5, 0.2, streak=25, penalty=0.05) == 0.0  # P(l) caps at 1


def test_decide_threshold_and_sample():
    rng = random.Random(0)
    assert rules.decide(0.52, "threshold", 0.5, rng)
    assert not rules.decide(0.5, "threshold", 0.5, rng)  # strictly above tau
    assert all(rules.decide(1.3, "sample", 0.5, rng) for _ in range(100))  # clipped to 1
    assert not any(rules.decide(-0.2, "sample", 0.5, rng) for _ in range(100))  # clipped to 0
    share = sum(rules.decide(0.3, "sample", 0.5, rng) for _ in range(4000)) / 4000
    assert abs(share - 0.3) < 0.03


def test_aepo_global_samples():
    assert rules.aepo_global_samples(16, 1.0, 1.0, 0.5) == 8  # sigmoid(0) = 0.5
    assert rules.aepo_global_samples(16, 1.0, 3.0, 0.5) == 4  # 16 * sigmoid(-1) = 4.30
    assert rules.aepo_global_samples(16, 3.0, 1.0, 0.5) == 12  # 16 * sigmoid(1) = 11.70
    assert rules.aepo_global_samples(16, 0.0, 100.0, 0.5) == 1  # at least one full sample
    assert rules.aepo_global_samples(16, 100.0, 0.0, 0.5) == 16


# -- where the manager branches --------------------------------------------------------------


def test_arpo_branches_where_entropy_rises_after_a_tool_result(codec):
    # Path 0's third turn is hotter than its first (1.5 vs 1.0): P = 0.5 + 0.2 * 0.5 = 0.6 > 0.5.
    _, policy, heat, (group,) = run(codec, {(0, 3): 1.5}, arpo=arpo(budget=4, initial=2))
    check_tree(group)
    assert len(group.trajectories) == 4
    ((point, n),) = branch_points(group).items()
    assert n == 2
    parent, _, child, fresh = group.trajectories
    assert point == parent.segment_ids[4]  # the tool result after turn 2: root,m1,e1,m2,e2
    assert child.segment_ids[:5] == parent.segment_ids[:5]
    # The child restored the parent's env at the branch point, then acted on its own.
    child_env = [s.text for s in group.path(child) if s.kind is SegmentKind.ENV]
    assert child_env[-1] == "s7 a0 a0 a2" and child.n_turns == 4
    # ... and its policy request continued the parent's prefix, naming the parent's session.
    first = next(r for r in policy.requests if heat.order[r.session] == 2)
    assert first.parent_session == next(s for s, i in heat.order.items() if i == 0)
    assert list(first.prefix) == flatten(group, parent)[0][: len(first.prefix)]
    # The budget left (4 - 2 full - 1 branch) became a fresh sample from the prompt.
    assert fresh.segment_ids[0] == 0 and fresh.segment_ids[1] not in parent.segment_ids
    assert all(t.end_reason is EndReason.TURN_LIMIT for t in group.trajectories)


def test_arpo_never_branches_on_the_first_turn_or_without_a_rise(codec):
    _, _, _, (group,) = run(codec, {(0, 1): 3.0}, arpo=arpo(budget=4, initial=2))
    assert branch_points(group) == {}
    assert len(group.trajectories) == 4  # the branch budget became fresh samples


def test_arpo_grants_scarce_slots_to_the_strongest_rise_not_the_first_path(codec):
    table = {(0, 2): 1.2, (1, 2): 1.4, (2, 2): 2.0}  # all three bid at turn 2; path 2 bids most
    *_, (group,) = run(codec, table, arpo=arpo(budget=4, initial=3), max_turns=2)
    ((point, _),) = branch_points(group).items()
    strongest = group.trajectories[2]
    assert point == strongest.segment_ids[2]
    assert len(group.trajectories) == 4


def test_deferred_grants_the_strongest_points_of_the_whole_tree_not_the_earliest(codec):
    # Three yes-decisions: path 0 after turns 1 and 2 (rises 0.2, 0.5), path 1 after turn 3
    # (rise 1.0). Two slots: online spends them on path 0's first two decisions as they come;
    # deferred waits for both full samples and takes the two strongest, 1.0 and 0.5.
    table = {(0, 2): 1.2, (0, 3): 1.5, (1, 4): 2.0}

    def depths(schedule: dict) -> list[tuple[int, int]]:
        *_, (group,) = run(codec, table, arpo=arpo(budget=4, initial=2, **schedule))
        check_tree(group)
        assert len(group.trajectories) == 4
        owner = {}  # branch point -> (full sample index, depth in its path)
        for i, traj in enumerate(group.trajectories[:2]):
            for point in branch_points(group):
                if point in traj.segment_ids:
                    owner.setdefault(point, (i, traj.segment_ids.index(point)))
        return sorted(owner.values())

    assert depths({"schedule": "online"}) == [(0, 2), (0, 4)]
    assert depths({}) == [(0, 4), (1, 6)]


def test_deferred_branch_restores_the_snapshot_taken_at_its_point(codec):
    _, policy, heat, (group,) = run(codec, {(1, 3): 2.0}, arpo=arpo(budget=3, initial=2))
    _, parent, child = group.trajectories
    assert child.segment_ids[:5] == parent.segment_ids[:5]
    child_env = [s.text for s in group.path(child) if s.kind is SegmentKind.ENV]
    # Restored after the parent's turn 2, the child's turn 3 acted on the parent's log; its
    # turn 4 hit the turn limit, which ends a path without a further observation.
    assert child_env[2:] == ["s7 a1 a1", "s7 a1 a1 a2"]
    # The full samples ran first; the branch ran alone after them, from the parent's prefix.
    assert policy.calls == [2, 2, 2, 2, 1, 1]
    first = next(r for r in policy.requests if heat.order[r.session] == 2)
    assert first.parent_session == next(s for s, i in heat.order.items() if i == 1)
    assert list(first.prefix) == flatten(group, parent)[0][: len(first.prefix)]


def test_deferred_spends_points_found_by_branches_in_a_later_round(codec):
    # One point in the full samples (path 0, after turn 1); its branch (path 2) rises after
    # its turn 3, which is the only point left when the first round ends: a second round.
    table = {(0, 2): 2.0, (2, 3): 2.0}
    *_, (group,) = run(codec, table, arpo=arpo(budget=4, initial=2))
    assert sorted(branch_points(group).values()) == [2, 2]
    assert len(group.trajectories) == 4


def test_arpo_z_branches_per_decision_and_budget_stop(codec):
    table = {(0, 2): 2.0, (0, 3): 2.0}  # path 0 rises twice; the budget allows three branches
    _, _, _, (group,) = run(codec, table, arpo=arpo(budget=5, initial=2, branches=2))
    points = branch_points(group)
    # turn 2: two children (budget 3 -> 1); turn 3: one child (budget 1 -> 0), then stop.
    assert sorted(points.values()) == [2, 3]
    assert len(group.trajectories) == 5


def test_arpo_sample_rule_uses_the_clipped_probability(codec):
    always = arpo(budget=6, initial=2, alpha=1.0, beta=0.0, rule="sample")
    _, _, _, (group,) = run(codec, {}, arpo=always)
    assert sum(branch_points(group).values()) - len(branch_points(group)) == 4
    never = arpo(budget=6, initial=2, alpha=0.0, beta=0.0, rule="sample")
    _, _, _, (group,) = run(codec, {(0, 2): 9.0}, arpo=never)
    assert branch_points(group) == {}


def test_arpo_normalises_the_rise_by_log_vocab(codec):
    # A rise of 0.5 nats: raw P = 0.6 branches; over ln(1e6) = 13.8 it is P = 0.5072, still > 0.5;
    # with tau = 0.51 only the raw rule branches.
    cfg = {"budget": 3, "initial": 2, "tau": 0.51}
    _, _, _, (raw,) = run(codec, {(0, 2): 1.5}, arpo=arpo(**cfg))
    assert len(branch_points(raw)) == 1
    scaled = RolloutManager(
        LogEnv,
        ScriptedPolicy(Heat(codec, {(0, 2): 1.5}), vocab_size=10**6),
        codec,
        RolloutConfig(algo="arpo", max_turns=4, arpo=arpo(normalize=True, **cfg)),
    )
    (group,) = scaled.rollout([TASK])
    assert branch_points(group) == {}


def test_aepo_penalises_consecutive_branches_on_the_same_path(codec):
    # Path 0 rises by 0.2 every turn. P = (0.5 + 1.0 * 0.2) * (1 - 0.5 l): 0.7 at l=0 branches,
    # 0.35 at l=1 does not (and resets l), so the branches alternate: after turns 1 and 3.
    table = {(0, t): 1.2 for t in range(2, 6)}
    aepo = AEPOConfig(budget=10, k=2, gamma=1.0, penalty=0.5, normalize=False)
    aepo = AEPOConfig(**{**aepo.__dict__, "pre_monitor": "history"})
    _, _, _, (group,) = run(codec, table, algo="aepo", aepo=aepo, max_turns=5)
    path0 = group.trajectories[0]
    depths = sorted(path0.segment_ids.index(p) for p in branch_points(group))
    assert depths == [2, 6]  # the results after turns 1 and 3
    assert len(group.trajectories) == 10


def test_aepo_probe_sets_the_split(codec):
    # Probe: first turn 1.0, after tool results 3.0: m = round(16 * sigmoid(0.5 * -2)) = 4.
    table = {(0, t): 3.0 for t in range(2, 5)}
    aepo = AEPOConfig(budget=16, k=2, alpha=0.0, gamma=0.0, normalize=False)
    _, policy, _, (group,) = run(codec, table, algo="aepo", aepo=aepo, max_turns=2)
    assert policy.calls[:3] == [1, 1, 3]  # the probe runs alone, then the other 3 full samples
    assert len(group.trajectories) == 16
    assert entropy_profile(group.segments, 2)[0] == 1.0
    dropped = AEPOConfig(**{**aepo.__dict__, "keep_probe": False})
    _, policy, heat, (group,) = run(codec, table, algo="aepo", aepo=dropped, max_turns=2)
    assert policy.calls[:3] == [1, 1, 4]
    assert len(group.trajectories) == 16 and len(heat.order) == 17


def test_aepo_history_uses_last_steps_statistics_for_the_same_task(codec):
    aepo = AEPOConfig(budget=16, k=2, alpha=0.0, gamma=0.0, normalize=False, pre_monitor="history")
    policy = ScriptedPolicy(Heat(codec, {}))
    manager = RolloutManager(
        LogEnv, policy, codec, RolloutConfig(algo="aepo", max_turns=2, aepo=aepo)
    )
    manager._history[TASK] = (1.0, 3.0)  # as if the last step had seen this
    manager.rollout([TASK, TaskRef("test/Log-v0", seed=8)])
    assert policy.calls[0] == 4 + 8  # seen task: m = 4; unseen task: the even split, 8
    assert manager._history[TASK] == (1.0, 1.0)  # this step's statistics replace the last


def test_branching_an_env_without_snapshot_says_what_to_add(codec):
    with pytest.raises(BranchingUnsupported, match=r"snapshot\(\)/restore\(\).*algo='grpo'"):
        run(codec, {}, env=NoSnapshotEnv, arpo=arpo())
    *_, (group,) = run(codec, {}, algo="grpo", env=NoSnapshotEnv, samples_per_task=2)
    assert len(group.trajectories) == 2


class BadRestore(LogEnv):
    def restore(self, snap):
        raise RuntimeError("state is gone")


def test_a_failed_restore_ends_only_the_branch(codec):
    _, _, _, (group,) = run(codec, {(0, 2): 2.0}, env=BadRestore, arpo=arpo(budget=3, initial=2))
    ends = [t.end_reason for t in group.trajectories]
    assert ends == [EndReason.TURN_LIMIT, EndReason.TURN_LIMIT, EndReason.ENV_ERROR]
    assert "state is gone" in group.segments[group.trajectories[2].leaf_id].text


def test_a_hanging_env_ends_only_its_path_after_the_timeout(codec, monkeypatch):
    monkeypatch.setattr(LogEnv, "hang_on", "a1")
    start = time.monotonic()
    _, _, _, (group,) = run(codec, {}, algo="grpo", samples_per_task=3, env_timeout=0.5)
    assert time.monotonic() - start < 10
    ends = [t.end_reason for t in group.trajectories]
    assert ends == [EndReason.TURN_LIMIT, EndReason.ENV_ERROR, EndReason.TURN_LIMIT]
    assert "took over 0.5 s" in group.segments[group.trajectories[1].leaf_id].text


def test_generation_is_batched_across_tasks_and_branches(codec):
    tasks = [TaskRef("test/Log-v0", seed=s) for s in (1, 2)]
    table = {(0, 2): 2.0}  # path 0 (task 1) branches after turn 1
    online = arpo(budget=3, initial=2, schedule="online")
    _, policy, _, groups = run(codec, table, tasks=tasks, arpo=online)
    # turn 1: 2 tasks x 2 paths; turn 2 adds the branch child beside its parent.
    assert policy.calls[:3] == [4, 4, 5]
    assert [len(g.trajectories) for g in groups] == [3, 3]
    # Deferred: the 4 full samples run 4 turns; task 1's branch (3 turns left after its
    # restored tool result) and task 2's fresh sample (no point to branch from) run together.
    _, policy, _, groups = run(codec, table, tasks=tasks, arpo=arpo(budget=3, initial=2))
    assert policy.calls == [4, 4, 4, 4, 2, 2, 2, 1]
    assert [len(branch_points(g)) for g in groups] == [1, 0]


def test_tree_stats(codec):
    _, _, _, (group,) = run(codec, {(0, 3): 1.5}, arpo=arpo(budget=4, initial=2))
    stats = tree_stats([group], k=2)
    assert stats.trees == 1 and stats.trajectories_per_tree == 4
    assert stats.branch_points_per_tree == 1 and stats.branch_depth_max == 2
    assert stats.end_reasons == {"turn_limit": 4}
    assert stats.distinct_trajectories_per_tree == 4  # every path wrote its own action
    model = [s for s in group.segments if s.kind is SegmentKind.MODEL]
    assert stats.tokens_generated == sum(len(s.token_ids) for s in model)
    # 4 paths x 4 turns = 16 turns, of which the child shares 2: 14 generated once each.
    assert len(model) == 14
    assert stats.tool_calls_per_trajectory == 4


def test_hf_arpo_on_household_keeps_every_invariant(tiny_tok, codec, tiny_lm):
    policy = HFPolicy(tiny_lm, tiny_tok, tiny_tok.pad_token_id, seed=0)
    cfg = RolloutConfig(
        algo="arpo", max_turns=3, max_action_tokens=6, arpo=ARPOConfig(budget=6, initial=3)
    )
    groups = RolloutManager(make_household, policy, codec, cfg).rollout(
        task_refs("branchgym/Household-v0", "train", 2)
    )
    for group in groups:
        check_tree(group)
        assert len(group.trajectories) == 6
    assert math.isfinite(tree_stats(groups).entropy_after_tool)


class BrokenTool(LogEnv):
    def step(self, action):
        if action == "a1":
            raise ToolError("search backend is down")
        return super().step(action)


def test_a_tool_error_is_told_apart_from_an_env_error(codec):
    _, _, _, (group,) = run(codec, {}, algo="grpo", env=BrokenTool, samples_per_task=2)
    ends = [t.end_reason for t in group.trajectories]
    assert ends == [EndReason.TURN_LIMIT, EndReason.TOOL_ERROR]
    assert "tool error: ToolError('search backend is down')" in (
        group.segments[group.trajectories[1].leaf_id].text
    )


def test_env_calls_threads_are_released_after_each_rollout(codec):
    import threading

    def workers() -> int:
        return sum(t.name == "branchgym-env" for t in threading.enumerate())

    before = workers()  # calls hung in earlier tests may still hold a few
    for _ in range(5):
        run(codec, {}, algo="grpo", samples_per_task=2, max_turns=1)
    deadline = time.monotonic() + 5
    while workers() > before and time.monotonic() < deadline:
        time.sleep(0.05)  # stopped workers exit asynchronously
    assert workers() <= before  # 5 rollouts x 8 workers would leak 40 without close()


def test_aepo_spends_the_budget_when_the_probe_leaves_one_full_sample(codec):
    # Probe: after-tool entropy 3 vs first turn 1: m = round(2 * sigmoid(-1)) = round(0.54) = 1,
    # so the kept probe is the only full sample; with nothing left to branch from, the other
    # slot becomes a fresh sample instead of being lost.
    table = {(0, t): 3.0 for t in range(2, 5)}
    aepo = AEPOConfig(budget=2, k=2, normalize=False)
    *_, (group,) = run(codec, table, algo="aepo", aepo=aepo, max_turns=2)
    assert len(group.trajectories) == 2


class SlowSnapshot(LogEnv):
    def snapshot(self):
        time.sleep(5)
        return super().snapshot()


@pytest.mark.parametrize(
    ("schedule", "third"), [("online", EndReason.ENV_ERROR), ("deferred", EndReason.TURN_LIMIT)]
)
def test_a_snapshot_that_hangs_ends_the_parent_and_its_branch(codec, schedule, third):
    # Online, the branch was granted before the snapshot hung, so it ends too; deferred, the
    # point is dropped and its slot becomes a fresh sample.
    cfg = {"arpo": arpo(budget=3, initial=2, schedule=schedule), "env_timeout": 0.5}
    *_, (group,) = run(codec, {(0, 2): 2.0}, env=SlowSnapshot, **cfg)
    ends = [t.end_reason for t in group.trajectories]
    assert ends == [EndReason.ENV_ERROR, EndReason.TURN_LIMIT, third]
    assert "took over 0.5 s" in group.segments[group.trajectories[0].leaf_id].text


def test_aepo_branches_from_the_kept_probe_when_the_split_leaves_it_the_only_full_sample(codec):
    # First turn 1.0, after tool results 12.0: m = round(16 * sigmoid(0.5 * -11)) = 0 -> 1,
    # so the kept probe is the only full sample. Its decision points (every tool result: the
    # rise is large) were collected while it ran, and the 15 branch slots go to them rather
    # than turning into fresh samples: the strongest signal to branch must branch.
    table = {(0, t): 12.0 for t in range(2, 5)}
    aepo = AEPOConfig(budget=16, k=2, normalize=False)
    *_, (group,) = run(codec, table, algo="aepo", aepo=aepo, max_turns=3)
    check_tree(group)
    assert len(group.trajectories) == 16
    points = branch_points(group)
    probe = group.trajectories[0]
    assert points and all(p in probe.segment_ids for p in points)


class NotAToolCall(LogEnv):
    """Every step is a parse error: an observation, but no tool was called."""

    def step(self, action: str):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, {**info, "tool_call": False}


def test_no_branch_decision_follows_an_observation_that_was_not_a_tool_result(codec):
    # Entropy rises after every observation; but they are format errors, not tool results,
    # and ARPO decides only after tool calls: the budget goes to fresh samples instead.
    table = {(i, t): 3.0 for i in range(8) for t in range(2, 5)}
    *_, (group,) = run(codec, table, env=NotAToolCall, arpo=arpo(budget=4, initial=2))
    assert branch_points(group) == {}
    assert len(group.trajectories) == 4
    # nor do the after-tool statistics count those turns (AEPO's H_tool, the step metrics)
    assert not any(s.tool_result for s in group.segments)
    assert entropy_profile(group.segments, 2) == (1.0, 1.0)  # H_tool: H_root, none seen
    assert tree_stats([group], k=2).entropy_after_tool == 0.0
    *_, (group,) = run(codec, table, arpo=arpo(budget=4, initial=2))  # tool results: branches
    assert branch_points(group)
