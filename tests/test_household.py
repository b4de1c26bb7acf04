"""The household world as an environment: gymnasium contract, snapshots, the expert, determinism,
v0 compatibility, generation and splits. Its texts are in test_household_rules.py,
its stations and goals in test_household_goals.py.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import branchgym.envs
from branchgym.envs.household.generate import V0_TASK_TYPES, GenConfig, generate
from branchgym.envs.household.search import solvable
from branchgym.envs.household.tables import ROOMS, TASKS
from branchgym.envs.household.world import (
    World,
    type_of,
    where_is,
)
from tests.household_worlds import ENV_ID, bedroom, env_with, kitchen, make, two_shelves

# ------------------------------------------------------------------------------ gym contract


@pytest.mark.parametrize(
    "kwargs", [{}, {"task_types": V0_TASK_TYPES, "rooms": ("kitchen",), "max_receptacles": 8}]
)
def test_registered_and_passes_gymnasium_env_checker(kwargs):
    assert ENV_ID in gym.registry
    env = make(**kwargs)
    check_env(env, skip_render_check=True)


def test_unknown_id_raises_name_not_found_listing_known_ids():
    with pytest.raises(gym.error.NameNotFound) as exc:
        branchgym.envs.make("branchgym/Nope-v0")
    assert "branchgym/Nope-v0" in str(exc.value)
    assert ENV_ID in str(exc.value)


def test_step_before_reset_raises_reset_needed():
    with pytest.raises(gym.error.ResetNeeded):
        make().step("look")


# ------------------------------------------------------------------------------ snapshots


def _play(env, actions):
    out = []
    for a in actions:
        obs, reward, terminated, _, info = env.step(a)
        out.append((obs, reward, terminated, info["admissible_commands"], info["won"]))
    return out


@pytest.mark.parametrize("task_type", list(TASKS))
@pytest.mark.parametrize("seed", [0, 1, 7, 42])
def test_snapshot_restore_replays_identically(seed, task_type):
    env = make(task_types=(task_type,))
    rng = random.Random(seed)
    _, info = env.reset(seed=seed)
    for _ in range(2):  # a couple of expert moves so the snapshot is mid-episode
        _, _, _, _, info = env.step(info["expert_plan"][0])
    snap = env.snapshot()

    actions, records = [], []
    for _ in range(10):
        action = rng.choice(info["admissible_commands"])
        obs, reward, terminated, _, info = env.step(action)
        actions.append(action)
        records.append((obs, reward, terminated, info["admissible_commands"], info["won"]))
        if terminated:
            break

    env.restore(snap)
    assert _play(env, actions) == records
    # The first replay mutated the restored world; the saved snapshot must be untouched.
    env.restore(snap)
    assert _play(env, actions) == records


def test_snapshot_is_a_copy_not_a_view():
    env = make()
    _, info = env.reset(seed=5)
    (world, obs) = env.snapshot()
    before = world.snapshot()
    for action in info["expert_plan"]:
        env.step(action)
    assert world == before and env.snapshot()[1] != obs


# ------------------------------------------------------------------------------ the expert


def _expert_episode(env, seed: int) -> dict:
    """Reset, check the start, follow the expert to the end; returns the last info."""
    _, info = env.reset(seed=seed)
    assert not info["won"], f"seed {seed} starts already won"
    assert info["goal_condition_success_rate"] < 1.0
    assert solvable(env.world), f"seed {seed}: the search finds no way to the goal"
    terminated, steps = False, 0
    while not terminated and steps < 20:
        _, reward, terminated, _, info = env.step(info["expert_plan"][0])
        assert info["valid_action"], f"seed {seed}: expert action was not admissible"
        steps += 1
    assert (terminated, info["won"], reward) == (True, True, 1.0), f"seed {seed} not solved"
    assert info["goal_condition_success_rate"] == 1.0
    return info


@pytest.mark.parametrize("task_type", list(TASKS))
def test_every_task_type_is_generated_solvable_and_solved_on_1000_seeds(task_type):
    env = make(task_types=(task_type,))
    for seed in range(1000):
        info = _expert_episode(env, seed)
        assert info["task_type"] == task_type
        world = env.world
        assert len(world.receptacles) <= GenConfig.max_receptacles
        rooms = [name for name, r in ROOMS.items() if _types(world) <= set(r.receptacles)]
        assert len(rooms) == 1 and task_type in HOSTS[rooms[0]], (seed, rooms)


def _types(world: World) -> set[str]:
    return {type_of(r) for r in world.receptacles}


# ALFWorld's GOALS_VALID (gen/constants.py): which room types host which task types.
HOSTS = {
    "kitchen": set(TASKS) - {"look_at_obj_in_light"},
    "livingroom": {"pick_and_place_simple", "pick_two_obj_and_place", "look_at_obj_in_light"},
    "bedroom": {"pick_and_place_simple", "pick_two_obj_and_place", "look_at_obj_in_light"},
    "bathroom": {
        "pick_and_place_simple",
        "pick_two_obj_and_place",
        "pick_clean_then_place_in_recep",
    },
}


@pytest.mark.parametrize("task_type", list(TASKS))
def test_expert_recovers_from_random_detours_in_every_task_type(task_type):
    env = make(task_types=(task_type,))
    rng = random.Random(0)
    for seed in range(100):
        _, info = env.reset(seed=seed)
        for _ in range(rng.randint(0, 30)):  # wander: open, take, move, heat... at random
            _, _, terminated, _, info = env.step(rng.choice(info["admissible_commands"]))
            if terminated:
                break
        assert solvable(env.world), seed  # the search works mid-episode too
        for _ in range(30):
            if info["won"]:
                break
            _, _, _, _, info = env.step(info["expert_plan"][0])
            assert info["valid_action"], seed
        assert info["won"], seed


def test_v0_configuration_is_solved_with_8_receptacles():
    env = make(task_types=V0_TASK_TYPES, rooms=("kitchen",), max_receptacles=8)
    for seed in range(1000):
        _expert_episode(env, seed)
        assert len(env.world.receptacles) <= 8


def test_expert_plan_is_empty_once_the_goal_is_reached():
    # expert.py: "Commands that reach the goal from world's current state (empty once it is
    # reached)."
    env = make()
    _, info = env.reset(seed=3)
    terminated = False
    while not terminated:
        _, _, terminated, _, info = env.step(info["expert_plan"][0])
    assert info["won"]
    assert info["expert_plan"] == []


def test_expert_recovers_from_a_detour_holding_the_wrong_object():
    world = kitchen()
    world.contents["countertop 1"].append("mug 1")
    world.affordances["mug"] = {"clean"}
    env = env_with(world)
    for action in ("go to countertop 1", "take mug 1 from countertop 1"):
        env.step(action)
    _, _, _, _, info = env.step("look")
    assert info["expert_plan"][0] == "move mug 1 to countertop 1"
    steps = 0
    while not info["won"]:
        _, _, _, _, info = env.step(info["expert_plan"][0])
        steps += 1
    assert steps <= 10


# ------------------------------------------------------------------------------ determinism


def test_same_seed_same_episode_different_seeds_differ():
    env = make()
    openings = set()
    for seed in range(50):
        obs, info = env.reset(seed=seed)
        obs2, info2 = make().reset(seed=seed)
        assert (obs, info["expert_plan"]) == (obs2, info2["expert_plan"])
        assert generate(seed) == generate(seed)
        openings.add((obs, tuple(info["expert_plan"])))
    assert len(openings) >= 45


def test_task_option_overrides_seed():
    from branchgym.trajectory import TaskRef

    env = make()
    by_task, _ = env.reset(seed=1, options={"task": TaskRef(ENV_ID, seed=9)})
    by_seed, _ = env.reset(seed=9)
    assert by_task == by_seed


# ------------------------------------------------------------------------------ garbage input


@pytest.mark.parametrize(
    "action",
    [
        "",
        "   ",
        "\n\t",
        "ünïcödé ☃ 日本語 🎉",
        "\x00\x01",
        "look" * 25_000,
        "go to " * 1000,
        None,
        42,
        b"look",
        ["look"],
        3.5,
    ],
)
def test_garbage_actions_never_raise(action):
    env = branchgym.envs.make(ENV_ID)  # through gymnasium's wrappers, as users call it
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(action)
    assert obs == "Nothing happens."
    assert (reward, terminated, truncated, info["valid_action"]) == (0.0, False, False, False)


# ------------------------------------------------------------------------------ v0 compatibility


def _v0_rollout(env, seed: int) -> list:
    """Everything a v0 episode showed: opening, instruction, and each expert step's outputs."""
    obs, info = env.reset(seed=seed)
    out = [obs, info["instruction"], list(info["expert_plan"]), list(info["admissible_commands"])]
    terminated = False
    while not terminated:
        obs, _, terminated, _, info = env.step(info["expert_plan"][0])
        out += [obs, list(info["admissible_commands"]), list(info["expert_plan"])]
    return out


