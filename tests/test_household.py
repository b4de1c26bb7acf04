"""The household world: gymnasium contract, snapshots, the expert, and ALFWorld's exact texts.

The reference texts are what the real ALFWorld engine prints (the project's ALFWORLD.md walks one
game step by step); the walkthrough test below replays that very game in a hand-built world.
"""

from __future__ import annotations

import random

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import branchgym.envs
from branchgym.envs.household.generate import GenConfig, _can_contain, generate
from branchgym.envs.household.world import (
    NOTHING_HAPPENS,
    Goal,
    World,
    a_list,
    admissible_commands,
    execute,
)

ENV_ID = "branchgym/Household-v0"
ALWAYS = ["help", "inventory", "look"]


def make(**kwargs):
    return branchgym.envs.make(ENV_ID, **kwargs).unwrapped


def kitchen(apple_in: str = "cabinet 1") -> World:
    """ALFWORLD.md's game: a clean apple must go into the fridge; the apple is in a cabinet."""
    receps = ["cabinet 1", "countertop 1", "fridge 1", "sinkbasin 1"]
    contents: dict[str, list[str]] = {r: [] for r in receps}
    contents[apple_in].append("apple 1")
    return World(
        receptacles=receps,
        openable={"cabinet 1", "fridge 1"},
        contents=contents,
        can_contain=_can_contain(),
        affordances={"apple": {"clean", "heat", "cool"}},
        goal=Goal(
            "pick_clean_then_place", "apple", "fridge", "clean", "put a clean apple in fridge."
        ),
    )


def env_with(world: World):
    env = make()
    env.reset(seed=0)
    env.restore(world)
    return env


def others(here: str) -> list[str]:
    return [
        f"go to {r}" for r in ("cabinet 1", "countertop 1", "fridge 1", "sinkbasin 1") if r != here
    ]


# ------------------------------------------------------------------------------ gym contract


def test_registered_and_passes_gymnasium_env_checker():
    assert ENV_ID in gym.registry
    env = make()
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


@pytest.mark.parametrize("seed", [0, 1, 7, 42])
def test_snapshot_restore_replays_identically(seed):
    env = make()
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
    snap = env.snapshot()
    before = snap.snapshot()
    for action in info["expert_plan"]:
        env.step(action)
    assert snap == before


# ------------------------------------------------------------------------------ the expert


@pytest.mark.parametrize("max_receptacles", [GenConfig.max_receptacles, 8])
def test_expert_solves_every_generated_task(max_receptacles):
    env = make(max_receptacles=max_receptacles)
    failures = []
    for seed in range(1000):
        _, info = env.reset(seed=seed)
        assert not info["won"], f"seed {seed} starts already won"
        assert len(env.snapshot().receptacles) <= max_receptacles
        reward, terminated, steps = 0.0, False, 0
        while not terminated and steps < 20:
            _, reward, terminated, _, info = env.step(info["expert_plan"][0])
            assert info["valid_action"], f"seed {seed}: expert action was not admissible"
            steps += 1
        if not (terminated and info["won"] and reward == 1.0):
            failures.append(seed)
    assert failures == []


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


# ------------------------------------------------------------------------------ ALFWorld texts


def test_a_list_phrasing():
    assert a_list(["apple 1"]) == "a apple 1"
    assert a_list(["apple 2", "apple 1"]) == "a apple 2, and a apple 1"
    assert a_list(["x", "y", "z"]) == "a x, a y, and a z"
    assert a_list([]) == "nothing"


def test_opening_text_format():
    env = make()
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        head = (
            "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. "
            "Looking quickly around you, you see "
        )
        assert obs.startswith(head)
        assert "\n\nYour task is to: " in obs
        assert obs.endswith("\n\nYour task is to: " + info["instruction"])
        assert env.render() is None


def test_opening_text_of_hand_built_world():
    from branchgym.envs.household.world import opening_text

    assert opening_text(kitchen()) == (
        "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. Looking quickly"
        " around you, you see a cabinet 1, a countertop 1, a fridge 1, and a sinkbasin 1."
        "\n\nYour task is to: put a clean apple in fridge."
    )


# ALFWORLD.md's table: command -> (observation, admissible besides help/inventory/look).
WALKTHROUGH = [
    (
        "go to cabinet 1",
        "You arrive at cabinet 1. The cabinet 1 is closed.",
        ["examine cabinet 1", *others("cabinet 1"), "open cabinet 1"],
    ),
    (
        "open cabinet 1",
        "You open the cabinet 1. The cabinet 1 is open. In it, you see a apple 1.",
        [
            "close cabinet 1",
            "examine cabinet 1",
            *others("cabinet 1"),
            "take apple 1 from cabinet 1",
        ],
    ),
    (
        "take apple 1 from cabinet 1",
        "You pick up the apple 1 from the cabinet 1.",
        [
            "close cabinet 1",
            "examine apple 1",
            "examine cabinet 1",
            *others("cabinet 1"),
            "move apple 1 to cabinet 1",
        ],
    ),
    (
        "go to sinkbasin 1",
        "You arrive at sinkbasin 1. On the sinkbasin 1, you see nothing.",
        [
            "clean apple 1 with sinkbasin 1",
            "examine apple 1",
            "examine sinkbasin 1",
            *others("sinkbasin 1"),
            "move apple 1 to sinkbasin 1",
        ],
    ),
    (
        "clean apple 1 with sinkbasin 1",
        "You clean the apple 1 using the sinkbasin 1.",
        [
            "clean apple 1 with sinkbasin 1",
            "examine apple 1",
            "examine sinkbasin 1",
            *others("sinkbasin 1"),
            "move apple 1 to sinkbasin 1",
        ],
    ),
    (
        "go to fridge 1",
        "You arrive at fridge 1. The fridge 1 is closed.",
        [
            "cool apple 1 with fridge 1",
            "examine apple 1",
            "examine fridge 1",
            *others("fridge 1"),
            "open fridge 1",
        ],
    ),
    (
        "open fridge 1",
        "You open the fridge 1. The fridge 1 is open. In it, you see nothing.",
        [
            "close fridge 1",
            "cool apple 1 with fridge 1",
            "examine apple 1",
            "examine fridge 1",
            *others("fridge 1"),
            "move apple 1 to fridge 1",
        ],
    ),
    (
        "move apple 1 to fridge 1",
        "You move the apple 1 to the fridge 1.",
        ["close fridge 1", "examine fridge 1", *others("fridge 1"), "take apple 1 from fridge 1"],
    ),
]


