"""Fault injection: environments that raise, hang or return garbage on 10% of their steps.

A rollout over such environments must finish, end each affected path alone with
``env_error`` (saying what went wrong), and store every trajectory, affected or not.
"""

from __future__ import annotations

import random
import time

import gymnasium as gym
import pytest

import branchgym.envs
from branchgym.agents.policy import Generation, ScriptedPolicy
from branchgym.envs.errors import ToolError
from branchgym.rollouts.branching import ARPOConfig
from branchgym.rollouts.manager import RolloutConfig, RolloutManager
from branchgym.rollouts.store import TrajectoryStore
from branchgym.runsummary import eval_line
from branchgym.tasks.suite import task_refs
from branchgym.train import evaluate
from branchgym.trajectory import EndReason, TaskRef
from tests.test_branching import LogEnv, run

pytestmark = pytest.mark.chaos
HOUSEHOLD = "branchgym/Household-v0"
_GARBAGE = [
    None,
    ("obs",),
    (42, 0.0, False, False, {}),
    ("obs", float("nan"), False, False, {}),
    ("obs", 0.0, False, False, "info"),
    ("obs", "reward", False, False, {}),
]


class Chaos(gym.Wrapper):
    """On ``rate`` of steps: raise, hang past the timeout, or return a malformed result."""

    made = 0

    def __init__(self, env, rate: float, hang_s: float):
        super().__init__(env)
        Chaos.made += 1
        self.rng = random.Random(Chaos.made)
        self.rate, self.hang_s = rate, hang_s
        self.faults: list[str] = []

    def step(self, action):
        if self.rng.random() < self.rate:
            fault = self.rng.choice(["raise", "hang", "garbage"])
            self.faults.append(fault)
            if fault == "raise":
                raise RuntimeError("chaos: simulated crash")
            if fault == "hang":
                time.sleep(self.hang_s)
            else:
                return self.rng.choice(_GARBAGE)
        return self.env.step(action)


@pytest.mark.parametrize("algo", ["grpo", "arpo"])
def test_rollout_survives_faulty_environments_and_stores_everything(algo, codec, tmp_path):
    made: list[Chaos] = []

    def make():
        env = Chaos(branchgym.envs.make(HOUSEHOLD, max_receptacles=8), rate=0.1, hang_s=3.0)
        made.append(env)
        return env

    cfg = RolloutConfig(
        algo=algo,
        samples_per_task=4,
        arpo=ARPOConfig(budget=4, initial=2, alpha=1.0),
        max_turns=8,
        max_action_tokens=6,
        env_timeout=1.0,
    )
    rng = random.Random(0)

    def script(req):  # household commands, with entropies that rise and fall
        action = rng.choice(
            ["look", "inventory", "go to cabinet 1", "go to fridge 1", "open fridge 1"]
        )
        ids = tuple(codec.action_ids(action))
        h = rng.uniform(0.0, 2.0)
        return Generation(ids, action, (-0.3,) * len(ids), (h,) * len(ids), "stop")

    policy = ScriptedPolicy(script)
    groups = RolloutManager(make, policy, codec, cfg).rollout(task_refs(HOUSEHOLD, "train", 6))
    faults = [f for env in made for f in env.faults]
    assert faults, "the chaos wrapper never fired: the test tests nothing"
    ends = [t.end_reason for g in groups for t in g.trajectories]
    assert len(ends) == 6 * 4
    errors = [
        g.segments[t.leaf_id].text
        for g in groups
        for t in g.trajectories
        if t.end_reason is EndReason.ENV_ERROR
    ]
    assert errors and all(e.startswith("environment error: ") for e in errors)
    assert len(errors) <= len(faults)  # no fault ends more than its own path
    healthy = {EndReason.TURN_LIMIT, EndReason.TERMINATED}
    assert all(e in healthy for e in ends if e is not EndReason.ENV_ERROR)
    with TrajectoryStore(f"sqlite:///{tmp_path / 'c.db'}") as store:
        store.create_run("chaos", {})
        store.write_groups("chaos", groups)
        (run,) = store.list_runs()
        assert run.n_trajectories == 24