# sha256 of json.dumps([_v0_rollout(env, s) for s in range(300)]) under v0's code (commit
# bc37b1c), which had only the kitchen and the two task types.
V0_DIGESTS = {
    8: "5b2c5c1a4599ee09056e8fbc3d4fd19946c9f553fdd91ee41c22b369eee02351",
    16: "d0c7e8c8d0924887edce5df8fadc5e29b98cf03372ba60797d766aafc4b0c374",
}


@pytest.mark.parametrize("max_receptacles", [8, 16])
def test_v0_configuration_reproduces_v0_episodes_seed_for_seed(max_receptacles):
    env = branchgym.envs.make("branchgym/Household-v0", max_receptacles=max_receptacles)
    episodes = [_v0_rollout(env.unwrapped, seed) for seed in range(300)]
    digest = hashlib.sha256(json.dumps(episodes).encode()).hexdigest()
    assert digest == V0_DIGESTS[max_receptacles]


# ------------------------------------------------------------------------------ generation


def test_default_draws_all_six_task_types_about_equally_in_all_four_rooms():
    env = make()
    types, rooms = Counter(), Counter()
    for seed in range(600):
        _, info = env.reset(seed=seed)
        types[info["task_type"]] += 1
        world = env.world
        rooms[next(n for n, r in ROOMS.items() if _types(world) <= set(r.receptacles))] += 1
    assert set(types) == set(TASKS) and min(types.values()) >= 70  # 100 each expected
    assert set(rooms) == set(ROOMS)


