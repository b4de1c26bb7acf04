"""Wrappers change what the policy sees, never the world's rules."""

from __future__ import annotations

import branchgym.envs
from branchgym.envs.wrappers import RestateInstruction

ENV_ID = "branchgym/Household-v0"


def test_restate_instruction_appends_the_task_after_every_step():
    plain = branchgym.envs.make(ENV_ID)
    wrapped = RestateInstruction(branchgym.envs.make(ENV_ID))
    obs0, info0 = plain.reset(seed=7)
    wobs0, _ = wrapped.reset(seed=7)
    assert wobs0 == obs0  # the opening text already ends with the task
    task = info0["instruction"]
    for action in [*info0["expert_plan"], "jump around"]:
        obs, reward, term, trunc, info = plain.step(action)
        wobs, wreward, wterm, wtrunc, winfo = wrapped.step(action)
        assert wobs == f"{obs} Your task is to: {task}"
        assert (wreward, wterm, wtrunc, winfo) == (reward, term, trunc, info)
        if term:
            break
    assert winfo["won"]


def test_restate_instruction_keeps_snapshots_working():
    env = RestateInstruction(branchgym.envs.make(ENV_ID))
    _, info = env.reset(seed=3)
    snap = env.unwrapped.snapshot()
    first = env.step(info["expert_plan"][0])[0]
    env.unwrapped.restore(snap)
    assert env.step(info["expert_plan"][0])[0] == first


def test_turn_limit_truncates_and_its_count_survives_a_branch():
    from branchgym.envs.wrappers import TurnLimit

    env = TurnLimit(branchgym.envs.make(ENV_ID), max_turns=3)
    env.reset(seed=1)
    assert env.step("look")[3] is False
    snap = env.get_wrapper_attr("snapshot")()  # after 1 turn
    assert env.step("look")[3] is False and env.step("look")[3] is True
    other = TurnLimit(branchgym.envs.make(ENV_ID), max_turns=3)
    other.reset(seed=1)
    other.get_wrapper_attr("restore")(snap)
    assert other.step("look")[3] is False and other.step("look")[3] is True  # turns 2 and 3


def test_tool_call_limit_counts_only_tool_calls():
    from branchgym.envs.wrappers import ToolCallLimit

    env = ToolCallLimit(branchgym.envs.make("branchgym/SearchQA-v0"), max_calls=2)
    env.reset(seed=4)
    assert env.step("not a call")[3] is False  # invalid: no tool ran
    assert env.step("<search>Works</search>")[3] is False
    assert env.step("<search>city</search>")[3] is False  # the second of two allowed calls
    obs, _, terminated, truncated, _ = env.step("<search>more</search>")
    assert truncated and not terminated and "<result>" in obs


def test_a_task_that_needs_every_allowed_call_can_still_be_won():
    from branchgym.envs.wrappers import FormatPenalty, ToolCallLimit

    base = branchgym.envs.make("branchgym/SearchQA-v0")
    seed = next(s for s in range(200) if len(base.reset(seed=s)[1]["expert_plan"]) == 4)
    env = FormatPenalty(ToolCallLimit(branchgym.envs.make("branchgym/SearchQA-v0"), max_calls=3))
    _, info = env.reset(seed=seed)
    steps = [env.step(action) for action in info["expert_plan"]]  # 3 searches, then the answer
    assert [s[3] for s in steps] == [False] * 4
    assert steps[-1][2] and sum(s[1] for s in steps) == 1.0


def test_invalid_action_penalty():
    from branchgym.envs.wrappers import InvalidActionPenalty

    env = InvalidActionPenalty(branchgym.envs.make(ENV_ID), penalty=-0.25)
    _, info = env.reset(seed=2)
    assert env.step("fly to the moon")[1] == -0.25
    assert env.step(info["expert_plan"][0])[1] == 0.0


