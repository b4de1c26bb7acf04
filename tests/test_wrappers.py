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