def test_alfworld_walkthrough_texts_and_admissible_commands():
    env = env_with(kitchen())
    assert env.step("look")[4]["admissible_commands"] == sorted([*ALWAYS, *others("")])
    for i, (command, text, admissible) in enumerate(WALKTHROUGH):
        obs, reward, terminated, truncated, info = env.step(command)
        last = i == len(WALKTHROUGH) - 1
        assert obs == text, command
        assert info["admissible_commands"] == sorted([*ALWAYS, *admissible]), command
        assert info["valid_action"]
        assert (reward, terminated, truncated, info["won"]) == (float(last), last, False, last)


def test_admissible_commands_are_sorted_unique_and_always_include_basics():
    env = make()
    rng = random.Random(0)
    for seed in range(30):
        _, info = env.reset(seed=seed)
        for _ in range(15):
            cmds = info["admissible_commands"]
            assert cmds == sorted(set(cmds))
            assert set(ALWAYS) <= set(cmds)
            _, _, terminated, _, info = env.step(rng.choice(cmds))
            if terminated:
                break


def test_impossible_command_is_nothing_happens_and_changes_nothing():
    env = env_with(kitchen())
    env.step("go to countertop 1")
    for command in (
        "go to countertop 1",  # already here
        "open countertop 1",  # not openable
        "take apple 1 from cabinet 1",  # not here, and the cabinet is closed
        "close cabinet 1",
        "examine apple 1",  # not held
        "move apple 1 to countertop 1",
        "fly to the moon",
    ):
        before = env.snapshot()
        obs, reward, terminated, truncated, info = env.step(command)
        assert obs == NOTHING_HAPPENS == "Nothing happens."
        assert info["valid_action"] is False
        assert (reward, terminated, truncated) == (0.0, False, False)
        assert env.snapshot() == before


def test_inventory_texts():
    env = env_with(kitchen(apple_in="countertop 1"))
    assert env.step("inventory")[0] == "You are not carrying anything."
    env.step("go to countertop 1")
    env.step("take apple 1 from countertop 1")
    assert env.step("inventory")[0] == "You are carrying: a apple 1."


def test_examine_only_while_held_and_reports_state():
    env = env_with(kitchen(apple_in="countertop 1"))
    _, _, _, _, info = env.step("go to countertop 1")
    assert "examine apple 1" not in info["admissible_commands"]
    assert env.step("examine apple 1")[0] == NOTHING_HAPPENS
    assert env.step("examine countertop 1")[0] == "On the countertop 1, you see a apple 1."
    _, _, _, _, info = env.step("take apple 1 from countertop 1")
    assert "examine apple 1" in info["admissible_commands"]
    assert env.step("examine apple 1")[0] == "There's nothing special about apple 1."
    env.step("go to sinkbasin 1")
    env.step("clean apple 1 with sinkbasin 1")
    assert env.step("examine apple 1")[0] == "This is a clean apple 1."
    _, _, _, _, info = env.step("move apple 1 to sinkbasin 1")
    assert "examine apple 1" not in info["admissible_commands"]


def test_look_texts():
    env = env_with(kitchen())
    assert env.step("look")[0] == (
        "You are in the middle of a room. Looking quickly around you, you see nothing."
    )
    env.step("go to countertop 1")
    assert env.step("look")[0] == "You are facing the countertop 1. Next to it, you see nothing."


def test_two_items_listed_newest_first_with_oxford_and():
    world = kitchen(apple_in="countertop 1")
    world.contents["countertop 1"] = ["apple 2", "apple 1"]
    env = env_with(world)
    assert env.step("go to countertop 1")[0] == (
        "You arrive at countertop 1. On the countertop 1, you see a apple 2, and a apple 1."
    )


def test_clean_stays_admissible_after_cleaning():
    world = kitchen(apple_in="sinkbasin 1")
    for command in ("go to sinkbasin 1", "take apple 1 from sinkbasin 1"):
        assert execute(world, command)[1]
    for _ in range(3):
        assert "clean apple 1 with sinkbasin 1" in admissible_commands(world)
        assert execute(world, "clean apple 1 with sinkbasin 1") == (
            "You clean the apple 1 using the sinkbasin 1.",
            True,
        )


def test_commands_are_case_and_space_insensitive():
    env = env_with(kitchen())
    obs, _, _, _, info = env.step("  Go   TO Cabinet 1 ")
    assert obs == "You arrive at cabinet 1. The cabinet 1 is closed."
    assert info["valid_action"]


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
