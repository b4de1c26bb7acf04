"""TextWorld-v0 on games that ``tw-make`` generates during the test run (marker ``textworld``).

Needs ``pip install textworld``; without it the module is skipped.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gymnasium.utils.env_checker import check_env

import branchgym.envs
from branchgym.trajectory import TaskRef

pytest.importorskip("textworld")
pytestmark = pytest.mark.textworld

ENV_ID = "branchgym/TextWorld-v0"


def tw_make(out: Path, seed: int) -> str:
    """``tw-make custom`` as the README documents it: 5 rooms, 10 objects, a 5-step quest."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    exe = shutil.which("tw-make", path=path)
    assert exe, "tw-make not found next to this Python"
    game = out / f"game{seed}.z8"
    args = ["custom", "--world-size", "5", "--nb-objects", "10", "--quest-length", "5"]
    subprocess.run([exe, *args, "--seed", str(seed), "--output", str(game), "--silent"], check=True)
    return str(game)


@pytest.fixture(scope="session")
def game(tmp_path_factory) -> str:
    return tw_make(tmp_path_factory.mktemp("textworld"), 1234)


@pytest.fixture(scope="session")
def other_game(tmp_path_factory) -> str:
    return tw_make(tmp_path_factory.mktemp("textworld2"), 4321)


@pytest.fixture
def env(game):
    env = branchgym.envs.make(ENV_ID, game_file=game)
    yield env
    env.close()


def test_check_env(env):
    check_env(env.unwrapped, skip_render_check=True)


def test_reset_info_and_clean_opening(env):
    obs, info = env.reset(seed=0)
    assert set(info) >= {"instruction", "admissible_commands", "expert_plan", "won"}
    assert info["instruction"] and info["instruction"] in obs
    assert obs[0].isalpha()  # the ASCII-art banner is gone
    assert "\n>" not in obs and "=-0/" not in obs  # so are the prompt and the status line
    assert info["admissible_commands"] == sorted(set(info["admissible_commands"]))
    assert set(info["expert_plan"][:1]) <= set(info["admissible_commands"])
    assert (info["won"], info["valid_action"], info["max_score"]) == (False, True, 1)


def test_expert_plan_wins(env):
    _, info = env.reset(options={"task": TaskRef(ENV_ID, seed=7)})
    total, steps, terminated = 0.0, 0, False
    while not terminated and steps < 30:
        obs, reward, terminated, truncated, info = env.step(info["expert_plan"][0])
        assert info["valid_action"] and not truncated
        total, steps = total + reward, steps + 1
    assert terminated and info["won"] and total == 1.0
    assert "*** The End ***" in obs and info["expert_plan"] == []


def test_invalid_command_is_engine_text_not_an_error(env):
    env.reset(seed=1)
    obs, reward, terminated, _, info = env.step("dance wildly")
    assert obs == "That's not a verb I recognise."
    assert (reward, terminated, info["valid_action"]) == (0.0, False, False)
    # Membership ignores case and spacing; the engine's parser does too.
    command = info["admissible_commands"][0]
    assert env.step("  " + command.upper() + " ")[4]["valid_action"]


# A lone surrogate and a multi-byte cut at Jericho's 197 bytes raised inside Jericho once.
@pytest.mark.parametrize(
    "action", ["", "\\q", "look\nquit", "x" * 5000, None, 42, "\ud800", "a" + "é" * 150]
)
def test_garbage_actions_never_raise(env, action):
    env.reset(seed=2)
    obs, _, terminated, _, info = env.step(action)
    assert isinstance(obs, str) and not terminated and info["valid_action"] is False


def _play(env, actions):
    out = []
    for action in actions:
        obs, reward, terminated, _, info = env.step(action)
        out.append((obs, reward, terminated, info))
    return out


@pytest.mark.parametrize("seed", [0, 5])
def test_snapshot_restore_replays_identically(game, env, seed):
    rng = random.Random(seed)
    _, info = env.reset(seed=seed)
    for _ in range(2):  # mid-episode, on the expert's path
        _, _, _, _, info = env.step(info["expert_plan"][0])
    snap = env.unwrapped.snapshot()
    actions = [rng.choice(info["admissible_commands"]) for _ in range(3)] + ["dance"]
    records = _play(env, actions)

    env.unwrapped.restore(snap)
    assert env.unwrapped.render() is None
    assert _play(env, actions) == records
    # Restored from a pickle, in another env (what SubprocessEnv and branching do).
    other = branchgym.envs.make(ENV_ID, game_file=game)
    other.reset(seed=seed + 100)
    other.unwrapped.restore(pickle.loads(pickle.dumps(snap)))
    assert _play(other, actions) == records
    other.close()


def test_restore_back_to_the_start_then_forward(env):
    _, info = env.reset(seed=3)
    start = env.unwrapped.snapshot()
    plan = info["expert_plan"]
    env.step(plan[0])
    after_one = env.unwrapped.snapshot()
    second = env.step(plan[1])
    env.unwrapped.restore(start)
    assert env.unwrapped.snapshot() == start
    env.unwrapped.restore(after_one)  # forward: replays one command, no restart
    assert env.unwrapped.snapshot() == after_one
    assert env.step(plan[1]) == second


def test_branches_through_a_subprocess_env(game):
    from branchgym.envs.snapshots import can_snapshot
    from branchgym.envs.subprocess import SubprocessEnv

    env = SubprocessEnv(ENV_ID, env_kwargs={"game_file": game})
    try:
        assert can_snapshot(env)
        _, info = env.reset(seed=0)
        env.step(info["expert_plan"][0])
        snap = env.snapshot()  # crossed the pipe: a picklable record
        first = env.step(info["expert_plan"][1])
        env.restore(snap)
        assert env.step(info["expert_plan"][1]) == first
    finally:
        env.close()


def test_games_list_is_picked_by_seed(game, other_game):
    env = branchgym.envs.make(ENV_ID, games=[game, other_game])
    first = env.reset(seed=10)[1]["instruction"]
    second = env.reset(seed=11)[1]["instruction"]
    assert first != second and env.reset(seed=12)[1]["instruction"] == first
    env.close()


def test_missing_game_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="tw-make"):
        branchgym.envs.make(ENV_ID, game_file=str(tmp_path / "nope.z8"))
    with pytest.raises(ValueError, match="game_file"):
        branchgym.envs.make(ENV_ID)
