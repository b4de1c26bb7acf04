"""The household world's rules and ALFWorld's exact texts, on hand-built worlds.

The reference texts are what the real ALFWorld engine prints (the project's ALFWORLD.md walks one
game step by step); the walkthrough test below replays that very game in a hand-built world.
The stations (heat, cool, use), whose texts ALFWORLD.md does not record, and the goal
conditions are in ``test_household_goals.py``.
"""

from __future__ import annotations

import random

from branchgym.envs.household.world import (
    NOTHING_HAPPENS,
    a_list,
    admissible_commands,
    execute,
)
from tests.household_worlds import ALWAYS, env_with, kitchen, make, others

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
        before = env.world
        obs, reward, terminated, truncated, info = env.step(command)
        assert obs == NOTHING_HAPPENS == "Nothing happens."
        assert info["valid_action"] is False
        assert (reward, terminated, truncated) == (0.0, False, False)
        assert env.world == before


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
