"""SubprocessEnv: the same episodes as in-process, snapshots over the pipe, crashes and hangs
contained to one path, and no process left behind."""

from __future__ import annotations

import multiprocessing as mp
import time

import gymnasium as gym
import pytest

import branchgym.envs
import tests.fragile_env  # noqa: F401  (registers test/Fragile-v0 here too)
from branchgym.agents.hf import HFPolicy
from branchgym.agents.policy import Generation, ScriptedPolicy
from branchgym.envs.subprocess import EnvProcessError, SubprocessEnv
from branchgym.envs.toolcall import stop_strings
from branchgym.rollouts.branching import ARPOConfig
from branchgym.rollouts.manager import RolloutConfig, RolloutManager
from branchgym.tasks.suite import task_refs
from branchgym.trajectory import EndReason

HOUSEHOLD = "branchgym/Household-v0"
FRAGILE = ("tests.fragile_env",)  # light to import: children import it to register the env


@pytest.fixture(autouse=True)
def _no_orphans():
    yield
    deadline = time.monotonic() + 5
    while mp.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in mp.active_children() if p.is_alive()]


def test_same_episode_as_in_process_and_snapshots_cross_the_pipe():
    remote = SubprocessEnv(HOUSEHOLD, {"max_receptacles": 8})
    local = branchgym.envs.make(HOUSEHOLD, max_receptacles=8)
    try:
        obs, info = remote.reset(seed=11)
        assert (obs, info) == local.reset(seed=11)
        plan = info["expert_plan"]
        snap = None
        for i, action in enumerate(plan):
            if i == 1:
                snap = remote.snapshot()
            assert remote.step(action) == local.step(action)
        remote.restore(snap)
        local.reset(seed=11)
        local.step(plan[0])
        assert remote.step(plan[1]) == local.step(plan[1])
    finally:
        remote.close()


def test_bad_env_id_and_errors_inside_come_back_as_exceptions():
    with pytest.raises(gym.error.Error, match="no environment"):
        SubprocessEnv("nope/Nothing-v0")
    env = SubprocessEnv(HOUSEHOLD)
    try:
        with pytest.raises(gym.error.ResetNeeded):
            env.step("look")  # the env's own exception, raised here
        env.reset(seed=1)
        assert env.step("look")[0]  # and the process is still serving
    finally:
        env.close()


def test_a_dying_process_is_an_error_for_that_env_only():
    a = SubprocessEnv("test/Fragile-v0", imports=FRAGILE)
    b = SubprocessEnv("test/Fragile-v0", imports=FRAGILE)
    a.reset()
    b.reset()
    with pytest.raises(EnvProcessError, match="exit code 3"):
        a.step("die")
    assert b.step("hi")[0] == "you said hi"
    a.close()
    b.close()


def say(codec, action: str) -> Generation:
    ids = tuple(codec.action_ids(action))
    return Generation(ids, action, (-0.5,) * len(ids), (1.0,) * len(ids), "stop")


def test_rollout_with_crashing_and_hanging_processes(codec):
    order: dict = {}

    def script(req):
        i = order.setdefault(req.session, len(order))
        return say(codec, {1: "die", 2: "hang"}.get(i, "hi"))

    SubprocessEnv("test/Fragile-v0", imports=FRAGILE).close()  # start the fork server
    cfg = RolloutConfig(samples_per_task=4, max_turns=3, env_timeout=2.0)
    manager = RolloutManager(
        lambda: SubprocessEnv("test/Fragile-v0", imports=FRAGILE),
        ScriptedPolicy(script),
        codec,
        cfg,
    )
    start = time.monotonic()
    (group,) = manager.rollout(task_refs("test/Fragile-v0", "train", 1))
    assert time.monotonic() - start < 20
    ends = [t.end_reason for t in group.trajectories]
    assert ends == [
        EndReason.TURN_LIMIT,
        EndReason.ENV_ERROR,
        EndReason.ENV_ERROR,
        EndReason.TURN_LIMIT,
    ]
    texts = [group.segments[t.leaf_id].text for t in group.trajectories]
    assert "process died (exit code 3)" in texts[1]
    assert "took over 2 s" in texts[2]


def test_arpo_branches_household_in_subprocesses(tiny_tok, codec, tiny_lm):
    policy = HFPolicy(tiny_lm, tiny_tok, tiny_tok.pad_token_id, seed=0)
    cfg = RolloutConfig(
        algo="arpo",
        max_turns=3,
        max_action_tokens=6,
        arpo=ARPOConfig(budget=4, initial=2, alpha=1.0),  # alpha 1: every decision branches
    )
    manager = RolloutManager(lambda: SubprocessEnv(HOUSEHOLD), policy, codec, cfg)
    groups = manager.rollout(task_refs(HOUSEHOLD, "train", 2))
    assert [len(g.trajectories) for g in groups] == [4, 4]
    assert all(t.end_reason is not EndReason.ENV_ERROR for g in groups for t in g.trajectories)


def test_branching_a_subprocess_env_without_snapshot_is_refused(codec):
    from branchgym.rollouts.manager import BranchingUnsupported

    cfg = RolloutConfig(algo="arpo", max_turns=2)
    manager = RolloutManager(
        lambda: SubprocessEnv("test/Plain-v0", imports=FRAGILE), ScriptedPolicy(None), codec, cfg
    )
    with pytest.raises(BranchingUnsupported, match="snapshot"):
        manager.rollout(task_refs("test/Plain-v0", "train", 1))


def test_a_result_that_does_not_pickle_is_an_error_not_a_dead_process():
    env = SubprocessEnv("test/Fragile-v0", imports=FRAGILE)
    try:
        env.reset()
        with pytest.raises(Exception, match=r"pickle|lambda"):
            env.step("unpicklable")
        assert env.step("hi")[0] == "you said hi"  # still serving
    finally:
        env.close()


def test_stop_strings_cross_the_pipe():
    remote = SubprocessEnv("branchgym/SearchQA-v0", {"tags": ("look", "say", "result")})
    try:
        assert stop_strings(remote) == ("</look>", "</say>")
    finally:
        remote.close()
    household = SubprocessEnv(HOUSEHOLD)
    try:
        assert stop_strings(household) == ()
    finally:
        household.close()


def test_a_start_that_hangs_is_killed_after_its_timeout():
    start = time.monotonic()
    with pytest.raises(EnvProcessError, match=r"did not start in 2\.0 s"):
        SubprocessEnv("test/SlowStart-v0", imports=FRAGILE, start_timeout=2.0)
    assert time.monotonic() - start < 30  # and no child is left (the autouse fixture checks)