def test_generated_objects_are_often_hidden_in_closed_receptacles():
    hidden = 0
    for seed in range(200):
        world = generate(seed)
        goal_objects = [o for objs in world.contents.values() for o in objs]
        goal_objects = [o for o in goal_objects if type_of(o) == world.goal.obj_type]
        hidden += any(where_is(world, o) in world.openable for o in goal_objects)
    assert 40 <= hidden <= 160


def test_goal_objects_start_only_where_their_room_puts_them_and_never_in_the_target():
    for seed in range(300):
        world = generate(seed)
        room = next(r for r in ROOMS.values() if _types(world) <= set(r.receptacles))
        for recep, objs in world.contents.items():
            for obj in objs:
                assert type_of(recep) in room.objects[type_of(obj)], (seed, obj, recep)
                if type_of(obj) == world.goal.obj_type:
                    assert type_of(recep) != world.goal.recep_type, (seed, obj, recep)


def test_bad_configurations_are_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="pick_and_place_simple"):
        GenConfig(task_types=("pick_and_place",))
    with pytest.raises(ValueError, match="look_at_obj_in_light"):
        GenConfig(task_types=("look_at_obj_in_light",), rooms=("kitchen",))
    with pytest.raises(ValueError, match="kitchen"):
        GenConfig(rooms=("garage",))


def test_search_proves_hand_built_worlds_and_refuses_impossible_ones():
    assert solvable(kitchen())
    no_room_for_apples = kitchen()
    no_room_for_apples.can_contain["fridge"] = frozenset()
    assert not solvable(no_room_for_apples)
    no_sink = kitchen()
    no_sink.receptacles.remove("sinkbasin 1")
    del no_sink.contents["sinkbasin 1"]
    assert not solvable(no_sink)
    assert solvable(bedroom()) and solvable(two_shelves())


def test_a_won_episode_pays_once_and_a_restore_brings_back_the_last_observation():
    env = branchgym.envs.make(ENV_ID, render_mode="ansi")
    _, info = env.reset(seed=3)
    plan = info["expert_plan"]
    rewards = [env.step(a)[1] for a in plan]
    assert rewards[-1] == 1.0 and sum(rewards) == 1.0
    obs, reward, terminated, _, info = env.step("look")  # after the win: nothing more to earn
    assert (reward, terminated, info["valid_action"]) == (0.0, True, False)
    assert "Call reset()" in obs
    env.reset(seed=3)
    env.step(plan[0])
    snap, shown = env.unwrapped.snapshot(), env.render()
    other = branchgym.envs.make(ENV_ID, render_mode="ansi")
    other.reset(seed=3)
    other.unwrapped.restore(snap)
    assert other.render() == shown  # the observation the parent was looking at