def test_arpo_branches_through_a_turn_limit(codec):
    from branchgym.agents.policy import Generation, ScriptedPolicy
    from branchgym.envs.wrappers import TurnLimit
    from branchgym.rollouts.branching import ARPOConfig
    from branchgym.rollouts.manager import RolloutConfig, RolloutManager
    from branchgym.tasks.suite import task_refs
    from branchgym.trajectory import EndReason

    def script(req):
        ids = tuple(codec.action_ids("look"))
        return Generation(ids, "look", (-0.1,) * len(ids), (1.0,) * len(ids), "stop")

    cfg = RolloutConfig(algo="arpo", max_turns=50, arpo=ARPOConfig(budget=4, initial=2, alpha=1.0))
    manager = RolloutManager(
        lambda: TurnLimit(branchgym.envs.make(ENV_ID), max_turns=4),
        ScriptedPolicy(script),
        codec,
        cfg,
    )
    (group,) = manager.rollout(task_refs(ENV_ID, "train", 1))
    # every path, branched or not, stops at the wrapper's 4th turn: the count was restored
    assert [t.n_turns for t in group.trajectories] == [4, 4, 4, 4]
    assert {t.end_reason for t in group.trajectories} == {EndReason.TURN_LIMIT}


def test_format_penalty_scores_a_broken_episode_minus_one():
    from branchgym.envs.wrappers import FormatPenalty, TurnLimit

    def episode(actions, limit=10):
        env = FormatPenalty(TurnLimit(branchgym.envs.make("branchgym/SearchQA-v0"), limit))
        _, info = env.reset(seed=7)
        steps = [env.step(a if a else info["expert_plan"][-1]) for a in actions]
        return [s[1] for s in steps], steps[-1][2], steps[-1][3]

    # the right answer in good format keeps its reward: 0 for a search, 1 for the answer
    assert episode(["<search>x</search>", ""]) == ([0.0, 1.0], True, False)
    # one broken call anywhere: the whole episode scores -1, even with the right answer
    assert episode(["search x", ""]) == ([0.0, -1.0], True, False)
    # cut off before answering is broken format too
    assert episode(["<search>x</search>"] * 2, limit=2) == ([0.0, -1.0], False, True)


def test_format_penalty_snapshot_carries_the_broken_flag():
    from branchgym.envs.wrappers import FormatPenalty

    env = FormatPenalty(branchgym.envs.make("branchgym/SearchQA-v0"))
    _, info = env.reset(seed=7)
    clean = env.get_wrapper_attr("snapshot")()
    env.step("broken")
    broken = env.get_wrapper_attr("snapshot")()
    env.get_wrapper_attr("restore")(clean)
    assert env.step(info["expert_plan"][-1])[1] == 1.0
    env.get_wrapper_attr("restore")(broken)
    assert env.step(info["expert_plan"][-1])[1] == -1.0


def test_history_window_shows_the_task_and_the_last_turns():
    from branchgym.envs.wrappers import HistoryWindow

    env = HistoryWindow(branchgym.envs.make(ENV_ID), window=1)
    first, _ = env.reset(seed=2)
    a = env.step("look")[0]
    assert a.startswith(f"{first}\n[Now]\n> look\nYou are") and "[History]" not in a
    b = env.step("inventory")[0]
    assert b.startswith(first) and "[History]\n> look\n" in b
    assert b.endswith("[Now]\n> inventory\nYou are not carrying anything.")
    c = env.step("inventory")[0]
    assert "> look" not in c and c.count("> inventory") == 2  # the window holds one past turn


def test_history_window_snapshot_restores_the_window():
    from branchgym.envs.wrappers import HistoryWindow

    env = HistoryWindow(branchgym.envs.make(ENV_ID), window=2)
    env.reset(seed=2)
    env.step("look")
    snap = env.get_wrapper_attr("snapshot")()
    after = env.step("inventory")[0]
    env.step("look")
    env.get_wrapper_attr("restore")(snap)
    assert env.step("inventory")[0] == after
