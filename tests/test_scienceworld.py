"""ScienceWorld-v0 on the real simulator (marker ``scienceworld``).

Needs ``pip install scienceworld`` and Java; without the package the module is skipped. Each
env starts a JVM, so the module shares two: one that lists admissible commands (the slow
list) and one that does not.
"""

from __future__ import annotations

import pickle

import pytest
from gymnasium.utils.env_checker import check_env

import branchgym.envs
from branchgym.envs.adapters.scienceworld import PARSER_REJECTS
from branchgym.trajectory import TaskRef

pytest.importorskip("scienceworld")
pytestmark = pytest.mark.scienceworld

ENV_ID = "branchgym/ScienceWorld-v0"
TASKS = ("find-animal", "chemistry-mix")


@pytest.fixture(scope="module")
def env():
    env = branchgym.envs.make(ENV_ID, task_names=TASKS, admissible_commands=False)
    yield env
    env.close()


@pytest.fixture(scope="module")
def listing_env():
    env = branchgym.envs.make(ENV_ID, task_names=TASKS[:1])
    yield env
    env.close()


def test_check_env(listing_env):
    check_env(listing_env.unwrapped, skip_render_check=True)


def test_reset_states_the_task_and_lists_admissible_commands(listing_env):
    obs, info = listing_env.reset(seed=0)
    assert obs.startswith(info["instruction"] + "\n\n")
    assert info["instruction"].startswith("Your task is to find")
    commands = info["admissible_commands"]
    assert len(commands) > 100 and commands == sorted(set(commands))
    assert (info["task_name"], info["won"], info["score"]) == ("find-animal", False, 0)
    assert info["expert_plan"] and info["valid_action"]


@pytest.mark.parametrize("seed", [0, 1])  # seed % 2 picks find-animal, then chemistry-mix
def test_gold_sequence_wins(env, seed):
    _, info = env.reset(seed=seed)
    assert info["task_name"] == TASKS[seed]
    total, terminated, steps = 0.0, False, 0
    while info["expert_plan"] and not terminated:
        _, reward, terminated, truncated, info = env.step(info["expert_plan"][0])
        assert info["valid_action"] and not truncated
        total, steps = total + reward, steps + 1
    assert terminated and info["won"] and info["score"] == 100
    assert total == pytest.approx(1.0)  # rewards are score changes / 100
    assert "admissible_commands" not in info


def test_splits_map_to_disjoint_variations(env):
    lists = {s: env.unwrapped.variations("find-animal", s) for s in ("train", "seen", "unseen")}
    assert lists["seen"] == env.unwrapped.variations("find-animal", "dev")
    assert not set(lists["train"]) & set(lists["seen"]) and not set(lists["seen"]) & set(
        lists["unseen"]
    )
    for split, variations in lists.items():
        _, info = env.reset(options={"task": TaskRef(ENV_ID, seed=4, split=split)})
        assert info["variation"] == variations[(4 // len(TASKS)) % len(variations)]
    with pytest.raises(ValueError, match="unknown split"):
        env.reset(options={"task": TaskRef(ENV_ID, seed=0, split="nope")})


def test_parser_rejections_are_invalid_and_leave_the_gold_path(env):
    _, info = env.reset(seed=0)
    gold = info["expert_plan"]
    for action in ("xyzzy", "", None, "open door\nxyzzy", "\ud800"):  # a surrogate broke py4j
        obs, reward, terminated, _, info = env.step(action)
        assert obs.startswith(PARSER_REJECTS)
        assert (reward, terminated, info["valid_action"]) == (0.0, False, False)
    assert info["expert_plan"] == []  # the gold path is open-loop: off it, no expert
    # ScienceWorld's gold path may pick another of the equally good targets at each reset.
    _, info = env.reset(seed=0)
    gold = info["expert_plan"]
    env.step(gold[0])
    assert env.step(gold[1])[4]["expert_plan"] == gold[2:]


def _play(env, actions):
    keys = ("won", "valid_action", "score", "expert_plan", "variation")
    out = []
    for action in actions:
        obs, reward, terminated, _, info = env.step(action)
        out.append((obs, reward, terminated, [info[k] for k in keys]))
    return out


def test_snapshot_restore_replays_identically(env, listing_env):
    _, info = env.reset(seed=0)
    gold = info["expert_plan"]
    for action in gold[:3]:
        env.step(action)
    snap = env.unwrapped.snapshot()
    actions = [gold[3], "look around", "xyzzy", *gold[4:6]]
    records = _play(env, actions)
    env.unwrapped.restore(snap)
    assert _play(env, actions) == records
    env.unwrapped.restore(snap)
    assert env.unwrapped.snapshot() == snap
    # Through a pickle, into the other JVM (what SubprocessEnv and branching do).
    listing_env.unwrapped.restore(pickle.loads(pickle.dumps(snap)))
    assert _play(listing_env, actions) == records