class BadText(LogEnv):
    """Its second reset, and every step on ``a1``, send text no tokenizer can encode."""

    resets = 0

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        BadText.resets += 1
        return (obs + " \ud800" if BadText.resets == 2 else obs), info

    def step(self, action):
        obs, *rest = super().step(action)
        return (obs + " \ud800" if action == "a1" else obs), *rest


class Unreadable:
    def __bool__(self):
        raise ValueError("no truth value")


class BadInfo(LogEnv):
    def step(self, action):
        obs, reward, term, trunc, info = super().step(action)
        return obs, reward, term, trunc, {"won": Unreadable()} if action == "a2" else info


def test_text_the_tokenizer_rejects_ends_only_its_own_path(codec):
    BadText.resets = 0
    _, _, _, (group,) = run(codec, {}, algo="grpo", env=BadText, samples_per_task=3)
    ends = [t.end_reason for t in group.trajectories]
    assert ends.count(EndReason.ENV_ERROR) == 2 and ends.count(EndReason.TURN_LIMIT) == 1
    texts = [group.segments[t.leaf_id].text for t in group.trajectories]
    assert any("failed to reset" in e and "could not be tokenized" in e for e in texts)
    assert any(e.startswith("environment error: ValueError") for e in texts)


def test_an_info_that_cannot_be_read_ends_only_its_path(codec):
    _, _, _, (group,) = run(codec, {}, algo="grpo", env=BadInfo, samples_per_task=3)
    ends = [t.end_reason for t in group.trajectories]
    assert ends.count(EndReason.ENV_ERROR) == 1 and ends.count(EndReason.TURN_LIMIT) == 2
    (bad,) = [t for t in group.trajectories if t.end_reason is EndReason.ENV_ERROR]
    assert "no truth value" in group.segments[bad.leaf_id].text
    assert bad.ret == 0.0  # nothing from the failed step was kept


class SandboxDown(LogEnv):
    def reset(self, *, seed=None, options=None):
        raise ToolError("the sandbox could not start")


def test_a_tool_that_fails_at_reset_ends_with_tool_error(codec):
    _, _, _, (group,) = run(codec, {}, algo="grpo", env=SandboxDown, samples_per_task=2)
    assert [t.end_reason for t in group.trajectories] == [EndReason.TOOL_ERROR] * 2


class CrashOnOddSeeds(LogEnv):
    """Odd seeds crash at reset; even seeds are won by ``a0`` and lost by anything else."""

    def reset(self, *, seed=None, options=None):
        if seed % 2:
            raise RuntimeError("no world for odd seeds")
        return super().reset(seed=seed, options=options)

    def step(self, action):
        obs, *_ = super().step(action)
        return obs, float(action == "a0"), True, False, {"won": action == "a0"}


def test_evaluation_leaves_out_episodes_the_environment_failed(codec):
    tasks = [TaskRef("test/Log-v0", seed=s) for s in range(8)]  # 4 crash, 4 are played
    cfg = RolloutConfig(algo="grpo", samples_per_task=1, max_turns=2)
    say = iter(["a0", "a1", "a0", "a0"])  # the four played episodes: three won

    def script(req):
        action = next(say)
        ids = tuple(codec.action_ids(action))
        return Generation(ids, action, (0.0,) * len(ids), (0.5,) * len(ids), "stop")

    manager = RolloutManager(CrashOnOddSeeds, ScriptedPolicy(script), codec, cfg)
    result = evaluate(manager, tasks, batch=8)
    assert (result.episodes, result.failed) == (4, 4)
    assert result.success == 0.75  # 3 of the 4 played, not 3 of 8
    assert "4 episodes left out" in eval_line({"sampled": result})
